package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeTools makes a directory of stand-ins for the real tools: each prints
// "real NAME ARGS" so a test sees exactly what reached it.
func fakeTools(t *testing.T, names ...string) string {
	t.Helper()
	dir := userDir(t, 0, "ronly-e2e-tools-")
	for _, n := range names {
		writeFile(t, 0, filepath.Join(dir, n), "#!/bin/sh\necho real "+n+" \"$@\"\n", 0o755)
	}
	return dir
}

func TestShims(t *testing.T) {
	b := setup(t)
	tools := fakeTools(t, "docker", "kubectl", "systemctl")
	rules := userDir(t, 0, "ronly-e2e-rules-")
	writeFile(t, 0, filepath.Join(rules, "systemctl.rules"),
		"tool systemctl\nallow status show list-units is-active\nknown stop start restart\n", 0o644)
	textfile := filepath.Join(userDir(t, 0, "ronly-e2e-shimcount-"), "ronly.prom")
	path := "PATH=" + tools + ":/usr/bin:/bin"

	cases := []struct {
		name   string
		flags  []string
		script string
		code   int
		stdout string
		stderr string // one line, exact, when set
	}{
		{name: "allowed verb reaches the real tool, arguments untouched", script: "docker --context x ps -a",
			stdout: "real docker --context x ps -a\n"},
		{name: "management command", script: "docker container ls", stdout: "real docker container ls\n"},
		{name: "kubectl global flags", script: "kubectl -n prod get pods", stdout: "real kubectl -n prod get pods\n"},
		{name: "blocked verb", script: "docker run nginx", code: 1,
			stderr: "ronly: docker run is blocked (read-only session)"},
		{name: "blocked kubectl verb", script: "kubectl delete pod x", code: 1,
			stderr: "ronly: kubectl delete is blocked (read-only session)"},
		{name: "shims cannot be changed", script: "echo x > /dev/ronly-shims/docker || rm -f /dev/ronly-shims/docker || echo refused",
			stdout: "refused\n"},
		{name: "--no-shims leaves the real tool", flags: []string{"--no-shims"}, script: "docker run nginx",
			stdout: "real docker run nginx\n"},
		{name: "--extra-shims rules for another tool: allowed", flags: []string{"--extra-shims", rules},
			script: "systemctl status ssh", stdout: "real systemctl status ssh\n"},
		{name: "--extra-shims rules for another tool: blocked", flags: []string{"--extra-shims", rules},
			script: "systemctl stop ssh", code: 1, stderr: "ronly: systemctl stop is blocked (read-only session)"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			flags := append([]string{"--metrics-textfile", textfile}, tc.flags...)
			r := b.sh(t, opts{env: []string{path}}, flags, tc.script)
			if r.code != tc.code || r.stdout != tc.stdout {
				t.Fatalf("want exit %d, stdout %q\n%s", tc.code, tc.stdout, r)
			}
			if tc.stderr != "" && strings.TrimSpace(r.stderr) != tc.stderr {
				t.Fatalf("want stderr %q\n%s", tc.stderr, r)
			}
		})
	}
	prom, err := os.ReadFile(textfile)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`ronly_blocked_commands_total{subcommand="run",tool="docker"} 1`,
		`ronly_blocked_commands_total{subcommand="delete",tool="kubectl"} 1`,
		`ronly_blocked_commands_total{subcommand="stop",tool="systemctl"} 1`,
	} {
		if !strings.Contains(string(prom), want+"\n") {
			t.Errorf("textfile lacks %q:\n%s", want, prom)
		}
	}
}
