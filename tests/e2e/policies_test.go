package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// policyFile finds an example policy shipped in tools/deploy/policies,
// from the package directory (go test) or the runfiles root (Bazel).
func policyFile(t *testing.T, name string) string {
	t.Helper()
	for _, dir := range []string{"tools/deploy/policies", "../../tools/deploy/policies"} {
		p, err := filepath.Abs(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	t.Fatalf("example policy %s not found", name)
	return ""
}

// TestExamplePolicies runs each example policy the repo ships on the job
// it is written for, and checks that the file's settings took effect.
func TestExamplePolicies(t *testing.T) {
	b := setup(t)
	requireRoot(t)

	t.Run("debug-shell", func(t *testing.T) {
		dir := userDir(t, 0, "ronly-pol-")
		rep := filepath.Join(dir, "r.json")
		r := b.sh(t, opts{}, []string{"--policy", policyFile(t, "debug-shell.toml"), "--report", rep},
			"cat /etc/hostname >/dev/null && ps -e | grep -q . && ! touch /etc/ronly-policy-test 2>/dev/null && echo ok")
		if r.code != 0 || r.stdout != "ok\n" {
			t.Fatalf("debug shell:\n%s", r)
		}
		got := readReport(t, rep)
		if got.Profile != "debug" || got.Limits.TimeoutSeconds != 8*3600 || got.Layers.PIDNS {
			t.Errorf("the policy did not take effect: %+v %+v", got.Limits, got.Layers)
		}
	})

	t.Run("bazel-ci", func(t *testing.T) {
		// The file binds /root/.cache/bazel, which a fresh machine may not
		// have yet: a --rw on the command line replaces the file's list.
		ws := userDir(t, 0, "ronly-pol-ws-")
		cache := userDir(t, 0, "ronly-pol-cache-")
		rep := filepath.Join(ws, "r.json")
		r := b.sh(t, opts{dir: ws}, []string{"--policy", policyFile(t, "bazel-ci.toml"), "--rw", cache, "--report", rep},
			"echo out > bazel-out-marker && echo c > "+cache+"/entry && ! touch /var/tmp/ronly-policy-test 2>/dev/null && echo pid=$$")
		if r.code != 0 || r.stdout != "pid=2\n" {
			t.Fatalf("bazel-ci job:\n%s", r)
		}
		for _, p := range []string{filepath.Join(ws, "bazel-out-marker"), filepath.Join(cache, "entry")} {
			if _, err := os.Stat(p); err != nil {
				t.Errorf("a write to the workspace or cache did not persist: %v", err)
			}
		}
		got := readReport(t, rep)
		if got.Profile != "ci" || got.Limits.MemoryBytes != 12<<30 || got.Limits.Pids != 4096 {
			t.Errorf("the policy did not take effect: %+v", got.Limits)
		}
	})

	t.Run("go-test", func(t *testing.T) {
		if _, err := exec.LookPath("go"); err != nil {
			t.Fatalf("go not on PATH: %v", err)
		}
		ws := userDir(t, 0, "ronly-pol-mod-")
		home := userDir(t, 0, "ronly-pol-home-")
		writeFile(t, 0, filepath.Join(ws, "go.mod"), "module example.com/sample\n\ngo 1.22\n", 0o644)
		writeFile(t, 0, filepath.Join(ws, "sample.go"), "package sample\n\nfunc Double(x int) int { return 2 * x }\n", 0o644)
		writeFile(t, 0, filepath.Join(ws, "sample_test.go"), `package sample

import (
	"os"
	"testing"
)

func TestDouble(t *testing.T) {
	if Double(21) != 42 {
		t.Fatal("Double(21) != 42")
	}
}

// The job's scratch works, the host does not change.
func TestWrites(t *testing.T) {
	if err := os.WriteFile(t.TempDir()+"/x", []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile("/etc/ronly-sample", []byte("x"), 0o644); err == nil {
		t.Fatal("wrote /etc")
	}
}
`, 0o644)
		before := dirNames(t, home)
		r := b.run(t, opts{dir: ws, env: []string{"HOME=" + home}},
			"--policy", policyFile(t, "go-test.toml"), "--", "go", "test", "-count=1", "./...")
		if r.code != 0 || !strings.Contains(r.stdout, "ok  \texample.com/sample") {
			t.Fatalf("go test in the go-test policy:\n%s", r)
		}
		if after := dirNames(t, home); !slices.Equal(before, after) {
			t.Errorf("the host's HOME changed (the build cache must stay in the job's tmpfs): %v", after)
		}
	})
}
