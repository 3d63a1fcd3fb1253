package cli

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/alecthomas/kong"
)

// testApp is a command line as go/cmd/ronly builds it: the flags, a
// default run command and a command with flags of its own.
type testApp struct {
	CLI
	Run struct {
		Command []string `arg:"" optional:"" passthrough:""`
	} `cmd:"" default:"withargs"`
	Probe struct {
		JSON bool `name:"json"`
	} `cmd:""`
}

// exitPanic carries kong's exit (after --help) out of Parse.
type exitPanic int

// newTestParser builds a parser with ronly's options.
func newTestParser(t *testing.T) (*kong.Kong, *CLI) {
	t.Helper()
	var app testApp
	parser, err := kong.New(&app, append(Options("test"),
		kong.Bind(&app.CLI),
		kong.Exit(func(code int) { panic(exitPanic(code)) }),
	)...)
	if err != nil {
		t.Fatal(err)
	}
	return parser, &app.CLI
}

func writeFile(t *testing.T, dir, name, text string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestParseTOML(t *testing.T) {
	src := "\ufeff# a comment\n" +
		"\n" +
		"   \t\n" +
		"basic = \"a \\\"q\\\" \\\\ b\\nc\\td\\u00e9\" # trailing comment\n" +
		"literal = 'C:\\path\\n'\n" +
		"int = 42\n" +
		"neg = -7\n" +
		"big = 1_000\n" +
		"yes = true\n" +
		"no=false\n" +
		"one = [\"a\", 'b']\n" +
		"empty = []\n" +
		"multi = [ # opens\r\n" +
		"  \"x\",\r\n" +
		"  # a comment inside\n" +
		"  \"y\", # after an element\n" +
		"]\n" +
		"\"quoted key\" = \"v\"\n" +
		"last = 'no newline at the end'"
	got, err := parseTOML([]byte(src))
	if err != nil {
		t.Fatal(err)
	}
	want := []tomlEntry{
		{key: "basic", line: 4, val: tomlValue{kind: tomlString, s: "a \"q\" \\ b\nc\tdé"}},
		{key: "literal", line: 5, val: tomlValue{kind: tomlString, s: `C:\path\n`}},
		{key: "int", line: 6, val: tomlValue{kind: tomlInt, n: 42}},
		{key: "neg", line: 7, val: tomlValue{kind: tomlInt, n: -7}},
		{key: "big", line: 8, val: tomlValue{kind: tomlInt, n: 1000}},
		{key: "yes", line: 9, val: tomlValue{kind: tomlBool, b: true}},
		{key: "no", line: 10, val: tomlValue{kind: tomlBool, b: false}},
		{key: "one", line: 11, val: tomlValue{kind: tomlArray, arr: []string{"a", "b"}, lines: []int{11, 11}}},
		{key: "empty", line: 12, val: tomlValue{kind: tomlArray, arr: []string{}}},
		{key: "multi", line: 13, val: tomlValue{kind: tomlArray, arr: []string{"x", "y"}, lines: []int{14, 16}}},
		{key: "quoted key", line: 18, val: tomlValue{kind: tomlString, s: "v"}},
		{key: "last", line: 19, val: tomlValue{kind: tomlString, s: "no newline at the end"}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("parseTOML:\n got %+v\nwant %+v", got, want)
	}
}

func TestParseTOMLErrors(t *testing.T) {
	for _, tc := range []struct {
		src  string
		line int
		key  string
		msg  string
	}{
		{"a = 1\n[sandbox]\nb = 2\n", 2, "", "[sandbox]: tables are not supported"},
		{"[[x]]\n", 1, "", "tables are not supported"},
		{"# c\na = 1\na = 2\n", 3, "a", "duplicate key (first set on line 2)"},
		{"tmpfs-size 128M\n", 1, "tmpfs-size", `expected "=" after the key, found "128M"`},
		{"tmpfs-size = 128M\n", 1, "tmpfs-size", `128M is not a value: quote a string ("128M")`},
		{"a =\n", 1, "a", `expected a value after "="`},
		{"a = \"open\n", 1, "a", "unterminated string"},
		{"a = 'open\n", 1, "a", "unterminated string"},
		{"\n\na = \"\\q\"\n", 3, "a", `unknown escape \q`},
		{"a = \"x\" b\n", 1, "a", `unexpected "b" after the value`},
		{"a.b = 1\n", 1, "a", "dotted keys are not supported"},
		{"a = \"\"\"x\"\"\"\n", 1, "a", "multi-line strings are not supported"},
		{"a = 1.5\n", 1, "a", "floats and dates are not supported"},
		{"a = 99999999999999999999\n", 1, "a", "integer out of range"},
		{"a = [\"x\",\n\"y\"\n", 1, "a", "unterminated array"},
		{"a = [\"x\" \"y\"]\n", 1, "a", `expected "," or "]" in the array`},
		{"a = [\n 1]\n", 2, "a", "an array holds only strings"},
		{"a = [[\"x\"]]\n", 1, "a", "an array holds only strings"},
		{"= 1\n", 1, "", `expected a key, found "= 1"`},
		{"a = \"\x01\"\n", 1, "a", "control character"},
		{"a = 1\nb = \"\xff\"\n", 2, "", "not UTF-8"},
	} {
		_, err := parseTOML([]byte(tc.src))
		var pe *policyFileError
		if !errors.As(err, &pe) {
			t.Errorf("%q: got %v, want a policyFileError", tc.src, err)
			continue
		}
		if pe.Line != tc.line || pe.Key != tc.key || !strings.Contains(pe.Msg, tc.msg) {
			t.Errorf("%q: got line %d key %q %q, want line %d key %q containing %q",
				tc.src, pe.Line, pe.Key, pe.Msg, tc.line, tc.key, tc.msg)
		}
	}
}

// loadPolicy runs withPolicyFile on a file holding text.
func loadPolicy(t *testing.T, text string, args ...string) ([]string, *PolicyFile, *CLI, *kong.Kong, string, error) {
	t.Helper()
	dir := t.TempDir()
	path := writeFile(t, dir, "p.toml", text)
	parser, cli := newTestParser(t)
	out, pf, err := withPolicyFile(parser, append([]string{"--policy", path}, args...))
	return out, pf, cli, parser, path, err
}

func TestPolicyFileErrors(t *testing.T) {
	for _, tc := range []struct {
		text, want string
	}{
		{"# x\ntmpfs-sise = \"1M\"\n", `:2: key "tmpfs-sise": not a ronly flag (did you mean "tmpfs-size"?)`},
		{"no_network = true\n", `:1: key "no_network": not a ronly flag (did you mean "no-network"?)`},
		{"network = true\n", `:1: key "network": not a ronly flag (did you mean "no-network"?)`},
		{"frobnicate = true\n", `:1: key "frobnicate": not a ronly flag`},
		{"no-network = \"yes\"\n", `:1: key "no-network": expects true or false, not a string`},
		{"tmpfs-size = 128\n", `:1: key "tmpfs-size": expects a string, not an integer: tmpfs-size = "128"`},
		{"landlock-min-abi = \"6\"\n", `:1: key "landlock-min-abi": expects an integer, not a string`},
		{"rw = \"/work\"\n", `:1: key "rw": expects an array of strings, not a string: rw = ["/work"]`},
		{"rootless = true\n\nprivileged = true\n", `:3: key "privileged": --rootless and --privileged can't be used together`},
		{"rw = [\"~/src\"]\n", `:1: key "rw": value "~/src": ~ is not expanded`},
		{"help = true\n", `:1: key "help": not a ronly flag`},
		{"version = true\n", `:1: key "version": not a ronly flag`},
		{"policy = \"other.toml\"\n", `:1: key "policy": not a ronly flag`},
		{"listen = \"127.0.0.1:1\"\n", `:1: key "listen": not a ronly flag`},
	} {
		_, _, _, _, path, err := loadPolicy(t, tc.text)
		if err == nil {
			t.Errorf("%q: no error", tc.text)
			continue
		}
		want := "--policy " + path + tc.want
		if got := err.Error(); !strings.HasPrefix(got, want) || strings.Contains(got, "\n") {
			t.Errorf("%q:\n got %s\nwant %s", tc.text, got, want)
		}
	}
}

func TestPolicyFlagErrors(t *testing.T) {
	parser, _ := newTestParser(t)
	missing := filepath.Join(t.TempDir(), "missing.toml")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--policy", missing}, `--policy "` + missing + `": no such file or directory`},
		{[]string{"--policy=" + t.TempDir()}, `is a directory`},
		{[]string{"--policy="}, `--policy: needs a FILE`},
		{[]string{"--policy=a", "--policy=b"}, `--policy "b": given twice`},
	} {
		_, _, err := withPolicyFile(parser, tc.args)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: got %v, want %q", tc.args, err, tc.want)
		}
	}
}

// The schema is the kong model: every global flag of the run command is a
// key, and nothing else is.
func TestPolicySchemaIsTheModel(t *testing.T) {
	parser, _ := newTestParser(t)
	schema := policySchema(parser.Model)
	for _, f := range parser.Model.Flags {
		switch f.Name {
		case "help", "version", policyFlagName:
			if schema[f.Name] != nil {
				t.Errorf("%s is a key", f.Name)
			}
			continue
		}
		if schema[f.Name] != f {
			t.Errorf("global flag --%s is not a policy key", f.Name)
		}
	}
	if len(schema) != len(parser.Model.Flags)-3 {
		t.Errorf("schema has %d keys for %d global flags", len(schema), len(parser.Model.Flags))
	}
	var probe *kong.Node
	for _, c := range parser.Model.Children {
		if c.Name == "probe" {
			probe = c
		}
	}
	if probe == nil || len(probe.Flags) == 0 {
		t.Fatal("no probe flags to check")
	}
	for _, f := range probe.Flags {
		if schema[f.Name] != nil {
			t.Errorf("probe flag --%s is a policy key", f.Name)
		}
	}
	// Every key takes a value of its kind.
	for name, f := range schema {
		v := tomlValue{kind: tomlString, s: "x"}
		switch {
		case f.IsBool():
			v = tomlValue{kind: tomlBool, b: true}
		case f.IsSlice():
			v = tomlValue{kind: tomlArray, arr: []string{"/x"}, lines: []int{1}}
		case isNumber(f.Target.Type()):
			v = tomlValue{kind: tomlInt, n: 1}
		}
		fa, err := entryArgs(schema, tomlEntry{key: name, line: 1, val: v}, "/d")
		if err != nil || len(fa.args) != 1 || !strings.HasPrefix(fa.args[0], "--"+name) {
			t.Errorf("key %s: args %q, err %v", name, fa.args, err)
		}
	}
}

func TestPolicyFileApplies(t *testing.T) {
	text := `tmpfs-size = "128M"
rw = ["/a", "/b"]
no-network = true
no-shims = false
landlock-min-abi = 6
`
	args, _, cli, parser, _, err := loadPolicy(t, text, "--", "true")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := parser.Parse(explicitRun(parser.Model, args)); err != nil {
		t.Fatalf("%q: %v", args, err)
	}
	if cli.TmpfsSize != "128M" || !reflect.DeepEqual(cli.RW, []string{"/a", "/b"}) || !cli.NoNetwork ||
		cli.NoShims || cli.LandlockMinABI != 6 {
		t.Errorf("%q: got %+v", args, cli)
	}
}

func TestFlagsOverrideFile(t *testing.T) {
	text := `tmpfs-size = "128M"
rw = ["/a", "/b"]
writable = ["/w"]
no-network = true
rootless = true
landlock-min-abi = 6
`
	args, pf, cli, parser, _, err := loadPolicy(t, text,
		"--tmpfs-size", "1M", "run", "--rw=/c", "--privileged", "-v", "--landlock-min-abi=2", "ls", "--rw=/not-a-flag")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := parser.Parse(explicitRun(parser.Model, args)); err != nil {
		t.Fatalf("%q: %v", args, err)
	}
	if err := pf.afterParse(); err != nil {
		t.Fatal(err)
	}
	if cli.TmpfsSize != "1M" || cli.LandlockMinABI != 2 {
		t.Errorf("scalars: got %q %d, want the command line's", cli.TmpfsSize, cli.LandlockMinABI)
	}
	if !reflect.DeepEqual(cli.RW, []string{"/c"}) {
		t.Errorf("--rw: got %q, want only the command line's", cli.RW)
	}
	if !reflect.DeepEqual(cli.Writable, []string{"/w"}) || !cli.NoNetwork || !cli.Verbose {
		t.Errorf("the file's other keys were lost: %+v", cli)
	}
	if !cli.Privileged || cli.Rootless {
		t.Errorf("--privileged did not replace rootless = true: %+v", cli)
	}
	for _, k := range []string{"tmpfs-size", "rw", "rootless", "landlock-min-abi"} {
		if pf.entries[k] != nil {
			t.Errorf("overridden key %s is still attributed to the file", k)
		}
	}

	// Even without the drop, kong keeps the last of a repeated scalar.
	parser, cli = newTestParser(t)
	if _, err := parser.Parse([]string{"--tmpfs-size=1M", "--tmpfs-size=2M"}); err != nil || cli.TmpfsSize != "2M" {
		t.Errorf("repeated scalar: %q, %v", cli.TmpfsSize, err)
	}
}

func TestPolicyRelativePaths(t *testing.T) {
	dir := t.TempDir()
	sub := filepath.Join(dir, "etc")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, sub, "p.toml", `rw = ["work", "../up", "/abs"]
extra-shims = ["shims"]
audit-log = "-"
metrics-textfile = "m.prom"
tmpfs-size = "64M"
`)
	t.Chdir(dir)
	parser, cli := newTestParser(t)
	args, _, err := withPolicyFile(parser, []string{"--policy", "etc/p.toml"})
	if err == nil {
		_, err = parser.Parse(explicitRun(parser.Model, args))
	}
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{filepath.Join(sub, "work"), filepath.Join(dir, "up"), "/abs"}; !reflect.DeepEqual(cli.RW, want) {
		t.Errorf("rw: got %q, want %q", cli.RW, want)
	}
	if want := []string{filepath.Join(sub, "shims")}; !reflect.DeepEqual(cli.ExtraShims, want) {
		t.Errorf("extra-shims: got %q, want %q", cli.ExtraShims, want)
	}
	if cli.AuditLog != "-" || cli.MetricsTextfile != filepath.Join(sub, "m.prom") || cli.TmpfsSize != "64M" {
		t.Errorf("got audit-log %q, metrics-textfile %q, tmpfs-size %q", cli.AuditLog, cli.MetricsTextfile, cli.TmpfsSize)
	}
}

func TestScanGlobalFlags(t *testing.T) {
	parser, _ := newTestParser(t)
	for _, tc := range []struct {
		args   []string
		policy string // "" none
		given  []string
	}{
		{[]string{"--policy", "p", "ls"}, "p", []string{"policy"}},
		{[]string{"-v", "--policy=p", "--rw", "/x", "--", "ls"}, "p", []string{"verbose", "policy", "rw"}},
		{[]string{"run", "--no-network", "--policy", "p", "ls"}, "p", []string{"no-network", "policy"}},
		{[]string{"--tmpfs-size", "--policy", "ls", "--policy", "p"}, "", []string{"tmpfs-size"}},
		{[]string{"--", "ls", "--policy", "p"}, "", nil},
		{[]string{"ls", "--policy", "p"}, "", nil},
		{[]string{"probe", "--policy", "p"}, "", nil},
		{[]string{"--bogus", "--policy", "p"}, "p", []string{"policy"}},
	} {
		sc, err := scanGlobalFlags(parser.Model, tc.args)
		if err != nil {
			t.Errorf("%q: %v", tc.args, err)
			continue
		}
		if got := map[bool]string{true: sc.policy}[sc.hasPolicy]; got != tc.policy {
			t.Errorf("%q: policy %q, want %q", tc.args, got, tc.policy)
		}
		want := map[string]bool{}
		for _, g := range tc.given {
			want[g] = true
		}
		if !reflect.DeepEqual(sc.given, want) {
			t.Errorf("%q: given %v, want %v", tc.args, sc.given, want)
		}
	}
}

// An error about a flag the file set names the file, the line and the key.
func TestAttribute(t *testing.T) {
	text := `tmpfs-size = "banana"
rw = [
  "/ok",
  "/missing",
]
`
	args, pf, _, parser, path, err := loadPolicy(t, text)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := parser.Parse(explicitRun(parser.Model, args)); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ in, want string }{
		{`--tmpfs-size "banana": not a size`, `--policy ` + path + `:1: key "tmpfs-size": value "banana": not a size`},
		{`--rw "/missing": no such directory`, `--policy ` + path + `:4: key "rw": value "/missing": no such directory`},
		{`--rw "/other": no such directory`, `--policy ` + path + `:2: key "rw": value "/other": no such directory`},
		{`--tmpfs-size: must be at least 4k`, `--policy ` + path + `:1: key "tmpfs-size": must be at least 4k`},
		{`--writable "/x": not a directory`, `--writable "/x": not a directory`},
		{`--rw-other: x`, `--rw-other: x`},
		{`sandbox: something else`, `sandbox: something else`},
	} {
		if got := pf.attribute(tc.in); got != tc.want {
			t.Errorf("%s:\n got %s\nwant %s", tc.in, got, tc.want)
		}
	}
	// The real error, from the CLI's own validation.
	parser, cli := newTestParser(t)
	args, pf, err = withPolicyFile(parser, []string{"--policy", path, "true"})
	if err == nil {
		_, err = parser.Parse(explicitRun(parser.Model, args))
	}
	if err != nil {
		t.Fatal(err)
	}
	_, err = cli.PolicyFor([]string{"true"})
	want := `--policy ` + path + `:1: key "tmpfs-size": value "banana": not a size`
	if err == nil || !strings.HasPrefix(pf.attribute(err.Error()), want) {
		t.Errorf("got %v, want %s...", err, want)
	}
}

// What the library reads beyond the hand-written subset: TOML's other
// integer spellings are integers; the other kinds are refused at their line,
// and the parser's own errors keep the file's words.
func TestParseTOMLLibrary(t *testing.T) {
	got, err := parseTOML([]byte("hex = 0x1F\noct = 0o17\nbin = 0b101\n"))
	want := []tomlEntry{
		{key: "hex", line: 1, val: tomlValue{kind: tomlInt, n: 31}},
		{key: "oct", line: 2, val: tomlValue{kind: tomlInt, n: 15}},
		{key: "bin", line: 3, val: tomlValue{kind: tomlInt, n: 5}},
	}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("integers: got %+v, %v", got, err)
	}
	for _, tc := range []struct {
		src  string
		line int
		key  string
		msg  string
	}{
		{"a = 1979-05-27\n", 1, "a", `1979-05-27: floats and dates are not supported; quote it to pass it as a string: "1979-05-27"`},
		{"a = inf\n", 1, "a", "inf: floats and dates are not supported"},
		{"\na = {x = 1}\n", 2, "a", "inline tables are not supported"},
		{"a = [\n  \"x\",\n  bogus]\n", 3, "a", `bogus is not a value: quote a string ("bogus")`},
		{"a = [\"x\",,]\n", 1, "a", `an array holds only strings, found ",]"`},
		{"a = [\n'''x''']\n", 2, "a", "multi-line strings are not supported"},
		{"a = 1 # \x01\n", 1, "a", "control characters are not allowed in comments"},
		{"\"q k\" x\n", 1, "q k", `expected "=" after the key, found "x"`},
		{"a = 1\nb", 2, "b", `expected "=" after the key, found "end of line"`},
		{"a = ", 1, "a", `expected a value after "="`},
		{"a = 0x\n", 1, "a", `0x is not a value`},
		{"a = -9223372036854775809\n", 1, "a", "-9223372036854775809: integer out of range"},
		{"a = 1\r\n[t] # c\r\n", 2, "", "[t] # c: tables are not supported"},
		{"a = 1\n# \x01\nb = 2\n", 2, "", "control characters are not allowed in comments"},
	} {
		_, err := parseTOML([]byte(tc.src))
		var pe *policyFileError
		if !errors.As(err, &pe) {
			t.Errorf("%q: got %v, want a policyFileError", tc.src, err)
			continue
		}
		if pe.Line != tc.line || pe.Key != tc.key || !strings.HasPrefix(pe.Msg, tc.msg) {
			t.Errorf("%q: got line %d key %q %q, want line %d key %q starting %q",
				tc.src, pe.Line, pe.Key, pe.Msg, tc.line, tc.key, tc.msg)
		}
	}
}

// Any file gives entries or one policyFileError at a line of the file;
// never a panic, which would print a stack instead of exit 125.
func FuzzParseTOML(f *testing.F) {
	for _, s := range []string{"a = 1\n", "a = [\n \"x\", # c\n 'y',\n]\n", "\"k\" = \"\\u00e9\"\n", "[t]\n", "a = {x = [1]}\n",
		"a = \"\"\"\nx\"\"\"\n", "a = 1979-05-27T07:32:00Z\n", "a.b = 0x_1\n", "a = [\"x\"", "# \x01\n", "a = \"\\q", "\ufeffa=true"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		got, err := parseTOML(src)
		if err == nil {
			for _, e := range got {
				if e.line < 1 || e.line > bytes.Count(src, []byte("\n"))+1 {
					t.Fatalf("%q: entry %q at line %d", src, e.key, e.line)
				}
			}
			return
		}
		var pe *policyFileError
		if !errors.As(err, &pe) || pe.Line < 1 || pe.Line > bytes.Count(src, []byte("\n"))+1 {
			t.Fatalf("%q: %v", src, err)
		}
	})
}
