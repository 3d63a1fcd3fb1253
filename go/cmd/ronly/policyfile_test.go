package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/alecthomas/kong"

	"ronly.dev/ronly/go/cli"
)

// The policy file itself is go/cli's, tested there; here the built binary
// reads one.

// newTestParser builds the parser as runCLI does, with every command.
func newTestParser(t *testing.T) (*kong.Kong, *commandLine) {
	t.Helper()
	var cl commandLine
	parser, err := newParser(&cl, false)
	if err != nil {
		t.Fatal(err)
	}
	return parser, &cl
}

// A session's command line builds the model of the flags and run only; a
// command line that names another command, or asks for help, gets them all.
func TestPlainRun(t *testing.T) {
	for _, tc := range []struct {
		args  []string
		plain bool
	}{
		{[]string{"--no-network", "ls", "-l"}, true},
		{[]string{"--", "probe"}, true},
		{nil, true},
		{[]string{"probe", "--json"}, false},
		{[]string{"--workspace", "probe", "--", "ls"}, false},
		{[]string{"--help"}, false},
		{[]string{"run", "ls"}, false},
		{[]string{"sweep"}, false},
	} {
		if got := plainRun(tc.args); got != tc.plain {
			t.Errorf("plainRun(%q) = %v, want %v", tc.args, got, tc.plain)
		}
	}
	for _, plain := range []bool{true, false} {
		var cl commandLine
		parser, err := newParser(&cl, plain)
		if err != nil {
			t.Fatal(err)
		}
		var cmds []string
		for _, c := range parser.Model.Children {
			cmds = append(cmds, c.Name)
			// Else flagless would run a command of that name.
			if !isCommandName(c.Name) {
				t.Errorf("isCommandName(%q) is false for one of kong's commands", c.Name)
			}
		}
		want := "run probe sweep probe-internal"
		if plain {
			want = "run"
		}
		if got := strings.Join(cmds, " "); got != want {
			t.Errorf("plain %v: commands %q, want %q", plain, got, want)
		}
	}
}

func writeFile(t *testing.T, dir, name, text string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

var prebuilt = flag.String("ronly", "", "a prebuilt ronly binary (Bazel passes //:ronly; default: go build)")

// buildRonly builds the binary once per test run, unless one was given.
func buildRonly(t *testing.T) string {
	t.Helper()
	if *prebuilt != "" {
		p := *prebuilt
		if !filepath.IsAbs(p) {
			// Bazel: relative to the workspace in the runfiles tree.
			p = filepath.Join(os.Getenv("TEST_SRCDIR"), os.Getenv("TEST_WORKSPACE"), p)
		}
		return p
	}
	if testing.Short() {
		t.Skip("builds the binary")
	}
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go toolchain to build ronly with")
	}
	bin := filepath.Join(t.TempDir(), "ronly")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// A bad policy file stops ronly before anything runs: exit 125 and one
// line naming the file, the line and the key.
func TestPolicyFileEndToEnd(t *testing.T) {
	bin := buildRonly(t)
	dir := t.TempDir()
	writeFile(t, dir, "bad.toml", "# policy\ntmpfs-size = \"128M\"\nno-network = \"yes\"\n")
	writeFile(t, dir, "banana.toml", "no-network = true\n\ntmpfs-size = \"banana\"\n")
	writeFile(t, dir, "typo.toml", "rw = [\"/tmp\"]\nno-netwrk = true\n")
	writeFile(t, dir, "section.toml", "[sandbox]\nno-network = true\n")
	writeFile(t, dir, "ok.toml", "no-network = true\n")
	marker := filepath.Join(dir, "marker")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--policy", "bad.toml", "--", "touch", marker},
			`ronly: --policy bad.toml:3: key "no-network": expects true or false, not a string`},
		{[]string{"--policy=banana.toml", "touch", marker},
			`ronly: --policy banana.toml:3: key "tmpfs-size": value "banana": not a size`},
		{[]string{"--no-shims", "--policy", "typo.toml", "--", "touch", marker},
			`ronly: --policy typo.toml:2: key "no-netwrk": not a ronly flag (did you mean "no-network"?)`},
		{[]string{"--policy", "section.toml", "touch", marker},
			`ronly: --policy section.toml:1: [sandbox]: tables are not supported`},
		{[]string{"--policy", "missing.toml", "touch", marker},
			`ronly: --policy "missing.toml": no such file or directory`},
		{[]string{"probe", "--policy", "ok.toml"},
			`ronly: --policy "ok.toml": must come before the command`},
		{[]string{"--policy", "ok.toml", "--tmpfs-size", "banana", "touch", marker},
			`ronly: --tmpfs-size "banana": not a size`},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		cmd := exec.CommandContext(ctx, bin, tc.args...)
		cmd.Dir = dir
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		cancel()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != exitRonly {
			t.Errorf("%q: %v, want exit %d; stderr %q", tc.args, err, exitRonly, stderr.String())
		}
		lines := strings.Split(strings.TrimSuffix(stderr.String(), "\n"), "\n")
		if len(lines) != 1 || !strings.HasPrefix(lines[0], tc.want) {
			t.Errorf("%q: stderr %q, want one line starting %q", tc.args, stderr.String(), tc.want)
		}
		if stdout.Len() != 0 {
			t.Errorf("%q: stdout %q", tc.args, stdout.String())
		}
		if _, err := os.Stat(marker); err == nil {
			t.Fatalf("%q: the command ran", tc.args)
		}
	}
}

// A command line without flags runs, without kong, the policy kong would
// have made of it; any other line is left to kong.
func TestFlaglessIsKongs(t *testing.T) {
	for _, args := range [][]string{
		nil,
		{"--"},
		{"--", "true"},
		{"--", "probe", "--json"},
		{"--", "--help"},
		{"ls", "-l", "--", "x"},
		{"sh", "-c", "echo --no-network"},
	} {
		command, ok := flagless(args)
		if !ok {
			t.Errorf("flagless(%q) refused", args)
			continue
		}
		parser, cl := newTestParser(t)
		if _, _, err := cli.Parse(parser, args); err != nil {
			t.Fatalf("kong: %q: %v", args, err)
		}
		want, err := cl.CLI.PolicyFor(cl.Run.Command)
		if err != nil {
			t.Fatal(err)
		}
		c := cli.Defaults()
		got, err := c.PolicyFor(command)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%q: flagless policy\n%+v\nkong's\n%+v", args, got, want)
		}
	}
	for _, args := range [][]string{
		{"-v", "true"}, {"--no-network", "--", "true"}, {"run", "true"}, {"probe"},
		{"help"}, {"-"}, {"--help"}, {"--version"}, {"--policy", "p.toml"},
	} {
		if command, ok := flagless(args); ok {
			t.Errorf("flagless(%q) = %q, want it left to kong", args, command)
		}
	}
}
