package probe

import (
	"fmt"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// wantNamespace: ENOSPC is the wall of a user namespace that allows no
// more namespaces of a kind (/proc/sys/user/max_*_namespaces 0 in the
// session's, set by the init).
var wantNamespace = []unix.Errno{unix.EPERM, unix.ENOSPC}

// unshareOp unshares flags in a single-threaded child (see fork.go).
func unshareOp(name string, flags uintptr) Op {
	return Op{Name: name, Kind: Hostile, Want: wantNamespace, Run: func(Targets) error {
		return inChild(sysCall{nr: unix.SYS_UNSHARE, args: [6]uintptr{flags}})
	}}
}

// cloneOp makes a child with flags in a single-threaded child; a new
// process that appears exits at once.
func cloneOp(name string, flags uintptr) Op {
	return Op{Name: name, Kind: Hostile, Want: wantNamespace, Run: func(Targets) error {
		return inChild(sysCall{nr: unix.SYS_CLONE, args: [6]uintptr{flags | uintptr(unix.SIGCHLD)}})
	}}
}

func mountHostile() []Op {
	h := func(name string, run func(t Targets) error) Op {
		return Op{Name: name, Kind: Hostile, Run: run, Want: wantPerm}
	}
	return []Op{
		unshareOp("unshare CLONE_NEWUSER", unix.CLONE_NEWUSER),
		unshareOp("unshare CLONE_NEWNS", unix.CLONE_NEWNS),
		unshareOp("unshare CLONE_NEWNET", unix.CLONE_NEWNET),
		unshareOp("unshare CLONE_NEWPID", unix.CLONE_NEWPID),
		unshareOp("unshare CLONE_NEWUTS", unix.CLONE_NEWUTS),
		unshareOp("unshare CLONE_NEWIPC", unix.CLONE_NEWIPC),
		unshareOp("unshare CLONE_NEWCGROUP", unix.CLONE_NEWCGROUP),
		unshareOp("unshare CLONE_NEWTIME", unix.CLONE_NEWTIME),
		unshareOp("unshare CLONE_NEWUSER|CLONE_NEWNS", unix.CLONE_NEWUSER|unix.CLONE_NEWNS),
		cloneOp("clone CLONE_NEWUSER", unix.CLONE_NEWUSER),
		cloneOp("clone CLONE_NEWNS", unix.CLONE_NEWNS),
		{Name: "clone3", Kind: Hostile, Want: []unix.Errno{unix.ENOSYS}, Run: func(Targets) error {
			// A zero size is invalid: if clone3 were allowed it would say EINVAL.
			_, _, e := unix.RawSyscall(unix.SYS_CLONE3, 0, 0, 0)
			return errnoOrNil(e)
		}},
		{Name: "setns /proc/1/ns/mnt", Kind: Hostile, Want: []unix.Errno{unix.EPERM, unix.EACCES}, Run: func(t Targets) error {
			return setnsOp("/proc/1/ns/mnt", unix.CLONE_NEWNS)
		}},
		{Name: "setns /proc/<canary>/ns/mnt", Kind: Hostile, Want: []unix.Errno{unix.EPERM, unix.EACCES, unix.ENOENT}, Run: func(t Targets) error {
			return setnsOp(fmt.Sprintf("/proc/%d/ns/mnt", t.Pid), unix.CLONE_NEWNS)
		}},
		{Name: "setns /proc/1/ns/net", Kind: Hostile, Want: []unix.Errno{unix.EPERM, unix.EACCES}, Run: func(t Targets) error {
			return setnsOp("/proc/1/ns/net", unix.CLONE_NEWNET)
		}},
		h("mount tmpfs", func(t Targets) error {
			dir := t.Tmp() + "/ronly-probe-mnt-" + t.Marker
			if err := unix.Mkdir(dir, 0o755); err != nil && err != unix.EEXIST {
				return fmt.Errorf("setup: %w", err)
			}
			if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=64k"); err != nil {
				return err
			}
			unix.Unmount(dir, unix.MNT_DETACH)
			return nil
		}),
		h("mount MS_REMOUNT|MS_BIND rw /", func(Targets) error {
			return unix.Mount("", "/", "", unix.MS_REMOUNT|unix.MS_BIND, "")
		}),
		h("mount MS_REMOUNT|MS_BIND rw host dir", func(t Targets) error {
			return unix.Mount("", t.Dir, "", unix.MS_REMOUNT|unix.MS_BIND, "")
		}),
		h("mount MS_BIND host dir onto itself", func(t Targets) error {
			if err := unix.Mount(t.Dir, t.Dir, "", unix.MS_BIND, ""); err != nil {
				return err
			}
			unix.Unmount(t.Dir, unix.MNT_DETACH)
			return nil
		}),
		h("mount_setattr attr_clr=RDONLY on /", func(Targets) error {
			return unix.MountSetattr(unix.AT_FDCWD, "/", unix.AT_RECURSIVE, &unix.MountAttr{Attr_clr: unix.MOUNT_ATTR_RDONLY})
		}),
		h("open_tree(OPEN_TREE_CLONE) + mount_setattr", func(Targets) error {
			fd, err := unix.OpenTree(unix.AT_FDCWD, "/", unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_RECURSIVE)
			if err != nil {
				return err
			}
			defer unix.Close(fd)
			return unix.MountSetattr(fd, "", unix.AT_EMPTY_PATH|unix.AT_RECURSIVE, &unix.MountAttr{Attr_clr: unix.MOUNT_ATTR_RDONLY})
		}),
		h("open_tree_attr (467)", func(Targets) error {
			p, keep := cstr("/")
			attr := unix.MountAttr{Attr_clr: unix.MOUNT_ATTR_RDONLY}
			r, _, e := unix.Syscall6(unix.SYS_OPEN_TREE_ATTR, atFDCWD, p,
				unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_RECURSIVE, uintptr(unsafe.Pointer(&attr)), unsafe.Sizeof(attr), 0)
			runtime.KeepAlive(keep)
			if e == 0 {
				unix.Close(int(r))
			}
			return errnoOrNil(e)
		}),
		h("fsopen tmpfs", func(Targets) error {
			fd, err := unix.Fsopen("tmpfs", unix.FSOPEN_CLOEXEC)
			if err != nil {
				return err
			}
			return unix.Close(fd)
		}),
		h("fsconfig", func(Targets) error {
			// fd -1: were fsconfig allowed, the kernel would say EBADF.
			_, _, e := unix.Syscall6(unix.SYS_FSCONFIG, ^uintptr(0), unix.FSCONFIG_CMD_CREATE, 0, 0, 0, 0)
			return errnoOrNil(e)
		}),
		h("fsmount", func(Targets) error {
			_, _, e := unix.Syscall(unix.SYS_FSMOUNT, ^uintptr(0), 0, 0)
			return errnoOrNil(e)
		}),
		h("move_mount", func(t Targets) error {
			return unix.MoveMount(-1, "", unix.AT_FDCWD, t.Dir, unix.MOVE_MOUNT_F_EMPTY_PATH)
		}),
		h("fspick / (reconfigure)", func(Targets) error {
			fd, err := unix.Fspick(unix.AT_FDCWD, "/", unix.FSPICK_CLOEXEC)
			if err != nil {
				return err
			}
			return unix.Close(fd)
		}),
		h("umount2 the cover of the hidden socket", func(t Targets) error {
			return unix.Unmount(t.Socket, 0)
		}),
		h("umount2 /proc MNT_DETACH", func(t Targets) error {
			// Only a probe: if it worked, the sandbox's own /proc is gone.
			return unix.Unmount("/proc", unix.MNT_DETACH)
		}),
		h("pivot_root", func(Targets) error {
			// Not mount points: were pivot_root allowed, it would say EINVAL.
			return unix.PivotRoot("/var", "/var")
		}),
		h("chroot /", func(Targets) error { return unix.Chroot("/") }),
	}
}

// setnsOp opens a namespace file and joins it in a single-threaded child.
func setnsOp(path string, nstype uintptr) error {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return inChild(sysCall{nr: unix.SYS_SETNS, args: [6]uintptr{uintptr(fd), nstype}})
}
