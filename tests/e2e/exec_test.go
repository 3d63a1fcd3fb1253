package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestExecCommand checks how the C init starts the command in place of
// itself: the exit codes and the one line ronly prints when the command
// cannot run (as the Go front-end that did this before printed them), the
// environment the command gets, and that no second Go runtime starts on
// the way to it.
func TestExecCommand(t *testing.T) {
	b := setup(t)
	for _, u := range users {
		t.Run(u.name, func(t *testing.T) {
			dir := userDir(t, u.uid, "ronly-e2e-exec-")
			plain := filepath.Join(dir, "plain")
			writeFile(t, u.uid, plain, "data\n", 0o644)
			garbage := filepath.Join(dir, "garbage")
			writeFile(t, u.uid, garbage, "\x01\x02 not a program\n", 0o755)
			tool := filepath.Join(dir, "tool")
			writeFile(t, u.uid, tool, "#!/bin/sh\necho \"$0 $*\"\n", 0o755)
			cases := []struct {
				name   string
				args   []string
				env    []string
				dir    string
				stdout string
				stderr string
				code   int
			}{
				{name: "not on PATH", args: []string{"ronly-e2e-no-such-command"},
					stderr: "ronly: ronly-e2e-no-such-command: executable file not found in $PATH\n", code: 127},
				{name: "missing path", args: []string{"/nonexistent/ronly-e2e"},
					stderr: "ronly: /nonexistent/ronly-e2e: stat /nonexistent/ronly-e2e: no such file or directory\n", code: 127},
				{name: "directory", args: []string{"/etc"}, stderr: "ronly: /etc: is a directory\n", code: 127},
				{name: "not executable", args: []string{plain}, stderr: "ronly: " + plain + ": permission denied\n", code: 126},
				{name: "not a program", args: []string{garbage}, stderr: "ronly: exec " + garbage + ": exec format error\n", code: 126},
				{name: "relative PATH entry", args: []string{"tool"}, env: []string{"PATH=:/usr/bin:/bin"}, dir: dir,
					stderr: "ronly: tool: cannot run executable found relative to current directory\n", code: 127},
				{name: "found on PATH inside", args: []string{"tool", "a", "b"}, env: []string{"PATH=/nonexistent:" + dir},
					stdout: tool + " a b\n"},
				{name: "the shell when no command", env: []string{"SHELL=" + tool},
					stdout: tool + " \n"},
			}
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					args := append(append(append([]string{}, u.flags...), "--no-metrics"), tc.args...)
					if len(tc.args) > 0 {
						args = append(append(append([]string{}, u.flags...), "--no-metrics", "--"), tc.args...)
					}
					r := b.run(t, opts{uid: u.uid, env: tc.env, dir: tc.dir}, args...)
					if r.code != tc.code || r.stdout != tc.stdout || r.stderr != tc.stderr {
						t.Fatalf("want exit %d, stdout %q, stderr %q\n%s", tc.code, tc.stdout, tc.stderr, r)
					}
				})
			}
		})
	}
}

// TestExecEnvironment checks the environment the command gets: ronly's own
// invitation gone, the shims first on PATH, the report descriptor named,
// the caller's variables kept with a later --setenv winning.
func TestExecEnvironment(t *testing.T) {
	b := setup(t)
	r := b.run(t, opts{env: []string{"PATH=/usr/bin:/bin", "RONLY_E2E=caller"}}, "--no-metrics", "--setenv", "RONLY_E2E=setenv", "--", "env", "-0")
	if r.code != 0 {
		t.Fatalf("env failed\n%s", r)
	}
	vars := map[string]string{}
	// NUL-separated: a value may hold newlines (Bazel's test runner
	// exports a bash function).
	for _, line := range strings.Split(strings.TrimSuffix(r.stdout, "\x00"), "\x00") {
		name, value, _ := strings.Cut(line, "=")
		if _, dup := vars[name]; dup {
			t.Errorf("%s is set twice\n%s", name, r)
		}
		vars[name] = value
		if strings.HasPrefix(name, "_RONLY_") {
			t.Errorf("ronly's own %s reached the command\n%s", name, r)
		}
	}
	if vars["PATH"] != "/dev/ronly-shims:/usr/bin:/bin" {
		t.Errorf("PATH inside is %q, want the shims first, then the caller's\n%s", vars["PATH"], r)
	}
	if vars["RONLY_REPORT_FD"] != "4" || vars["RONLY_E2E"] != "setenv" {
		t.Errorf("RONLY_REPORT_FD=%q RONLY_E2E=%q, want 4 and the --setenv value\n%s", vars["RONLY_REPORT_FD"], vars["RONLY_E2E"], r)
	}
}

// TestOneGoRuntime checks that exactly one Go runtime starts on the way to
// the command: the supervisor's. GODEBUG=inittrace=1 makes every Go
// runtime that starts print its package inits; the command (true) prints
// none, and a front-end inside would print a second set.
func TestOneGoRuntime(t *testing.T) {
	b := setup(t)
	r := b.run(t, opts{env: []string{"GODEBUG=inittrace=1"}}, "--no-metrics", "--", "true")
	if r.code != 0 {
		t.Fatalf("true failed\n%s", r)
	}
	if n := strings.Count(r.stderr, "init runtime @"); n != 1 {
		t.Fatalf("%d Go runtimes printed their inits, want 1 (the supervisor's)\n%s", n, r)
	}
}

// TestFlaglessCommandLine runs sessions the way the README's first example
// does, with no flag at all, which ronly starts without building kong's
// model: the command gets its arguments as given (a "--" after the command
// is the command's), and the session is as read-only as any other.
func TestFlaglessCommandLine(t *testing.T) {
	b := setup(t)
	for _, u := range users {
		t.Run(u.name, func(t *testing.T) {
			outside := filepath.Join(userDir(t, u.uid, "ronly-e2e-flagless-"), "written")
			script := `printf '%s|' "$@"; echo > "$0" || echo refused`
			for _, args := range [][]string{
				{"sh", "-c", script, outside, "a", "--", "b"},
				{"--", "sh", "-c", script, outside, "a", "--", "b"},
			} {
				r := b.run(t, opts{uid: u.uid}, args...)
				if r.code != 0 || !strings.HasPrefix(r.stdout, "a|--|b|refused") {
					t.Errorf("%q: want the arguments a -- b and the write refused\n%s", args, r)
				}
				if _, err := os.Stat(outside); !os.IsNotExist(err) {
					t.Fatalf("%q: %s was written on the host (%v)", args, outside, err)
				}
			}
		})
	}
}
