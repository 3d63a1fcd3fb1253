package probe

import (
	"fmt"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"ronly.dev/ronly/go/mountinfo"
	"ronly.dev/ronly/go/policy"
)

// Errno sets the catalogue allows.
var (
	wantROFS    = []unix.Errno{unix.EROFS}
	wantROFSAcc = []unix.Errno{unix.EROFS, unix.EACCES, unix.EPERM}
	wantBadFD   = []unix.Errno{unix.EBADF}
	wantNoPath  = []unix.Errno{unix.ENOENT, unix.EACCES, unix.EPERM}
)

// openClose opens path and closes it at once: for open-for-write probes the
// open itself is the breach, nothing is written.
func openClose(path string, flags int, mode uint32) error {
	fd, err := unix.Open(path, flags|unix.O_CLOEXEC|unix.O_NOCTTY, mode)
	if err != nil {
		return err
	}
	return unix.Close(fd)
}

func fsHostile() []Op {
	h := func(name string, want []unix.Errno, run func(t Targets) error) Op {
		return Op{Name: name, Kind: Hostile, Run: run, Want: want}
	}
	newName := func(t Targets, what string) string {
		return filepath.Join(t.Dir, "ronly-probe-"+what)
	}
	return []Op{
		h("open O_WRONLY host file", wantROFS, func(t Targets) error { return openClose(t.File, unix.O_WRONLY, 0) }),
		h("open O_RDWR host file", wantROFS, func(t Targets) error { return openClose(t.File, unix.O_RDWR, 0) }),
		h("open O_APPEND host file", wantROFS, func(t Targets) error { return openClose(t.File, unix.O_WRONLY|unix.O_APPEND, 0) }),
		h("open O_TRUNC host file", wantROFS, func(t Targets) error { return openClose(t.File, unix.O_WRONLY|unix.O_TRUNC, 0) }),
		// In the full sandbox openat2 gets ENOSYS (its struct hides the
		// mode from seccomp; callers fall back to openat).
		h("openat2 O_WRONLY host file", []unix.Errno{unix.EROFS, unix.ENOSYS}, func(t Targets) error {
			fd, err := unix.Openat2(unix.AT_FDCWD, t.File, &unix.OpenHow{Flags: unix.O_WRONLY | unix.O_CLOEXEC})
			if err != nil {
				return err
			}
			return unix.Close(fd)
		}),
		h("open O_CREAT in host dir", wantROFS, func(t Targets) error {
			return openClose(newName(t, "creat"), unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL, 0o644)
		}),
		h("creat in host dir", wantROFS, func(t Targets) error {
			fd, err := unix.Creat(newName(t, "creat2"), 0o644)
			if err != nil {
				return err
			}
			return unix.Close(fd)
		}),
		h("mkdir in host dir", wantROFS, func(t Targets) error { return unix.Mkdir(newName(t, "mkdir"), 0o755) }),
		h("mknod FIFO in host dir", wantROFS, func(t Targets) error { return unix.Mknod(newName(t, "fifo"), unix.S_IFIFO|0o644, 0) }),
		h("symlink in host dir", wantROFS, func(t Targets) error { return unix.Symlink(t.File, newName(t, "symlink")) }),
		h("link in host dir", wantROFS, func(t Targets) error { return unix.Link(t.File, newName(t, "link")) }),
		h("truncate host file", wantROFS, func(t Targets) error { return unix.Truncate(t.File, 0) }),
		h("unlink host file", wantROFS, func(t Targets) error { return unix.Unlink(t.file2()) }),
		h("unlinkat host file", wantROFS, func(t Targets) error { return unix.Unlinkat(unix.AT_FDCWD, t.file2(), 0) }),
		h("rmdir host dir", wantROFS, func(t Targets) error { return unix.Rmdir(t.sub()) }),
		h("unlinkat AT_REMOVEDIR host dir", wantROFS, func(t Targets) error {
			return unix.Unlinkat(unix.AT_FDCWD, t.sub(), unix.AT_REMOVEDIR)
		}),
		h("rename host file", wantROFS, func(t Targets) error { return unix.Rename(t.file2(), newName(t, "renamed")) }),
		h("renameat host file", wantROFS, func(t Targets) error {
			return unix.Renameat(unix.AT_FDCWD, t.file2(), unix.AT_FDCWD, newName(t, "renamed2"))
		}),
		h("renameat2 RENAME_EXCHANGE host entries", wantROFS, func(t Targets) error {
			return unix.Renameat2(unix.AT_FDCWD, t.file2(), unix.AT_FDCWD, t.sub(), unix.RENAME_EXCHANGE)
		}),
		h("chmod host file", wantROFS, func(t Targets) error { return unix.Chmod(t.File, 0o777) }),
		h("fchmodat host file", wantROFS, func(t Targets) error { return unix.Fchmodat(unix.AT_FDCWD, t.File, 0o777, 0) }),
		h("fchmodat2 host file", wantROFS, func(t Targets) error {
			p, keep := cstr(t.File)
			_, _, e := unix.Syscall6(unix.SYS_FCHMODAT2, atFDCWD, p, 0o777, 0, 0, 0)
			_ = keep[0]
			return errnoOrNil(e)
		}),
		h("chown(-1,-1) host file", wantROFS, func(t Targets) error { return unix.Chown(t.File, -1, -1) }),
		h("utimensat host file", wantROFS, func(t Targets) error {
			p, keep := cstr(t.File)
			_, _, e := unix.Syscall6(unix.SYS_UTIMENSAT, atFDCWD, p, 0, 0, 0, 0)
			_ = keep[0]
			return errnoOrNil(e)
		}),
		h("setxattr host file", wantROFS, func(t Targets) error {
			return unix.Setxattr(t.File, "user.ronly_probe", []byte("x"), 0)
		}),
		h("mmap MAP_SHARED|PROT_WRITE on O_RDONLY fd", []unix.Errno{unix.EACCES}, func(t Targets) error {
			fd, err := unix.Open(t.File, unix.O_RDONLY|unix.O_CLOEXEC, 0)
			if err != nil {
				return fmt.Errorf("setup: %w", err)
			}
			defer unix.Close(fd)
			b, err := unix.Mmap(fd, 0, 4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
			if err != nil {
				return err
			}
			return unix.Munmap(b)
		}),
		h("write via inherited fd", wantBadFD, func(t Targets) error {
			return viaInherited(t, func(fd int) error {
				_, err := unix.Pwrite(fd, []byte("ronly-probe was here\n"), 0)
				return err
			})
		}),
		h("fallocate via inherited fd", wantBadFD, func(t Targets) error {
			return viaInherited(t, func(fd int) error { return unix.Fallocate(fd, 0, 0, 1<<20) })
		}),
		h("ftruncate via inherited fd", wantBadFD, func(t Targets) error {
			return viaInherited(t, func(fd int) error { return unix.Ftruncate(fd, 0) })
		}),
		h("openat O_CREAT via inherited dirfd", wantBadFD, func(t Targets) error {
			if t.DirFD <= 0 || !sameFile(t.DirFD, t.Dir) {
				return unix.EBADF
			}
			fd, err := unix.Openat(t.DirFD, "ronly-probe-dirfd", unix.O_WRONLY|unix.O_CREAT|unix.O_CLOEXEC, 0o644)
			if err != nil {
				return err
			}
			return unix.Close(fd)
		}),
		h("open for write via /proc/<pid>/root", wantNoPath, func(t Targets) error {
			return openClose(fmt.Sprintf("/proc/%d/root%s", t.Pid, t.File), unix.O_WRONLY, 0)
		}),
		h("create via /proc/<pid>/root", wantNoPath, func(t Targets) error {
			return openClose(fmt.Sprintf("/proc/%d/root%s", t.Pid, newName(t, "viaroot")), unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL, 0o644)
		}),
		h("open for write via /proc/<pid>/cwd", wantNoPath, func(t Targets) error {
			return openClose(fmt.Sprintf("/proc/%d/cwd/%s", t.Pid, File2Name), unix.O_WRONLY, 0)
		}),
		h("open for write via /proc/<pid>/fd/N", wantNoPath, func(t Targets) error {
			return openClose(fmt.Sprintf("/proc/%d/fd/%d", t.Pid, t.PidFD), unix.O_WRONLY, 0)
		}),
		h("name_to_handle_at+open_by_handle_at O_WRONLY", []unix.Errno{unix.EPERM}, func(t Targets) error {
			return openByHandle(t, unix.O_WRONLY)
		}),
		h("open_by_handle_at O_RDONLY", []unix.Errno{unix.EPERM}, func(t Targets) error {
			return openByHandle(t, unix.O_RDONLY)
		}),
		h("create file in /dev", wantROFSAcc, func(t Targets) error {
			return openClose("/dev/ronly-probe-"+t.Marker, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL, 0o644)
		}),
		h("chmod /dev/null (host inode)", wantROFS, func(t Targets) error { return unix.Chmod("/dev/null", 0o666) }),
		h("utimensat /dev/null (host inode)", wantROFS, func(t Targets) error {
			p, keep := cstr("/dev/null")
			_, _, e := unix.Syscall6(unix.SYS_UTIMENSAT, atFDCWD, p, 0, 0, 0, 0)
			_ = keep[0]
			return errnoOrNil(e)
		}),
		h("mkdir in /sys/fs/cgroup/*", wantROFSAcc, func(t Targets) error {
			dirs, _ := filepath.Glob("/sys/fs/cgroup/*/cgroup.procs")
			if len(dirs) == 0 {
				return unix.Mkdir("/sys/fs/cgroup/ronly-probe-"+t.Marker, 0o755)
			}
			return unix.Mkdir(filepath.Join(filepath.Dir(dirs[0]), "ronly-probe-"+t.Marker), 0o755)
		}),
		h("open cgroup.procs for write", wantROFSAcc, func(t Targets) error {
			return openFirst(unix.O_WRONLY, "/sys/fs/cgroup/cgroup.procs", "/sys/fs/cgroup/*/cgroup.procs")
		}),
		h("open cgroup release_agent for write", wantROFSAcc, func(t Targets) error {
			return openFirst(unix.O_WRONLY, "/sys/fs/cgroup/release_agent", "/sys/fs/cgroup/*/release_agent")
		}),
		h("open /proc/sys/kernel/core_pattern for write", wantROFSAcc, func(t Targets) error {
			return openClose("/proc/sys/kernel/core_pattern", unix.O_WRONLY, 0)
		}),
		h("open /proc/sys/kernel/modprobe for write", wantROFSAcc, func(t Targets) error {
			return openFirst(unix.O_WRONLY, "/proc/sys/kernel/modprobe")
		}),
		h("open /proc/sys/kernel/hostname for write", wantROFSAcc, func(t Targets) error {
			return openClose("/proc/sys/kernel/hostname", unix.O_WRONLY, 0)
		}),
		h("open /proc/sys/vm/drop_caches for write", wantROFSAcc, func(t Targets) error {
			return openClose("/proc/sys/vm/drop_caches", unix.O_WRONLY, 0)
		}),
		h("open /proc/sysrq-trigger for write", wantROFSAcc, func(t Targets) error {
			return openFirst(unix.O_WRONLY, "/proc/sysrq-trigger")
		}),
		h("open binfmt_misc/register for write", wantROFSAcc, func(t Targets) error {
			return openFirst(unix.O_WRONLY, "/proc/sys/fs/binfmt_misc/register")
		}),
		h("open /sys/kernel/uevent_helper for write", wantROFSAcc, func(t Targets) error {
			return openFirst(unix.O_WRONLY, "/sys/kernel/uevent_helper")
		}),
		h("open /dev/mem O_RDWR", wantNoPath, func(t Targets) error { return openClose("/dev/mem", unix.O_RDWR, 0) }),
		h("open /dev/kmsg O_RDWR", wantNoPath, func(t Targets) error { return openClose("/dev/kmsg", unix.O_RDWR, 0) }),
		h("open /dev/sda O_RDWR", wantNoPath, func(t Targets) error { return openClose("/dev/sda", unix.O_RDWR, 0) }),
		h("open /dev/vda O_RDWR", wantNoPath, func(t Targets) error { return openClose("/dev/vda", unix.O_RDWR, 0) }),
		h("open /dev/nvme0n1 O_RDWR", wantNoPath, func(t Targets) error { return openClose("/dev/nvme0n1", unix.O_RDWR, 0) }),
		h("mknod char device in /tmp and open it", []unix.Errno{unix.EPERM, unix.EACCES}, func(t Targets) error {
			p := t.Tmp() + "/ronly-probe-mem-" + t.Marker
			// /dev/mem is 1:1; /dev/null (1:3) would prove the same with less risk.
			if err := unix.Mknod(p, unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))); err != nil {
				return err
			}
			defer unix.Unlink(p)
			return openClose(p, unix.O_RDWR, 0)
		}),
		h("a writable mount outside the scratch space", wantROFS, writableMount),
	}
}

// viaInherited runs op on each inherited descriptor that still refers to
// the canary file. A descriptor number that is closed, or that this process
// has since reused for something else, did not reach the sandbox: EBADF.
func viaInherited(t Targets, op func(fd int) error) error {
	for _, fd := range t.FDs {
		if sameFile(fd, t.File) {
			if err := op(fd); err != unix.EBADF {
				return err
			}
		}
	}
	return unix.EBADF
}

func sameFile(fd int, path string) bool {
	var a, b unix.Stat_t
	if unix.Fstat(fd, &a) != nil || unix.Stat(path, &b) != nil {
		return false
	}
	return a.Dev == b.Dev && a.Ino == b.Ino
}

// openFirst opens the first existing path among globs for writing; none
// existing means the operation does not apply here.
func openFirst(flags int, globs ...string) error {
	for _, g := range globs {
		ms, _ := filepath.Glob(g)
		if len(ms) > 0 {
			return openClose(ms[0], flags, 0)
		}
	}
	return skip("none of %s exists", strings.Join(globs, ", "))
}

// scratchMounts are mount points the sandbox makes writable on purpose.
var scratchMounts = []string{"/tmp", "/dev/shm", "/dev/pts", "/dev/mqueue"}

// writableMount succeeds (the breach) if a mount other than the scratch
// space and --rw directory is not read-only.
func writableMount(t Targets) error {
	if t.NoNS {
		// The host's mounts, as they are: Landlock refuses the writes,
		// which the write operations try one by one.
		return skip("landlock-only mode: the mounts are the host's, not the sandbox's")
	}
	mounts, err := mountinfo.Points()
	if err != nil {
		return fmt.Errorf("setup: %w", err)
	}
	allowed := append([]string{}, scratchMounts...)
	if t.RWDir != "" {
		allowed = append(allowed, t.RWDir)
	}
	allowed = append(allowed, t.Writable...)
	var bad []string
	for _, m := range mounts {
		if within(m, allowed) {
			continue
		}
		var st unix.Statfs_t
		if err := unix.Statfs(m, &st); err != nil {
			continue // hidden or gone: not writable from here
		}
		if st.Flags&unix.ST_RDONLY == 0 {
			bad = append(bad, m)
		}
	}
	if len(bad) > 0 {
		return breach("writable mounts: %s", strings.Join(bad, " "))
	}
	return unix.EROFS
}

func within(p string, dirs []string) bool {
	for _, d := range dirs {
		if policy.Within(p, d) {
			return true
		}
	}
	return false
}

// openByHandle reopens the canary file by its handle, with flags: the path
// around every path-based check.
func openByHandle(t Targets, flags int) error {
	handle, _, err := unix.NameToHandleAt(unix.AT_FDCWD, t.File, 0)
	if err != nil {
		return err
	}
	mfd, err := unix.Open(t.Dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("setup: %w", err)
	}
	defer unix.Close(mfd)
	fd, err := unix.OpenByHandleAt(mfd, handle, flags|unix.O_CLOEXEC)
	if err != nil {
		return err
	}
	return unix.Close(fd)
}
