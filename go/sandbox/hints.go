package sandbox

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"ronly.dev/ronly/go/kernelver"
	cinit "ronly.dev/ronly/init"
)

// Every failure to build the sandbox reaches the user as one line: the
// init's step, the errno, and a hint naming the setting that fixes it
// where a setting can (the container's seccomp profile, a capability, a
// sysctl). The steps are the init's die() calls (init/ronly_init.c).

// Hints shared by several steps.
const (
	// Docker's default seccomp profile, which is also Kubernetes'
	// RuntimeDefault, refuses the calls that make namespaces and mounts
	// (unshare, clone with namespace flags, mount, pivot_root), even with
	// CAP_SYS_ADMIN for pivot_root.
	hintSeccompProfile = "the container's seccomp profile refuses it (Docker's default profile, Kubernetes' RuntimeDefault): " +
		"run the container with --security-opt seccomp=unconfined, or a pod with securityContext.seccompProfile.type: Unconfined"
	hintSysAdmin = "without a user namespace ronly needs CAP_SYS_ADMIN (docker run --cap-add SYS_ADMIN) and " +
		"a seccomp profile that allows namespaces and mounts (--security-opt seccomp=unconfined); " +
		"or let ronly use a user namespace (sysctl user.max_user_namespaces > 0)"
	hintSetPCap = "dropping capabilities from the bounding set and locking securebits need CAP_SETPCAP: " +
		"keep it in the container (Docker has it by default; --cap-add SETPCAP), or let ronly use a user namespace"
	hintNProc = "the process limit is reached: raise ulimit -u or the container's pids limit (docker run --pids-limit)"
)

// namespaceSysctl names the sysctl that bounds each kind of namespace
// (ENOSPC when the count is reached).
var namespaceSysctl = map[string]string{
	"user": "user.max_user_namespaces", "mount": "user.max_mnt_namespaces", "IPC": "user.max_ipc_namespaces",
	"UTS": "user.max_uts_namespaces", "network": "user.max_net_namespaces", "PID": "user.max_pid_namespaces",
}

// withHint gives an init failure its hint; one nothing can fix by a
// setting (a path swapped under ronly, a protocol error) may have none.
func withHint(e *cinit.Error) error {
	if h := hintFor(e, kernelver.Release()); h != "" {
		return &HintError{e, h}
	}
	return e
}

// hintFor is withHint's table, for the kernel release rel ("6.1.0-…").
func hintFor(e *cinit.Error, rel string) string {
	step, errno := e.Step, e.Errno
	// A call the kernel has but something answers ENOSYS for: a seccomp
	// profile written before the call existed (Docker's answers unknown
	// calls with ENOSYS or EPERM).
	missing := func(call string, major, minor int) string {
		if kernelver.AtLeast(rel, major, minor) {
			return fmt.Sprintf("this kernel (%s) has %s, so the container's seccomp profile refuses it: "+
				"run with --security-opt seccomp=unconfined or a newer profile", rel, call)
		}
		return fmt.Sprintf("ronly needs Linux %d.%d or newer for %s (this is %s)", major, minor, call, rel)
	}
	switch {
	case step == "unshare(CLONE_NEWUSER)":
		switch errno {
		case unix.ENOSPC:
			return "user namespaces are turned off or used up: raise sysctl user.max_user_namespaces (it is 0 or reached); as root, --privileged works without them"
		case unix.EINVAL:
			return "this kernel has no user namespaces (CONFIG_USER_NS); as root, --privileged works without them"
		}
		return "user namespaces are refused here: the container's seccomp profile (Docker's default, Kubernetes' RuntimeDefault: " +
			"--security-opt seccomp=unconfined), sysctl kernel.apparmor_restrict_unprivileged_userns=0 on Ubuntu, " +
			"kernel.unprivileged_userns_clone=1 on older Debian, or user.max_user_namespaces; as root, --privileged works without them"
	case step == "write id maps":
		return "ronly runs in a user namespace that does not map the ids it asked for (a rootless container or a pod with user namespaces): " +
			"--rootless maps only your own ids"
	case step == "unshare" || step == "unshare(CLONE_NEWPID)":
		what := e.Detail
		if step == "unshare(CLONE_NEWPID)" {
			what = "PID namespace"
		}
		switch errno {
		case unix.ENOSPC:
			var names []string
			for kind, name := range namespaceSysctl {
				if kind != "user" && strings.Contains(what, kind) {
					names = append(names, name)
				}
			}
			slices.Sort(names)
			return "the count of namespaces is reached: raise sysctl " + strings.Join(names, ", ")
		case unix.EPERM:
			return hintSysAdmin
		case unix.EINVAL:
			return "this kernel lacks a namespace ronly asks for (" + what + ")"
		}
	case step == "fork" && errno == unix.EAGAIN:
		return hintNProc
	case step == "openat2" && errno == unix.ENOSYS:
		return missing("openat2", 5, 6)
	case step == "close_range" && errno == unix.ENOSYS:
		return missing("close_range", 5, 9)
	case (strings.HasPrefix(step, "mount_setattr") || strings.HasPrefix(step, "open_tree") || strings.HasPrefix(step, "move_mount") ||
		step == "read-only bind" || step == "pin") && errno == unix.ENOSYS:
		return missing("the new mount API (open_tree, move_mount, mount_setattr)", 5, 12)
	case step == "mount proc" && (errno == unix.EPERM || errno == unix.EACCES):
		return "the kernel refuses a new /proc where paths in the current one are masked or covered (containers do this): " +
			"docker run --security-opt systempaths=unconfined, Kubernetes securityContext.procMount: Unmasked; " +
			"the debug profile keeps the host's /proc where Landlock can scope signals (ABI 6, Linux 6.12)"
	case step == "pivot_root" && errno == unix.EINVAL:
		return "the root file system is the initramfs (rootfs), which cannot be pivoted away: switch_root to a real root first"
	case step == "pivot_root" && errno == unix.EPERM:
		return hintSeccompProfile + " (Docker's default profile refuses pivot_root even with CAP_SYS_ADMIN)"
	case step == "holder":
		return "ronly assembles the sandbox's root on the host's /tmp: create that directory"
	case (step == "make mounts private" || strings.HasPrefix(step, "mount ") || step == "bind device" || step == "bind shim" ||
		strings.HasPrefix(step, "mount_setattr") || strings.HasPrefix(step, "open_tree") || strings.HasPrefix(step, "move_mount") ||
		step == "detach old root" || step == "read-only bind" || step == "pin") && (errno == unix.EPERM || errno == unix.EACCES):
		return hintSysAdmin
	case (step == "drop capability bounding set" || step == "lock securebits" || step == "clear ambient capabilities") && errno == unix.EPERM:
		return hintSetPCap
	case step == "capset" && errno == unix.EPERM:
		return "the capability ronly keeps for root (CAP_DAC_READ_SEARCH, to read root-only files) is not in this process's permitted set: " +
			"add it to the container (--cap-add DAC_READ_SEARCH), or let ronly use a user namespace"
	case step == "no_new_privs":
		return "a security module refused no_new_privs: check the container's seccomp and AppArmor/SELinux profiles"
	case strings.HasPrefix(step, "landlock"):
		switch errno {
		case unix.E2BIG:
			return "ronly runs nested in 16 Landlock sandboxes already, the kernel's limit"
		case unix.ENOSYS, unix.EOPNOTSUPP:
			return "Landlock is off in this kernel: add landlock to the lsm= boot parameter (or CONFIG_LSM); --landlock-min-abi 0 accepts running without it"
		case unix.EPERM:
			return "the container's seccomp profile refuses Landlock's calls: run with --security-opt seccomp=unconfined or a newer profile; " +
				"--landlock-min-abi 0 accepts running without Landlock"
		}
	case strings.HasPrefix(step, "seccomp("):
		switch errno {
		case unix.ENOMEM:
			return "the seccomp filters already stacked on this process are too long for one more (nested sandboxes)"
		case unix.EACCES:
			return "seccomp needs no_new_privs or CAP_SYS_ADMIN; a security module refused no_new_privs"
		case unix.EINVAL, unix.ENOSYS:
			return missing("seccomp user notification", 5, 0)
		}
	case step == "hand over the seccomp listener" && (errno == unix.EPERM || errno == unix.EACCES):
		return "the supervisor takes the listener from its own child with pidfd_getfd, which needs ptrace access: " +
			"sysctl kernel.yama.ptrace_scope must be below 3 (2 needs CAP_SYS_PTRACE), and the container's seccomp profile must allow pidfd_getfd"
	case step == "hand over the seccomp listener" && errno == unix.ENOSYS:
		return missing("pidfd_getfd", 5, 6)
	case (step == "readlink" || step == "open") && strings.HasPrefix(e.Detail, "/proc/"):
		return "ronly needs the host's /proc mounted"
	case step == "replaced since ronly checked it" ||
		strings.HasSuffix(step, "(no symlinks)") && (errno == unix.ELOOP || errno == unix.ENOTDIR):
		return "a symlink or another file was put at this path after ronly checked it; nothing was bound"
	case step == "bring up lo" && errno == unix.EPERM:
		return "the network namespace's loopback could not be brought up: the container's seccomp profile may refuse ioctl SIOCSIFFLAGS; or drop --no-network"
	}
	return ""
}

// afterUserNSRefused is the error of root's privileged fallback, which
// auto mode tried because user namespaces were refused (first): when it
// failed too, both failures in one line, the user namespace's first,
// and a hint that names what would fix either.
func afterUserNSRefused(first *cinit.Error, err error) error {
	if err == nil {
		return nil
	}
	var he *HintError
	hint := ""
	if errors.As(err, &he) {
		err, hint = he.Err, he.Hint
	}
	userns := hintFor(first, kernelver.Release())
	if hint == "" {
		hint = userns
	} else {
		hint = "either " + strings.TrimSuffix(userns, "; as root, --privileged works without them") + "; or, for privileged mode, " + hint
	}
	return &HintError{Err: fmt.Errorf("%v, and privileged mode failed too: %w", first, err), Hint: hint}
}

// once passes each distinct message on only the first time.
func once(warn func(string)) func(string) {
	var mu sync.Mutex
	seen := map[string]bool{}
	return func(m string) {
		mu.Lock()
		dup := seen[m]
		seen[m] = true
		mu.Unlock()
		if !dup {
			warn(m)
		}
	}
}

// permittedCap says whether this process has capability c in its
// permitted set.
func permittedCap(c int) bool {
	h := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var d [2]unix.CapUserData
	if unix.Capget(&h, &d[0]) != nil {
		return false
	}
	return d[c/32].Permitted&(1<<(uint(c)%32)) != 0
}

// warnGate holds warnings until release, then passes them and every later
// one on; drop forgets those held.
type warnGate struct {
	out  func(string)
	mu   sync.Mutex
	held []string
	open bool
}

func (g *warnGate) warn(m string) {
	g.mu.Lock()
	if !g.open {
		g.held = append(g.held, m)
		g.mu.Unlock()
		return
	}
	g.mu.Unlock()
	g.out(m)
}

func (g *warnGate) release() {
	g.mu.Lock()
	held := g.held
	g.held, g.open = nil, true
	g.mu.Unlock()
	for _, m := range held {
		g.out(m)
	}
}

func (g *warnGate) drop() {
	g.mu.Lock()
	g.held = nil
	g.mu.Unlock()
}
