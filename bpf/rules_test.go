package bpf

import (
	"bytes"
	"fmt"
	"go/format"
	"os"
	"reflect"
	"testing"
)

// rulesSource is rules as the Go source of rules_gen.go.
func rulesSource(rules []Rule) ([]byte, error) {
	ops := []string{"OpEq", "OpNe", "OpLt", "OpLe", "OpGt", "OpGe", "OpMaskedEq"}
	var b bytes.Buffer
	b.WriteString("// Code generated from syscalls.policy by `go test ./bpf -update`. DO NOT EDIT.\n\n")
	b.WriteString("package bpf\n\n")
	b.WriteString("// precompiledRules are Rules() as the compiler lays them out: the\n")
	b.WriteString("// supervisor's table without parsing the policy or asking libseccomp\n")
	b.WriteString("// for a number per syscall name at every start (TestPrecompiledRules).\n")
	b.WriteString("var precompiledRules = []Rule{\n")
	for _, r := range rules {
		fmt.Fprintf(&b, "{Syscall: %q, Nr: %d, Errno: %d, Reason: %q, Line: %d", r.Syscall, r.Nr, int(r.Errno), r.Reason, r.Line)
		for _, f := range []struct {
			name string
			set  bool
		}{{"Quiet", r.Quiet}, {"Mediate", r.Mediate}, {"Signals", r.Signals}} {
			if f.set {
				fmt.Fprintf(&b, ", %s: true", f.name)
			}
		}
		if len(r.Conds) > 0 {
			b.WriteString(", Conds: []Cond{")
			for _, c := range r.Conds {
				if int(c.Op) < 0 || int(c.Op) >= len(ops) {
					return nil, fmt.Errorf("line %d: comparison %d has no name", r.Line, c.Op)
				}
				fmt.Fprintf(&b, "{Arg: %d, Op: %s, Mask: %#x, Value: %#x},", c.Arg, ops[c.Op], c.Mask, c.Value)
			}
			b.WriteString("}")
		}
		b.WriteString("},\n")
	}
	b.WriteString("}\n")
	return format.Source(b.Bytes())
}

// The table a session uses is the policy's: rules_gen.go is rewritten by
// -update and must match what parsing syscalls.policy gives.
func TestPrecompiledRules(t *testing.T) {
	rules, err := Rules()
	if err != nil {
		t.Fatal(err)
	}
	src, err := rulesSource(rules)
	if err != nil {
		t.Fatal(err)
	}
	if *update {
		if err := os.WriteFile("rules_gen.go", src, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	if !reflect.DeepEqual(precompiledRules, rules) {
		t.Errorf("rules_gen.go is stale; run go test ./bpf -update")
	}
	if want, err := os.ReadFile("rules_gen.go"); err != nil || !bytes.Equal(src, want) {
		t.Errorf("rules_gen.go is not as -update writes it (%v); run go test ./bpf -update", err)
	}
}
