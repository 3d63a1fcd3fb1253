package e2e

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestBadInput: a bad command line exits 125 with exactly one line on
// stderr naming the flag and the value, runs nothing and changes nothing.
// Each case also passes a valid --rw directory and a command that would
// leave a file there, to show the command never ran.
func TestBadInput(t *testing.T) {
	b := setup(t)
	cases := []struct {
		name  string
		flags []string // bad flags; "RW" stands for the valid --rw directory
		names []string // words the one line must contain
	}{
		{"tmpfs size not a size", []string{"--tmpfs-size", "abc", "--rw", "RW"}, []string{"--tmpfs-size", "abc"}},
		{"writable relative", []string{"--writable", "relative", "--rw", "RW"}, []string{"--writable", "relative"}},
		{"extra shims in /tmp", []string{"--extra-shims", "/tmp", "--rw", "RW"}, []string{"--extra-shims", "/tmp"}},
		{"rw missing", []string{"--rw", "RW", "--rw", "/nonexistent"}, []string{"--rw", "/nonexistent"}},
		{"unknown flag", []string{"--bogus-flag", "--rw", "RW"}, []string{"--bogus-flag"}},
		{"unknown profile", []string{"--profile", "prod", "--rw", "RW"}, []string{"--profile", "prod"}},
		{"memory not a size", []string{"--memory", "lots", "--rw", "RW"}, []string{"--memory", "lots"}},
		{"memory too small", []string{"--memory", "1k", "--rw", "RW"}, []string{"--memory"}},
		{"timeout negative", []string{"--timeout=-5s", "--rw", "RW"}, []string{"--timeout", "-5s"}},
		{"timeout not a duration", []string{"--timeout", "soon", "--rw", "RW"}, []string{"--timeout", "soon"}},
		{"pids negative", []string{"--pids=-1", "--rw", "RW"}, []string{"--pids", "-1"}},
		{"setenv without value", []string{"--setenv", "FOO", "--rw", "RW"}, []string{"--setenv", "FOO"}},
		{"keepenv without clearenv", []string{"--keepenv", "FOO", "--rw", "RW"}, []string{"--keepenv", "FOO"}},
		{"workspace outside ci", []string{"--workspace", "RW", "--rw", "RW"}, []string{"--workspace"}},
		{"report in a missing directory", []string{"--report", "/nonexistent/r.json", "--rw", "RW"}, []string{"--report", "/nonexistent/r.json"}},
	}
	// The command after the flags, with and without the "--" that ends them.
	separators := []struct {
		name string
		sep  []string
	}{{"no separator", nil}, {"with --", []string{"--"}}}
	for _, tc := range cases {
		for _, s := range separators {
			t.Run(tc.name+"/"+s.name, func(t *testing.T) {
				c := newCanaries(t, 0)
				before := c.snapshot(t)
				var args []string
				for _, f := range tc.flags {
					args = append(args, strings.ReplaceAll(f, "RW", c.rwDir))
				}
				args = append(append(args, s.sep...), "/bin/sh", "-c", "touch "+filepath.Join(c.rwDir, "ran"))
				r := b.run(t, opts{}, args...)
				if r.code != 125 {
					t.Errorf("want exit 125:\n%s", r)
				}
				if lines := strings.Split(strings.TrimSuffix(r.stderr, "\n"), "\n"); len(lines) != 1 || lines[0] == "" {
					t.Errorf("want exactly one line on stderr, got %d:\n%s", len(lines), r.stderr)
				}
				for _, w := range tc.names {
					if !strings.Contains(r.stderr, w) {
						t.Errorf("stderr does not name %q: %q", w, r.stderr)
					}
				}
				if r.stdout != "" {
					t.Errorf("stdout not empty: %q", r.stdout)
				}
				// (.git is the canary repository the runner made there.)
				if entries := slices.DeleteFunc(dirNames(t, c.rwDir), func(n string) bool { return n == ".git" }); len(entries) > 0 {
					t.Errorf("the command ran although the command line was bad: %v", entries)
				}
				c.verify(t, before)
			})
		}
	}
}
