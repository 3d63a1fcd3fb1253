package bpf

import (
	_ "embed"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"syscall"

	seccomp "github.com/seccomp/libseccomp-golang"
	"golang.org/x/sys/unix"
)

//go:embed syscalls.policy
var policySource []byte

// maxNr bounds syscall numbers in a policy: x86_64 numbers are far below it,
// and numbers at or above 0x40000000 belong to the x32 ABI, which the filter
// kills before any rule is consulted.
const maxNr = 1024

// Op is the comparison of a Cond.
type Op int

// Comparisons; all are on the full 64-bit argument except OpMaskedEq, which
// compares arg&Mask.
const (
	OpEq       Op = iota // ==
	OpNe                 // !=
	OpLt                 // <
	OpLe                 // <=
	OpGt                 // >
	OpGe                 // >=
	OpMaskedEq           // arg&Mask == Value
)

var opText = [...]string{OpEq: "==", OpNe: "!=", OpLt: "<", OpLe: "<=", OpGt: ">", OpGe: ">=", OpMaskedEq: "=="}

// Cond is one comparison of a syscall argument with a constant.
type Cond struct {
	Arg   int    // argument index, 0..5
	Op    Op     // comparison
	Mask  uint64 // only for OpMaskedEq
	Value uint64 // right-hand side
}

// Match reports whether the condition holds for the given arguments, with the
// same 64-bit semantics as the compiled filter.
func (c Cond) Match(args [6]uint64) bool {
	if c.Arg < 0 || c.Arg > 5 {
		return false
	}
	a := args[c.Arg]
	switch c.Op {
	case OpEq:
		return a == c.Value
	case OpNe:
		return a != c.Value
	case OpLt:
		return a < c.Value
	case OpLe:
		return a <= c.Value
	case OpGt:
		return a > c.Value
	case OpGe:
		return a >= c.Value
	case OpMaskedEq:
		return a&c.Mask == c.Value
	}
	return false
}

// String formats the condition as the policy file writes it.
func (c Cond) String() string {
	if c.Op < 0 || int(c.Op) >= len(opText) {
		return fmt.Sprintf("arg%d ?%d %#x", c.Arg, int(c.Op), c.Value)
	}
	if c.Op == OpMaskedEq {
		return fmt.Sprintf("arg%d&%#x == %#x", c.Arg, c.Mask, c.Value)
	}
	return fmt.Sprintf("arg%d %s %#x", c.Arg, opText[c.Op], c.Value)
}

// Rule is one line of the policy: calls of Nr whose arguments satisfy every
// Cond fail with Errno.
type Rule struct {
	Syscall string        // name, e.g. "mount"; "syscall_N" for a bare unknown number
	Nr      int           // x86_64 syscall number
	Errno   syscall.Errno // error returned to the caller
	Conds   []Cond        // all must hold; none means always
	Reason  string        // why the call is refused, for people and logs
	Line    int           // line in the policy source, 1-based
	// Quiet rules keep their errno in ModeNotify: the kernel answers them and
	// the supervisor never hears of them (clone3's ENOSYS is a redirect to
	// clone that libc takes on every thread creation, not a refused operation).
	Quiet bool
	// Mediate rules (ERRNO written as "mediate") send the call to the
	// supervisor in ModeNotify, which decides it and may do it on the
	// caller's behalf (connect to a unix socket, say). In ModeErrno, with
	// no supervisor to ask, the call fails with Errno when the rule names
	// one ("mediate EPERM": refused unless someone can tell it is safe),
	// and is allowed when Errno is 0 (plain "mediate": only the kernel's
	// own checks hold; the supervisor says so when it loads that).
	Mediate bool
	// Signals rules ("mediate signals") are compiled only into the
	// ModeNotifySignals program: kill and its kin, which the supervisor
	// delivers itself where Landlock cannot scope signals.
	Signals bool
}

// Match reports whether a call of r.Nr with these arguments matches the rule.
func (r Rule) Match(args [6]uint64) bool {
	for _, c := range r.Conds {
		if !c.Match(args) {
			return false
		}
	}
	return true
}

// Rules parses the embedded policy, syscalls.policy.
func Rules() ([]Rule, error) {
	rules, err := Parse(policySource)
	if err != nil {
		return nil, fmt.Errorf("bpf: embedded syscalls.policy: %w", err)
	}
	return rules, nil
}

// Parse parses a policy in the syscalls.policy format. Every malformed line is
// reported, each error naming its line number.
func Parse(src []byte) ([]Rule, error) {
	var rules []Rule
	var errs []error
	first := map[int]int{} // syscall number -> index of its first rule
	for i, line := range strings.Split(string(src), "\n") {
		n := i + 1
		text := strings.TrimSpace(line)
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		r, err := parseLine(text)
		if err != nil {
			errs = append(errs, fmt.Errorf("line %d: %w", n, err))
			continue
		}
		r.Line = n
		if j, ok := first[r.Nr]; ok {
			if err := compatible(rules[j], r); err != nil {
				errs = append(errs, fmt.Errorf("line %d: %w", n, err))
				continue
			}
		} else {
			first[r.Nr] = len(rules)
		}
		rules = append(rules, r)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if len(rules) == 0 {
		return nil, errors.New("policy has no rules")
	}
	return rules, nil
}

// compatible checks a later rule for the same syscall against the first one,
// so that one syscall number maps to one errno (see Table).
func compatible(prev, r Rule) error {
	switch {
	case prev.Mediate != r.Mediate:
		return fmt.Errorf("%s: mediate differs from line %d (all lines of a syscall agree)", r.Syscall, prev.Line)
	case prev.Signals != r.Signals:
		return fmt.Errorf("%s: signals differs from line %d (all lines of a syscall agree)", r.Syscall, prev.Line)
	case prev.Errno != r.Errno:
		return fmt.Errorf("%s: errno %s differs from %s on line %d (one errno per syscall)",
			r.Syscall, errnoName(r.Errno), errnoName(prev.Errno), prev.Line)
	case prev.Quiet != r.Quiet:
		return fmt.Errorf("%s: quiet differs from line %d (all lines of a syscall agree)", r.Syscall, prev.Line)
	case len(prev.Conds) == 0 || len(r.Conds) == 0:
		return fmt.Errorf("%s: already refused on line %d; an unconditional rule cannot be combined with others",
			r.Syscall, prev.Line)
	}
	return nil
}

func parseLine(text string) (Rule, error) {
	var r Rule
	head, reason, ok := strings.Cut(text, "--")
	r.Reason = strings.TrimSpace(reason)
	if !ok || r.Reason == "" {
		return r, errors.New(`missing "-- reason"`)
	}
	f := strings.Fields(head)
	if len(f) < 2 {
		return r, errors.New("want: SYSCALL ERRNO [quiet] [if CONDITIONS] -- REASON")
	}
	var err error
	if r.Syscall, r.Nr, err = parseSyscall(f[0]); err != nil {
		return r, err
	}
	if f[1] == "mediate" {
		r.Mediate = true
		if len(f) > 2 && f[2] == "signals" {
			r.Signals = true
			f = append(f[:2:2], f[3:]...)
		} else if len(f) > 2 && f[2] != "quiet" && f[2] != "if" {
			// The errno where no supervisor can be asked.
			if r.Errno, err = parseErrno(f[2]); err != nil {
				return r, err
			}
			f = f[1:]
		}
	} else if r.Errno, err = parseErrno(f[1]); err != nil {
		return r, err
	}
	f = f[2:]
	if len(f) > 0 && f[0] == "quiet" {
		r.Quiet = true
		f = f[1:]
	}
	if len(f) == 0 {
		return r, nil
	}
	if f[0] != "if" {
		return r, fmt.Errorf("unexpected %q (want \"if\" or \"--\")", f[0])
	}
	if len(f) == 1 {
		return r, errors.New(`"if" without conditions`)
	}
	seen := map[int]bool{}
	for _, part := range strings.Split(strings.Join(f[1:], " "), "&&") {
		c, err := parseCond(strings.Join(strings.Fields(part), ""))
		if err != nil {
			return r, err
		}
		if seen[c.Arg] {
			return r, fmt.Errorf("arg%d compared twice on one line", c.Arg)
		}
		seen[c.Arg] = true
		r.Conds = append(r.Conds, c)
	}
	return r, nil
}

// parseSyscall accepts "name", "number" or "name:number".
func parseSyscall(tok string) (string, int, error) {
	name, num, hasNum := strings.Cut(tok, ":")
	nr := -1
	if !hasNum && isDigits(name) {
		name, num, hasNum = "", name, true
	}
	if hasNum {
		v, err := strconv.ParseUint(num, 0, 32)
		if err != nil || v >= maxNr {
			return "", 0, fmt.Errorf("syscall number %q: want 0..%d", num, maxNr-1)
		}
		nr = int(v)
	}
	if name == "" {
		if n, ok := libName(nr); ok {
			name = n
		} else {
			name = fmt.Sprintf("syscall_%d", nr)
		}
		return name, nr, nil
	}
	if !validName(name) {
		return "", 0, fmt.Errorf("bad syscall name %q", name)
	}
	known, err := seccomp.GetSyscallFromNameByArch(name, seccomp.ArchAMD64)
	switch {
	case err != nil && nr < 0:
		return "", 0, fmt.Errorf("libseccomp does not know syscall %q on x86_64: write it as %s:NUMBER", name, name)
	case err != nil:
		if other, ok := libName(nr); ok {
			return "", 0, fmt.Errorf("%d is %s on x86_64 according to libseccomp, not %s", nr, other, name)
		}
		return name, nr, nil // a name only the policy knows
	case known < 0:
		return "", 0, fmt.Errorf("%q is not an x86_64 syscall", name)
	case nr >= 0 && int(known) != nr:
		return "", 0, fmt.Errorf("%s is %d on x86_64 according to libseccomp, not %d", name, int(known), nr)
	}
	return name, int(known), nil
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

func validName(s string) bool {
	if s == "" || s[0] < 'a' || s[0] > 'z' {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// libName is libseccomp's x86_64 name for nr, if it has one.
func libName(nr int) (string, bool) {
	name, err := seccomp.ScmpSyscall(nr).GetNameByArch(seccomp.ArchAMD64)
	if err != nil || name == "" {
		return "", false
	}
	return name, true
}

func parseErrno(tok string) (syscall.Errno, error) {
	for e := syscall.Errno(1); e < 256; e++ { // Linux errno names end at 133
		if unix.ErrnoName(e) == tok {
			return e, nil
		}
	}
	return 0, fmt.Errorf("unknown errno %q (want a name such as EPERM)", tok)
}

func errnoName(e syscall.Errno) string {
	if n := unix.ErrnoName(e); n != "" {
		return n
	}
	return strconv.Itoa(int(e))
}

// parseCond parses one condition with the spaces removed: "arg0!=0",
// "arg1&0xffffffff==0x5412".
func parseCond(s string) (Cond, error) {
	var c Cond
	bad := func(why string) (Cond, error) {
		return Cond{}, fmt.Errorf("condition %q: %s", s, why)
	}
	if len(s) < 4 || !strings.HasPrefix(s, "arg") || s[3] < '0' || s[3] > '5' {
		return bad("want argN (N = 0..5) first")
	}
	c.Arg = int(s[3] - '0')
	rest := s[4:]
	masked := strings.HasPrefix(rest, "&")
	if masked {
		end := strings.IndexAny(rest, "=!<>")
		if end < 0 {
			return bad("missing comparison")
		}
		m, err := strconv.ParseUint(rest[1:end], 0, 64)
		if err != nil {
			return bad("bad mask " + strconv.Quote(rest[1:end]))
		}
		c.Mask, rest = m, rest[end:]
	}
	op := -1
	for _, o := range []Op{OpEq, OpNe, OpLe, OpGe, OpLt, OpGt} { // two-char ops first
		if strings.HasPrefix(rest, opText[o]) {
			op, rest = int(o), rest[len(opText[o]):]
			break
		}
	}
	if op < 0 {
		return bad("want one of == != < <= > >=")
	}
	c.Op = Op(op)
	v, err := strconv.ParseUint(rest, 0, 64)
	if err != nil {
		return bad("bad value " + strconv.Quote(rest))
	}
	c.Value = v
	if masked {
		if c.Op != OpEq {
			return bad("a masked compare only supports ==")
		}
		if c.Value&^c.Mask != 0 {
			return bad("value has bits outside the mask, so it can never match")
		}
		c.Op = OpMaskedEq
	}
	return c, nil
}
