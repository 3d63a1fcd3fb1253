package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// Filters of the environments users start ronly in (issue 12 items 4 and
// 6), next to filter_test.go's.
func init() {
	const newNS = 0x7E020000 // CLONE_NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET
	// Docker's default seccomp profile (= Kubernetes' RuntimeDefault), as
	// far as ronly's calls go: unshare and clone with a namespace flag
	// fail with EPERM, clone3 with ENOSYS (libc falls back to clone), and
	// pivot_root with EPERM.
	filters["docker-default"] = struct {
		prog  []unix.SockFilter
		flags uintptr
	}{[]unix.SockFilter{
		{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: 0}, // nr
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: unix.SYS_CLONE3, Jt: 7, Jf: 0},
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: unix.SYS_PIVOT_ROOT, Jt: 5, Jf: 0},
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: unix.SYS_UNSHARE, Jt: 1, Jf: 0},
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: unix.SYS_CLONE, Jt: 0, Jf: 2},
		{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: 16}, // arg0, low half
		{Code: unix.BPF_JMP | unix.BPF_JSET | unix.BPF_K, K: newNS, Jt: 1, Jf: 0},
		{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ALLOW},
		{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM)},
		{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS)},
	}, 0}
	// The same profile with CAP_SYS_ADMIN granted (docker run --cap-add
	// SYS_ADMIN): namespaces are allowed, pivot_root is still refused.
	filters["deny-pivot-root"] = struct {
		prog  []unix.SockFilter
		flags uintptr
	}{[]unix.SockFilter{
		{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: 0}, // nr
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: unix.SYS_PIVOT_ROOT, Jt: 1, Jf: 0},
		{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ALLOW},
		{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM)},
	}, 0}
}

// outside runs a command on the host (not ronly itself), bounded in time.
func outside(t *testing.T, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Dir = "/"
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("%q did not finish within %v", args, hangGuard)
	}
	r := result{stdout: stdout.String(), stderr: stderr.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("%q: %v", args, err)
	}
	return r
}

// TestNestedUserNamespace: root of a user namespace that is not the host's
// (a rootless container, a pod with user namespaces) cannot write root's
// identity map of every id; auto mode then runs rootless, says so with -v,
// and the host stays read-only.
func TestNestedUserNamespace(t *testing.T) {
	b := setup(t)
	needTool(t, "unshare")
	dir := userDir(t, 0, "ronly-e2e-nested-")
	canary := filepath.Join(dir, "canary")
	writeFile(t, 0, canary, "canary\n", 0o666)
	r := outside(t, "unshare", "--user", "--map-root-user", b.ronly, "-v", "--", "/bin/sh", "-c",
		"id -u; echo pwned > "+canary+"; echo write=$?")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "0\n") || !strings.Contains(r.stdout, "write=2") {
		t.Fatalf("want the command to run as root inside and its write refused:\n%s", r)
	}
	if !strings.Contains(r.stderr, "mode=rootless") || !strings.Contains(r.stderr, "mode rootless: root's id maps cannot be written here") {
		t.Errorf("-v does not name the rootless fallback and why:\n%s", r)
	}
	unchanged(t, canary, "canary\n")
	// Without -v the fallback is silent, as the privileged one is.
	r = outside(t, "unshare", "--user", "--map-root-user", b.ronly, "--", "/bin/true")
	if r.code != 0 || strings.Contains(r.stderr, "rootless") {
		t.Errorf("want a quiet start without -v:\n%s", r)
	}
	// --rootless, asked for, needs no fallback.
	r = outside(t, "unshare", "--user", "--map-root-user", b.ronly, "-v", "--rootless", "--", "/bin/true")
	if r.code != 0 || !strings.Contains(r.stderr, "mode=rootless") || strings.Contains(r.stderr, "cannot be written") {
		t.Errorf("--rootless in a nested user namespace:\n%s", r)
	}
}

// refusal checks a failure to build the sandbox: exit 125, one line on
// stderr holding every part of want, none of unwanted, and the command
// did not run (its marker is absent).
func refusal(t *testing.T, what string, r result, marker string, want []string, unwanted ...string) {
	t.Helper()
	line := strings.TrimSpace(r.stderr)
	if r.code != 125 || strings.Contains(line, "\n") || !strings.HasPrefix(line, "ronly: ") || !strings.Contains(line, "(hint: ") {
		t.Errorf("%s: want exit 125 and one line with a hint:\n%s", what, r)
	}
	for _, w := range want {
		if !strings.Contains(line, w) {
			t.Errorf("%s: the line lacks %q:\n%s", what, w, line)
		}
	}
	for _, u := range unwanted {
		if strings.Contains(line, u) {
			t.Errorf("%s: the line names %q:\n%s", what, u, line)
		}
	}
	if _, err := os.Stat(marker); err == nil {
		t.Errorf("%s: the command ran although ronly failed", what)
	}
}

// TestBuildFailuresHaveHints reproduces the failures users meet in
// containers and on locked-down hosts: each is one line with the step,
// the errno and the setting that fixes it, and the command never runs.
func TestBuildFailuresHaveHints(t *testing.T) {
	b := setup(t)
	needTool(t, "unshare")
	needTool(t, "capsh")
	dir := userDir(t, 0, "ronly-e2e-hints-")
	marker := filepath.Join(dir, "ran")
	cmd := []string{"--rw", dir, "--", "/bin/sh", "-c", "touch " + marker}
	// --writable (an empty tmpfs) needs a mount namespace: auto mode
	// cannot go on in landlock-only mode, so the namespaces' errors are
	// what ronly says (the fallback is TestLandlockOnlyAutoFallback's).
	nsOnly := append([]string{"--writable", userDir(t, 0, "ronly-e2e-hints-w-")}, cmd...)

	// Docker's default profile as root: no user namespace, and privileged
	// mode cannot make its mount namespace either. Both errors, in one
	// line; only the namespaces asked for are named.
	r := underFilter(t, "docker-default", append([]string{b.ronly}, nsOnly...)...)
	refusal(t, "docker default profile", r, marker,
		[]string{"unshare(CLONE_NEWUSER): operation not permitted", "privileged mode failed too", "unshare mount, IPC and UTS namespaces: operation not permitted",
			"seccomp=unconfined"}, "network")
	// With --no-network, the network namespace is asked for and named.
	r = underFilter(t, "docker-default", append([]string{b.ronly, "--no-network"}, cmd...)...)
	refusal(t, "docker default profile, --no-network", r, marker, []string{"mount, IPC, UTS and network namespaces"})

	// --cap-add SYS_ADMIN under the default profile: pivot_root refused.
	r = underFilter(t, "deny-pivot-root", append([]string{b.ronly}, nsOnly...)...)
	refusal(t, "pivot_root refused", r, marker, []string{"pivot_root /tmp/root: operation not permitted", "seccomp profile", "seccomp=unconfined"})

	// --privileged without CAP_SYS_ADMIN.
	r = outside(t, "capsh", "--drop=cap_sys_admin", "--", "-c", `exec "$0" "$@"`, b.ronly, "--privileged", "--rw", dir, "--", "/bin/sh", "-c", "touch "+marker)
	refusal(t, "no CAP_SYS_ADMIN", r, marker, []string{"unshare mount, IPC and UTS namespaces: operation not permitted", "CAP_SYS_ADMIN"}, "network")

	// --privileged without CAP_SETPCAP: capabilities cannot be dropped.
	r = outside(t, "capsh", "--drop=cap_setpcap", "--", "-c", `exec "$0" "$@"`, b.ronly, "--privileged", "--rw", dir, "--", "/bin/sh", "-c", "touch "+marker)
	refusal(t, "no CAP_SETPCAP", r, marker, []string{"drop capability bounding set: operation not permitted", "CAP_SETPCAP"})

	// user.max_user_namespaces=0, set in a user namespace of the test's
	// own (its limits are its own, so tests running beside this one keep
	// the host's): ENOSPC, and the sysctl named.
	r = outside(t, "unshare", "--user", "--map-root-user", "/bin/sh", "-c",
		`echo 0 > /proc/sys/user/max_user_namespaces && exec "$0" "$@"`, b.ronly, "--rootless", "--rw", dir, "--", "/bin/sh", "-c", "touch "+marker)
	refusal(t, "user.max_user_namespaces=0", r, marker, []string{"unshare(CLONE_NEWUSER): no space left on device", "sysctl user.max_user_namespaces"})
}

// TestPrivilegedWithoutDACReadSearch: Docker's root has no
// CAP_DAC_READ_SEARCH, which root keeps inside; privileged mode then
// keeps nothing instead of failing at capset, and stays read-only.
func TestPrivilegedWithoutDACReadSearch(t *testing.T) {
	b := setup(t)
	needTool(t, "capsh")
	dir := userDir(t, 0, "ronly-e2e-dacread-")
	canary := filepath.Join(dir, "canary")
	writeFile(t, 0, canary, "canary\n", 0o644)
	r := outside(t, "capsh", "--drop=cap_dac_read_search", "--", "-c", `exec "$0" "$@"`, b.ronly, "--privileged", "--", "/bin/sh", "-c",
		"grep CapEff /proc/self/status; echo pwned > "+canary+"; echo write=$?")
	if r.code != 0 || !strings.Contains(r.stdout, "CapEff:\t0000000000000000") || !strings.Contains(r.stdout, "write=2") {
		t.Fatalf("want no capability inside and the write refused:\n%s", r)
	}
	unchanged(t, canary, "canary\n")
}
