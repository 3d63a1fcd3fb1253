package cli

import (
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"

	"ronly.dev/ronly/go/policy"
)

// A "--" before any command name selects run, so that `ronly -- probe`
// runs a program called probe; a command name before it is left alone.
func TestExplicitRun(t *testing.T) {
	parser, _ := newTestParser(t)
	for _, tc := range []struct{ in, want []string }{
		{[]string{"--", "probe"}, []string{"run", "--", "probe"}},
		{[]string{"-v", "--", "ls"}, []string{"-v", "run", "--", "ls"}},
		{[]string{"probe", "--json"}, []string{"probe", "--json"}},
		{[]string{"probe", "--", "x"}, []string{"probe", "--", "x"}},
		{[]string{"ls", "-l"}, []string{"ls", "-l"}},
		{[]string{"echo", "a", "--", "b"}, []string{"echo", "a", "--", "b"}},
		{[]string{"-v", "echo", "--", "b"}, []string{"-v", "echo", "--", "b"}},
		{[]string{"--workspace", "probe", "--", "ls"}, []string{"--workspace", "probe", "run", "--", "ls"}},
		{[]string{"--rw", "/x", "--no-network", "--", "ls"}, []string{"--rw", "/x", "--no-network", "run", "--", "ls"}},
		{[]string{"--rw=/x", "echo", "--", "b"}, []string{"--rw=/x", "echo", "--", "b"}},
		{[]string{"-v", "run", "--", "ls"}, []string{"-v", "run", "--", "ls"}},
	} {
		if got := explicitRun(parser.Model, tc.in); !slices.Equal(got, tc.want) {
			t.Errorf("explicitRun(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// Parse reads the file's flags, then the command line's; an error about a
// flag the file set, from parsing or from building the policy later, names
// the file's line, and keeps its cause for errors.As.
func TestParse(t *testing.T) {
	dir := t.TempDir()
	path := writeFile(t, dir, "p.toml", "no-network = true\ntmpfs-size = \"banana\"\n")
	parser, cli := newTestParser(t)
	ctx, pf, err := Parse(parser, []string{"--policy", path, "--", "ls", "-l"})
	if err != nil {
		t.Fatal(err)
	}
	if ctx.Command() != "run <command>" || !cli.NoNetwork || cli.TmpfsSize != "banana" {
		t.Errorf("command %q, flags %+v", ctx.Command(), cli)
	}
	_, err = cli.PolicyFor([]string{"ls"})
	got := pf.Attribute(err)
	var fe *policy.FlagError
	if want := "--policy " + path + `:2: key "tmpfs-size": value "banana": not a size`; got == nil ||
		!strings.HasPrefix(got.Error(), want) || !errors.As(got, &fe) {
		t.Errorf("got %v, want %s... wrapping a *policy.FlagError", got, want)
	}

	parser, _ = newTestParser(t)
	path = writeFile(t, dir, "q.toml", "rootless = true\n")
	_, _, err = Parse(parser, []string{"--policy", path, "--privileged", "--mode", "userns", "true"})
	if err == nil || strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), "can't be used together") {
		t.Errorf("conflicting flags: got %v, want one line", err)
	}
	if pf.Attribute(nil) != nil {
		t.Error("Attribute(nil) is not nil")
	}
}

// Defaults is what kong gives a command line without flags.
func TestDefaultsAreKongs(t *testing.T) {
	parser, got := newTestParser(t)
	if _, _, err := Parse(parser, []string{"--", "true"}); err != nil {
		t.Fatal(err)
	}
	if want := Defaults(); !reflect.DeepEqual(*got, want) {
		t.Errorf("kong's defaults\n%+v\nDefaults()\n%+v", *got, want)
	}
}
