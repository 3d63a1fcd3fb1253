package probe

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// These tests run no operation of the battery: those are for a sandbox's
// walls, and run inside ronly in tests/e2e.

func TestBatteryIsWellFormed(t *testing.T) {
	seen := map[string]bool{}
	for _, op := range All() {
		switch {
		case op.Name == "":
			t.Errorf("an operation has no name")
		case seen[op.Name]:
			t.Errorf("two operations are named %q", op.Name)
		case op.Run == nil:
			t.Errorf("%q has no Run", op.Name)
		case op.Kind == Hostile && len(op.Want) == 0:
			t.Errorf("hostile %q has no expected errno", op.Name)
		case op.Kind == Everyday && len(op.Want) != 0:
			t.Errorf("everyday %q must succeed, yet lists errnos", op.Name)
		case op.Kind != Hostile && op.Kind != Everyday:
			t.Errorf("%q has kind %q", op.Name, op.Kind)
		}
		seen[op.Name] = true
	}
}

// catalogue names, for each row of DESIGN.md's catalogue of hostile
// operations that can be tried from inside, the operations that try it.
var catalogue = map[string][]string{
	"open for write/append, openat2":     {"open O_WRONLY host file", "open O_APPEND host file", "openat2 O_WRONLY host file"},
	"create, creat, mkdir, mknod, links": {"open O_CREAT in host dir", "creat in host dir", "mkdir in host dir", "mknod FIFO in host dir", "symlink in host dir", "link in host dir"},
	"O_TRUNC, truncate":                  {"open O_TRUNC host file", "truncate host file"},
	"unlink, rmdir":                      {"unlink host file", "unlinkat host file", "rmdir host dir", "unlinkat AT_REMOVEDIR host dir"},
	"rename":                             {"rename host file", "renameat host file", "renameat2 RENAME_EXCHANGE host entries"},
	"metadata":                           {"chmod host file", "fchmodat host file", "fchmodat2 host file", "chown(-1,-1) host file", "utimensat host file", "setxattr host file"},
	"mmap shared write":                  {"mmap MAP_SHARED|PROT_WRITE on O_RDONLY fd"},
	"inherited descriptors":              {"write via inherited fd", "fallocate via inherited fd", "ftruncate via inherited fd", "openat O_CREAT via inherited dirfd"},
	"io_uring":                           {"io_uring_setup"},
	"/proc/<pid>/root, cwd, fd":          {"open for write via /proc/<pid>/root", "open for write via /proc/<pid>/cwd", "open for write via /proc/<pid>/fd/N"},
	"pidfd_getfd":                        {"pidfd_getfd from canary"},
	"open_by_handle_at":                  {"name_to_handle_at+open_by_handle_at O_WRONLY"},
	"/dev/shm private":                   {"create in /dev/shm (private)"},
	"writable submounts":                 {"a writable mount outside the scratch space"},
	"sysctls":                            {"open /proc/sys/kernel/core_pattern for write", "open /proc/sys/kernel/hostname for write"},
	"sysrq, modprobe, binfmt, uevent":    {"open /proc/sysrq-trigger for write", "open /proc/sys/kernel/modprobe for write", "open binfmt_misc/register for write", "open /sys/kernel/uevent_helper for write"},
	"cgroups":                            {"open cgroup release_agent for write", "open cgroup.procs for write", "mkdir in /sys/fs/cgroup/*"},
	"devices":                            {"open /dev/mem O_RDWR", "open /dev/kmsg O_RDWR", "open /dev/sda O_RDWR", "open /dev/vda O_RDWR"},
	"mknod char device":                  {"mknod char device in /tmp and open it"},
	"signals":                            {"kill SIGKILL canary", "tkill SIGKILL canary", "tgkill SIGKILL canary", "pidfd_send_signal SIGKILL canary", "rt_sigqueueinfo SIGKILL canary", "rt_tgsigqueueinfo SIGKILL canary"},
	"ptrace":                             {"PTRACE_ATTACH canary", "PTRACE_POKEDATA canary", "process_vm_writev canary", "open /proc/<pid>/mem O_RDWR"},
	"limits and scheduling":              {"prlimit canary (same value)", "open /proc/<pid>/oom_score_adj for write", "setpriority canary (same value)", "sched_setaffinity canary (same mask)", "ioprio_set canary (same value)"},
	"namespaces":                         {"unshare CLONE_NEWUSER", "unshare CLONE_NEWNS", "unshare CLONE_NEWNET", "unshare CLONE_NEWPID", "setns /proc/1/ns/mnt", "clone3"},
	"mount API":                          {"mount tmpfs", "mount MS_REMOUNT|MS_BIND rw /", "mount_setattr attr_clr=RDONLY on /", "open_tree(OPEN_TREE_CLONE) + mount_setattr", "open_tree_attr (467)", "fsopen tmpfs", "fsconfig", "fsmount", "move_mount", "umount2 the cover of the hidden socket", "pivot_root", "chroot /"},
	"kernel-wide":                        {"reboot (bad magic)", "kexec_load (bad arch)", "kexec_file_load (bad fds)", "init_module (empty image)", "finit_module (bad fd)", "delete_module (no such module)", "swapon (no such file)", "acct (no such file)", "clock_settime (invalid value)", "settimeofday (invalid value)", "sethostname (same name)", "setdomainname (same name)", "syslog READ_ALL", "keyctl GET_KEYRING_ID user", "add_key (invalid keyring)", "bpf MAP_CREATE", "perf_event_open system-wide", "userfaultfd"},
	"sockets":                            {"raw socket AF_INET", "connect hidden unix socket under /run", "connect host abstract unix socket"},
	"terminal injection":                 {"TIOCSTI on a pty", "TIOCSTI with high bits set (CVE-2019-10063)"},
	"cloud instance metadata":            {"connect 169.254.169.254:80 (cloud metadata)", "connect [::ffff:169.254.169.254]:80 (cloud metadata, IPv4-mapped)", "connect [fd00:ec2::254]:80 (cloud metadata, IPv6)", "sendto UDP 169.254.169.254:9 (cloud metadata)", "sendmsg UDP 169.254.169.254:9 (cloud metadata)"},
}

func TestBatteryCoversCatalogue(t *testing.T) {
	names := map[string]bool{}
	for _, op := range All() {
		names[op.Name] = true
	}
	for row, ops := range catalogue {
		for _, n := range ops {
			if !names[n] {
				t.Errorf("catalogue row %q: no operation %q", row, n)
			}
		}
	}
}

func TestRunClassifies(t *testing.T) {
	tg := validTargets()
	ops := []Op{
		{Name: "hostile refused", Kind: Hostile, Want: []unix.Errno{unix.EPERM}, Run: func(Targets) error { return unix.EPERM }},
		{Name: "hostile wrong errno", Kind: Hostile, Want: []unix.Errno{unix.EPERM}, Run: func(Targets) error { return unix.EINVAL }},
		{Name: "hostile succeeded", Kind: Hostile, Want: []unix.Errno{unix.EPERM}, Run: func(Targets) error { return nil }},
		{Name: "hostile breach", Kind: Hostile, Want: []unix.Errno{unix.EROFS}, Run: func(Targets) error { return breach("reached %s", "x") }},
		{Name: "hostile wrapped", Kind: Hostile, Want: []unix.Errno{unix.EROFS}, Run: func(Targets) error { return fmt.Errorf("w: %w", unix.EROFS) }},
		{Name: "hostile not an errno", Kind: Hostile, Want: []unix.Errno{unix.EPERM}, Run: func(Targets) error { return errors.New("odd") }},
		{Name: "everyday ok", Kind: Everyday, Run: func(Targets) error { return nil }},
		{Name: "everyday failed", Kind: Everyday, Run: func(Targets) error { return unix.EROFS }},
		{Name: "skipped", Kind: Hostile, Want: []unix.Errno{unix.EPERM}, Run: func(Targets) error { return skip("absent") }},
		{Name: "panics", Kind: Everyday, Run: func(Targets) error { panic("boom") }},
	}
	want := map[string]struct {
		pass, succeeded bool
		errno           string
	}{
		"hostile refused":      {true, false, "EPERM"},
		"hostile wrong errno":  {false, false, "EINVAL"},
		"hostile succeeded":    {false, true, ""},
		"hostile breach":       {false, true, ""},
		"hostile wrapped":      {true, false, "EROFS"},
		"hostile not an errno": {false, false, ""},
		"everyday ok":          {true, true, ""},
		"everyday failed":      {false, false, "EROFS"},
		"skipped":              {true, false, ""},
		"panics":               {false, false, ""},
	}
	for _, r := range Run(ops, tg) {
		w := want[r.Name]
		if r.Pass != w.pass || r.Succeeded() != w.succeeded || r.Errno != w.errno {
			t.Errorf("%s: pass=%t succeeded=%t errno=%q, want %t %t %q", r.Name, r.Pass, r.Succeeded(), r.Errno, w.pass, w.succeeded, w.errno)
		}
	}
}

func TestRunRefusesBadTargets(t *testing.T) {
	ran := false
	op := Op{Name: "x", Kind: Hostile, Want: []unix.Errno{unix.EPERM}, Run: func(Targets) error { ran = true; return unix.EPERM }}
	for name, mutate := range map[string]func(*Targets){
		"pid 0":         func(t *Targets) { t.Pid = 0 },
		"pid 1":         func(t *Targets) { t.Pid = 1 },
		"pid -1":        func(t *Targets) { t.Pid = -1 },
		"relative file": func(t *Targets) { t.File = "f" },
		"empty dir":     func(t *Targets) { t.Dir = "" },
		"stdio fd":      func(t *Targets) { t.FDs = []int{1} },
		"no marker":     func(t *Targets) { t.Marker = "" },
	} {
		tg := validTargets()
		mutate(&tg)
		rs := Run([]Op{op}, tg)
		if ran || rs[0].Pass || rs[0].Error == "" {
			t.Errorf("%s: the operation ran or passed: %+v", name, rs[0])
		}
		ran = false
	}
}

func TestJSONRoundTrip(t *testing.T) {
	in := []Result{{Name: "a", Kind: Hostile, Errno: "EPERM", Want: []string{"EPERM"}, Pass: true}, {Name: "b", Kind: Everyday, Pass: true}}
	var buf bytes.Buffer
	if err := WriteJSON(&buf, in); err != nil {
		t.Fatal(err)
	}
	out, err := ReadJSON(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(out) != fmt.Sprint(in) {
		t.Errorf("round trip: %v != %v", out, in)
	}
}

// CheckInside must refuse here whenever this test shares its mount
// namespace with PID 1 or its parent, as on a host.
func TestCheckInsideRefusesOnHost(t *testing.T) {
	self, _ := os.Readlink("/proc/self/ns/mnt")
	pid1, _ := os.Readlink("/proc/1/ns/mnt")
	parent, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", os.Getppid()))
	onHost := self != "" && (self == pid1 || (pid1 == "" && self == parent))
	if !onHost {
		t.Skip("this test runs in a mount namespace of its own")
	}
	if err := CheckInside(); !errors.Is(err, ErrOnHost) {
		t.Errorf("CheckInside() = %v on the host, want ErrOnHost", err)
	}
}

func TestInChild(t *testing.T) {
	if err := inChild(sysCall{nr: unix.SYS_GETPID}); err != nil {
		t.Errorf("getpid in a child: %v", err)
	}
	if err := inChild(sysCall{nr: unix.SYS_CLOSE, args: [6]uintptr{^uintptr(0)}}); err != unix.EBADF {
		t.Errorf("close(-1) in a child: %v, want EBADF", err)
	}
}

func validTargets() Targets {
	return Targets{File: "/var/tmp/x/f", Dir: "/var/tmp/x/d", Pid: 12345, PidFD: 3, Socket: "/run/x.sock",
		Abstract: "x", FDs: []int{3}, DirFD: 4, Marker: "m"}
}

// TestNoUserXattrs: a tmpfs that refuses user.* attributes is the
// kernel's doing before 6.6 (skipped, saying so) and the sandbox's from
// then on, as is any other error or file system.
func TestNoUserXattrs(t *testing.T) {
	for _, c := range []struct {
		err    error
		fsType int64
		rel    string
		skip   bool
	}{
		{unix.EOPNOTSUPP, unix.TMPFS_MAGIC, "6.1.0-57-cloud-amd64", true},
		{&os.PathError{Op: "setxattr", Path: "/tmp/x", Err: unix.EOPNOTSUPP}, unix.TMPFS_MAGIC, "5.15.0", true},
		{unix.EOPNOTSUPP, unix.TMPFS_MAGIC, "6.6.0", false},
		{unix.EOPNOTSUPP, unix.TMPFS_MAGIC, "6.12.95+deb12-cloud-amd64", false},
		{unix.EOPNOTSUPP, unix.TMPFS_MAGIC, "", false},
		{unix.EOPNOTSUPP, unix.EXT4_SUPER_MAGIC, "6.1.0", false},
		{unix.EPERM, unix.TMPFS_MAGIC, "6.1.0", false},
		{unix.EROFS, unix.TMPFS_MAGIC, "6.1.0", false},
	} {
		why := noUserXattrs(c.err, c.fsType, c.rel)
		if (why != "") != c.skip || c.skip && !strings.Contains(why, c.rel) {
			t.Errorf("noUserXattrs(%v, %#x, %q) = %q, want skipped: %v", c.err, c.fsType, c.rel, why, c.skip)
		}
	}
}
