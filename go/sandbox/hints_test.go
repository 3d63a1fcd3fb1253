package sandbox

import (
	"errors"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	cinit "ronly.dev/ronly/init"
)

func TestHintFor(t *testing.T) {
	for _, tc := range []struct {
		step, detail string
		errno        unix.Errno
		rel          string
		want         string // in the hint; "" for none
	}{
		{"unshare(CLONE_NEWUSER)", "", unix.EPERM, "6.18.0", "seccomp=unconfined"},
		{"unshare(CLONE_NEWUSER)", "", unix.EPERM, "6.18.0", "apparmor_restrict_unprivileged_userns"},
		{"unshare(CLONE_NEWUSER)", "", unix.ENOSPC, "6.18.0", "sysctl user.max_user_namespaces"},
		{"write id maps", "/proc/1/uid_map", unix.EPERM, "6.18.0", "--rootless"},
		{"unshare", "mount, IPC and UTS namespaces", unix.EPERM, "6.18.0", "CAP_SYS_ADMIN"},
		{"unshare", "mount, IPC and UTS namespaces", unix.EPERM, "6.18.0", "seccomp=unconfined"},
		{"unshare", "mount, IPC and UTS namespaces", unix.ENOSPC, "6.18.0", "user.max_ipc_namespaces, user.max_mnt_namespaces, user.max_uts_namespaces"},
		{"unshare", "mount, IPC, UTS and network namespaces", unix.ENOSPC, "6.18.0", "user.max_net_namespaces"},
		{"unshare(CLONE_NEWPID)", "", unix.ENOSPC, "6.18.0", "user.max_pid_namespaces"},
		{"fork", "PID 1 of the new PID namespace", unix.EAGAIN, "6.18.0", "--pids-limit"},
		{"make mounts private", "/", unix.EPERM, "6.18.0", "CAP_SYS_ADMIN"},
		{"mount tmpfs", "/dev", unix.EPERM, "6.18.0", "CAP_SYS_ADMIN"},
		{"open_tree(OPEN_TREE_CLONE)", "/", unix.ENOSYS, "5.10.0-28-amd64", "Linux 5.12 or newer"},
		// The kernel has the call: a seccomp profile older than it.
		{"open_tree(OPEN_TREE_CLONE)", "/", unix.ENOSYS, "6.1.0-27-cloud-amd64", "seccomp profile"},
		{"mount_setattr(AT_RECURSIVE, RDONLY)", "", unix.EPERM, "6.18.0", "CAP_SYS_ADMIN"},
		{"openat2", "ronly needs Linux 5.6", unix.ENOSYS, "6.18.0", "seccomp profile"},
		{"close_range", "", unix.ENOSYS, "5.4.0", "Linux 5.9 or newer"},
		{"mount proc", "/proc", unix.EPERM, "6.18.0", "systempaths=unconfined"},
		{"mount proc", "/proc", unix.EPERM, "6.18.0", "procMount: Unmasked"},
		{"pivot_root", "/tmp/root", unix.EPERM, "6.18.0", "even with CAP_SYS_ADMIN"},
		{"pivot_root", "/tmp/root", unix.EINVAL, "6.18.0", "initramfs"},
		{"holder", "the host has no /tmp directory", unix.ENOENT, "6.18.0", "/tmp"},
		{"drop capability bounding set", "", unix.EPERM, "6.18.0", "CAP_SETPCAP"},
		{"lock securebits", "", unix.EPERM, "6.18.0", "CAP_SETPCAP"},
		{"capset", "", unix.EPERM, "6.18.0", "DAC_READ_SEARCH"},
		{"landlock_create_ruleset", "", unix.EOPNOTSUPP, "6.18.0", "lsm="},
		{"landlock_restrict_self", "", unix.E2BIG, "6.18.0", "16 Landlock"},
		{"landlock_create_ruleset", "", unix.EPERM, "6.18.0", "--landlock-min-abi 0"},
		{"seccomp(SECCOMP_FILTER_FLAG_NEW_LISTENER)", "", unix.ENOMEM, "6.18.0", "too long"},
		{"hand over the seccomp listener", "", unix.EPERM, "6.18.0", "kernel.yama.ptrace_scope"},
		{"readlink", "/proc/self/exe", unix.ENOENT, "6.18.0", "/proc mounted"},
		{"replaced since ronly checked it", "/x", unix.ESTALE, "6.18.0", "after ronly checked it"},
		{"open writable (no symlinks)", "/x", unix.ELOOP, "6.18.0", "after ronly checked it"},
		// Nothing a setting fixes: no hint.
		{"read records", "header", unix.EPIPE, "6.18.0", ""},
		{"open writable (no symlinks)", "/x", unix.ENOENT, "6.18.0", ""},
	} {
		e := &cinit.Error{Step: tc.step, Detail: tc.detail, Errno: tc.errno}
		got := hintFor(e, tc.rel)
		if tc.want == "" && got != "" || !strings.Contains(got, tc.want) {
			t.Errorf("%s %s: %v on %s: hint %q, want one with %q", tc.step, tc.detail, tc.errno, tc.rel, got, tc.want)
		}
	}
}

// TestWithHintIsOneLine: the message is the step, the errno and the hint,
// on one line; the errno is still there for errors.Is.
func TestWithHintIsOneLine(t *testing.T) {
	err := withHint(&cinit.Error{Step: "pivot_root", Detail: "/tmp/root", Errno: unix.EPERM})
	msg := err.Error()
	if !strings.HasPrefix(msg, "pivot_root /tmp/root: operation not permitted (hint: ") || strings.Contains(msg, "\n") {
		t.Errorf("message %q", msg)
	}
	if !errors.Is(err, unix.EPERM) {
		t.Errorf("%v does not wrap EPERM", err)
	}
}

// TestAfterUserNSRefused: when privileged mode was a fallback after a user
// namespace refusal and failed too, the line keeps the first error and
// hints at what fixes either.
func TestAfterUserNSRefused(t *testing.T) {
	first := &cinit.Error{Step: "unshare(CLONE_NEWUSER)", Errno: unix.EPERM}
	second := withHint(&cinit.Error{Step: "unshare", Detail: "mount, IPC and UTS namespaces", Errno: unix.EPERM})
	msg := afterUserNSRefused(first, second).Error()
	for _, want := range []string{"unshare(CLONE_NEWUSER): operation not permitted, and privileged mode failed too: unshare mount, IPC and UTS namespaces: operation not permitted",
		"(hint: either user namespaces are refused here", "or, for privileged mode, without a user namespace ronly needs CAP_SYS_ADMIN"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message %q lacks %q", msg, want)
		}
	}
	if strings.Count(msg, "(hint:") != 1 || strings.Contains(msg, "--privileged works") {
		t.Errorf("message %q: want one hint, and not the advice to use the mode that failed", msg)
	}
	if afterUserNSRefused(first, nil) != nil {
		t.Error("a fallback that worked is an error")
	}
	// A second failure without a hint of its own gets the first's.
	plain := afterUserNSRefused(first, &cinit.Error{Step: "read records", Detail: "header", Errno: unix.EPIPE}).Error()
	if !strings.Contains(plain, "(hint: user namespaces are refused here") {
		t.Errorf("message %q", plain)
	}
}

// TestWarnGate: warnings wait for the sandbox to be built, each is said
// once, and those of an attempt that failed are forgotten.
func TestWarnGate(t *testing.T) {
	var got []string
	g := &warnGate{out: once(func(m string) { got = append(got, m) })}
	g.warn("a")
	g.warn("b")
	g.drop() // the attempt failed
	g.warn("c")
	g.warn("c")
	if len(got) != 0 {
		t.Fatalf("said before the sandbox was built: %q", got)
	}
	g.release()
	g.warn("d")
	g.warn("c")
	if strings.Join(got, ",") != "c,d" {
		t.Errorf("said %q, want c,d", got)
	}
}
