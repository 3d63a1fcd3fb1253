package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestLandlockFloor: below --landlock-min-abi ronly refuses to start, in
// one line that says what is missing, and runs nothing.
func TestLandlockFloor(t *testing.T) {
	b := setup(t)
	marker := userDir(t, 0, "ronly-e2e-floor-") + "/ran"
	r := b.run(t, opts{}, "--landlock-min-abi", "8", "--landlock-max-abi", "7", "--rw", strings.TrimSuffix(marker, "/ran"), "--", "/bin/sh", "-c", "touch "+marker)
	if r.code != 125 || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 || !strings.Contains(r.stderr, "Landlock ABI 7") || !strings.Contains(r.stderr, "--landlock-min-abi") {
		t.Fatalf("want one line naming the ABI and the flag, exit 125:\n%s", r)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("the command ran although ronly refused to start")
	}
}

// TestUserNamespacesRefused runs ronly under a seccomp filter that refuses
// new user namespaces, as Docker's default profile does: a user falls back
// to landlock-only mode and says so in one line (--rootless, forced, gets
// one line with the hint that fixes it), and root falls back to privileged
// mode (and stays read-only). The writes go to files the user owns, in a
// directory it owns: only the sandbox can refuse them, and the host is
// checked afterwards.
func TestUserNamespacesRefused(t *testing.T) {
	b := setup(t)
	needTool(t, "setpriv")
	userCanary := filepath.Join(userDir(t, nobody, "ronly-e2e-userns-"), "canary")
	writeFile(t, nobody, userCanary, "canary\n", 0o644)
	r := underFilter(t, "deny-userns", "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", b.ronly, "--", "/bin/sh", "-c",
		"{ echo pwned > "+userCanary+"; } 2>/dev/null; echo $?")
	if r.code != 0 || r.stdout != "2\n" || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 || !strings.Contains(r.stderr, "mode landlock-only") ||
		!strings.Contains(r.stderr, "unshare(CLONE_NEWUSER): operation not permitted") {
		t.Errorf("want the user in landlock-only mode, said in one line, and the write refused:\n%s", r)
	}
	unchanged(t, userCanary, "canary\n")
	r = underFilter(t, "deny-userns", "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", b.ronly, "--rootless", "--", "/bin/true")
	if r.code != 125 || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 || !strings.Contains(r.stderr, "user.max_user_namespaces") {
		t.Errorf("want one line with the hint, exit 125:\n%s", r)
	}
	rootCanary := filepath.Join(userDir(t, 0, "ronly-e2e-userns-"), "canary")
	writeFile(t, 0, rootCanary, "canary\n", 0o644)
	r = underFilter(t, "deny-userns", b.ronly, "-v", "--", "/bin/sh", "-c", "{ echo pwned > "+rootCanary+"; } 2>/dev/null; echo $?")
	if r.code != 0 || !strings.Contains(r.stderr, "mode=privileged") || r.stdout != "2\n" {
		t.Errorf("want root to fall back to privileged mode, still read-only:\n%s", r)
	}
	unchanged(t, rootCanary, "canary\n")
}
