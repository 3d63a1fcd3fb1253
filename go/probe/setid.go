package probe

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"

	"ronly.dev/ronly/go/kernelver"
)

// Set-id files: a file made set-user-ID (or set-group-ID, or given file
// capabilities) in a --rw directory stays on the host, where any user who
// runs it from the host's mount gets its owner's privileges. Each operation
// makes its own file in a fresh directory of the writable place (RWDir, else
// /tmp) and tries to give it the bits; the caller checks from outside that
// RWDir holds no such file afterwards (SetIDFiles). If one gets through, the
// file is the probe's own, in a directory the runner removes.

// wantSetIDRefused: the seccomp rules answer EPERM; openat2 is sent to
// openat with ENOSYS.
var wantSetIDRefused = []unix.Errno{unix.EPERM}

// setidDir makes the fresh directory for one operation.
func setidDir(t Targets, slug string) (string, error) {
	base := t.RWDir
	if base == "" {
		base = t.Tmp()
	}
	d := filepath.Join(base, "ronly-probe-"+t.Marker+"-setid-"+slug)
	if err := os.MkdirAll(d, 0o755); err != nil {
		return "", fmt.Errorf("setup: %w", err)
	}
	return d, nil
}

// plainFile makes an ordinary file (mode 0755) in d.
func plainFile(d string) (string, error) {
	p := filepath.Join(d, "prog")
	if err := os.WriteFile(p, []byte("#!/bin/sh\nid\n"), 0o755); err != nil {
		return "", fmt.Errorf("setup: %w", err)
	}
	return p, nil
}

// madeSetID turns a call that went through into a breach naming the mode
// the file got.
func madeSetID(p string) error {
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		return breach("the call went through (%s: %v)", p, err)
	}
	return breach("%s now has mode %o", p, st.Mode)
}

// vfsCapData is a struct vfs_cap_data, revision 2: CAP_NET_BIND_SERVICE
// permitted and effective.
func vfsCapData() []byte {
	b := make([]byte, 20)
	*(*uint32)(unsafe.Pointer(&b[0])) = 0x02000000 | 1 // VFS_CAP_REVISION_2 | VFS_CAP_FLAGS_EFFECTIVE
	*(*uint32)(unsafe.Pointer(&b[4])) = 1 << unix.CAP_NET_BIND_SERVICE
	return b
}

func setidHostile() []Op {
	type attempt struct {
		name string
		// run tries it in d and returns the file it made set-id and the
		// errno; path pins a C string until the operation is over.
		run func(d string, path func(string) uintptr) (string, unix.Errno)
	}
	onFile := func(call func(p string, path func(string) uintptr) unix.Errno) func(string, func(string) uintptr) (string, unix.Errno) {
		return func(d string, path func(string) uintptr) (string, unix.Errno) {
			p, err := plainFile(d)
			if err != nil {
				return "", unix.Errno(0xfff)
			}
			return p, call(p, path)
		}
	}
	sys := func(nr uintptr, a ...uintptr) unix.Errno {
		var v [6]uintptr
		copy(v[:], a)
		r, _, e := unix.Syscall6(nr, v[0], v[1], v[2], v[3], v[4], v[5])
		if e == 0 && (nr == unix.SYS_OPEN || nr == unix.SYS_OPENAT || nr == unix.SYS_CREAT || nr == unix.SYS_OPENAT2) {
			unix.Close(int(r))
		}
		return e
	}
	attempts := []attempt{
		{"chmod 04755", onFile(func(p string, path func(string) uintptr) unix.Errno { return sys(unix.SYS_CHMOD, path(p), 0o4755) })},
		{"chmod 02755", onFile(func(p string, path func(string) uintptr) unix.Errno { return sys(unix.SYS_CHMOD, path(p), 0o2755) })},
		{"fchmod 04755", onFile(func(p string, path func(string) uintptr) unix.Errno {
			fd, err := unix.Open(p, unix.O_RDONLY|unix.O_CLOEXEC, 0)
			if err != nil {
				return err.(unix.Errno)
			}
			defer unix.Close(fd)
			return sys(unix.SYS_FCHMOD, uintptr(fd), 0o4755)
		})},
		{"fchmodat 06755", onFile(func(p string, path func(string) uintptr) unix.Errno {
			return sys(unix.SYS_FCHMODAT, atFDCWD, path(p), 0o6755)
		})},
		{"fchmodat2 04755", onFile(func(p string, path func(string) uintptr) unix.Errno { return sys(452, atFDCWD, path(p), 0o4755, 0) })},
		{"open O_CREAT 04755", func(d string, path func(string) uintptr) (string, unix.Errno) {
			p := filepath.Join(d, "new")
			return p, sys(unix.SYS_OPEN, path(p), unix.O_WRONLY|unix.O_CREAT|unix.O_CLOEXEC, 0o4755)
		}},
		{"openat O_CREAT 02755", func(d string, path func(string) uintptr) (string, unix.Errno) {
			p := filepath.Join(d, "new")
			return p, sys(unix.SYS_OPENAT, atFDCWD, path(p), unix.O_WRONLY|unix.O_CREAT|unix.O_CLOEXEC, 0o2755)
		}},
		{"creat 04755", func(d string, path func(string) uintptr) (string, unix.Errno) {
			p := filepath.Join(d, "new")
			return p, sys(unix.SYS_CREAT, path(p), 0o4755)
		}},
		{"openat2 O_CREAT 04755", func(d string, path func(string) uintptr) (string, unix.Errno) {
			p := filepath.Join(d, "new")
			how := unix.OpenHow{Flags: unix.O_WRONLY | unix.O_CREAT | unix.O_CLOEXEC, Mode: 0o4755}
			return p, sys(unix.SYS_OPENAT2, atFDCWD, path(p), uintptr(unsafe.Pointer(&how)), unsafe.Sizeof(how))
		}},
		{"O_TMPFILE 04755, then linkat", func(d string, path func(string) uintptr) (string, unix.Errno) {
			p := filepath.Join(d, "new")
			r, _, e := unix.Syscall6(unix.SYS_OPENAT, atFDCWD, path(d), unix.O_WRONLY|unix.O_TMPFILE|unix.O_CLOEXEC, 0o4755, 0, 0)
			if e != 0 {
				return p, e
			}
			defer unix.Close(int(r))
			if err := unix.Linkat(unix.AT_FDCWD, fmt.Sprintf("/proc/self/fd/%d", r), unix.AT_FDCWD, p, unix.AT_SYMLINK_FOLLOW); err != nil {
				return p, err.(unix.Errno)
			}
			return p, 0
		}},
		{"mknod S_IFREG|04755", func(d string, path func(string) uintptr) (string, unix.Errno) {
			p := filepath.Join(d, "new")
			return p, sys(unix.SYS_MKNOD, path(p), unix.S_IFREG|0o4755, 0)
		}},
		{"mknodat S_IFREG|02755", func(d string, path func(string) uintptr) (string, unix.Errno) {
			p := filepath.Join(d, "new")
			return p, sys(unix.SYS_MKNODAT, atFDCWD, path(p), unix.S_IFREG|0o2755, 0)
		}},
		{"setxattr security.capability", onFile(func(p string, path func(string) uintptr) unix.Errno {
			return setidErrno(unix.Setxattr(p, "security.capability", vfsCapData(), 0))
		})},
		{"lsetxattr security.capability", onFile(func(p string, path func(string) uintptr) unix.Errno {
			return setidErrno(unix.Lsetxattr(p, "security.capability", vfsCapData(), 0))
		})},
		{"fsetxattr security.capability", onFile(func(p string, path func(string) uintptr) unix.Errno {
			fd, err := unix.Open(p, unix.O_RDONLY|unix.O_CLOEXEC, 0)
			if err != nil {
				return setidErrno(err)
			}
			defer unix.Close(fd)
			return setidErrno(unix.Fsetxattr(fd, "security.capability", vfsCapData(), 0))
		})},
		{"setxattrat security.capability", onFile(func(p string, path func(string) uintptr) unix.Errno {
			v := vfsCapData()
			// struct xattr_args { __aligned_u64 value; __u32 size; __u32 flags; }
			args := struct {
				value       uint64
				size, flags uint32
			}{uint64(uintptr(unsafe.Pointer(&v[0]))), uint32(len(v)), 0}
			e := sys(463, atFDCWD, path(p), 0, path("security.capability"), uintptr(unsafe.Pointer(&args)), unsafe.Sizeof(args))
			if e == unix.ENOSYS {
				return 0xffff // a kernel before 6.13: no setxattrat
			}
			return e
		})},
	}
	var out []Op
	for i, a := range attempts {
		a, slug := a, fmt.Sprintf("%02d", i)
		want := wantSetIDRefused
		if a.name == "openat2 O_CREAT 04755" {
			want = []unix.Errno{unix.EPERM, unix.ENOSYS}
		}
		out = append(out, Op{Name: a.name + " in a writable dir", Kind: Hostile, Want: want, Run: func(t Targets) error {
			d, err := setidDir(t, slug)
			if err != nil {
				return err
			}
			var pinned [][]byte
			p, e := a.run(d, func(s string) uintptr {
				ptr, b := cstr(s)
				pinned = append(pinned, b)
				return ptr
			})
			runtime.KeepAlive(pinned)
			switch e {
			case 0:
				return madeSetID(p)
			case 0xfff:
				return fmt.Errorf("setup: cannot make a file in %s", d)
			case 0xffff:
				return skip("no setxattrat on this kernel (6.13)")
			}
			return e
		}})
	}
	return out
}

func setidErrno(err error) unix.Errno {
	if err == nil {
		return 0
	}
	if e, ok := unwrapPathError(err).(unix.Errno); ok {
		return e
	}
	return unix.EIO
}

// setidEveryday: what normal work does with modes and attributes keeps
// working, in /tmp: the mediated setxattr calls continue.
func setidEveryday() []Op {
	e := func(name string, run func(d string) error) Op {
		return Op{Name: name, Kind: Everyday, Run: func(t Targets) error {
			d := filepath.Join(t.Tmp(), "ronly-probe-"+t.Marker+"-xattr")
			if err := os.MkdirAll(d, 0o755); err != nil {
				return fmt.Errorf("setup: %w", err)
			}
			return run(d)
		}}
	}
	return []Op{
		e("setxattr user.* in /tmp", func(d string) error {
			p, err := plainFile(d)
			if err != nil {
				return err
			}
			if err := unix.Setxattr(p, "user.ronly", []byte("1"), 0); err != nil {
				var st unix.Statfs_t
				if unix.Statfs(d, &st) == nil {
					if why := noUserXattrs(err, st.Type, kernelver.Release()); why != "" {
						return skip("%s", why)
					}
				}
				return err
			}
			b := make([]byte, 8)
			n, err := unix.Getxattr(p, "user.ronly", b)
			if err != nil {
				return err
			}
			if string(b[:n]) != "1" {
				return fmt.Errorf("user.ronly reads back %q", b[:n])
			}
			return nil
		}),
		e("fsetxattr system.posix_acl_access (cp -p) in /tmp", func(d string) error {
			p, err := plainFile(d)
			if err != nil {
				return err
			}
			fd, err := unix.Open(p, unix.O_RDONLY|unix.O_CLOEXEC, 0)
			if err != nil {
				return err
			}
			defer unix.Close(fd)
			// The minimal ACL for mode 0750, as cp -p sets it: version 2,
			// then (tag, perm, id) for owner, group and other.
			acl := []byte{2, 0, 0, 0,
				1, 0, 7, 0, 0xff, 0xff, 0xff, 0xff,
				4, 0, 5, 0, 0xff, 0xff, 0xff, 0xff,
				0x20, 0, 0, 0, 0xff, 0xff, 0xff, 0xff}
			if err := unix.Fsetxattr(fd, "system.posix_acl_access", acl, 0); err != nil {
				return err
			}
			var st unix.Stat_t
			if err := unix.Fstat(fd, &st); err != nil {
				return err
			}
			if st.Mode&0o7777 != 0o750 {
				return fmt.Errorf("mode %o after the ACL, want 750", st.Mode&0o7777)
			}
			return nil
		}),
		e("chmod 01777 (sticky) in /tmp", func(d string) error {
			return unix.Chmod(d, 0o1777)
		}),
	}
}

// noUserXattrs says why a setxattr of a user.* attribute that failed with
// err, on a file system of type fsType (statfs's f_type), does not apply
// here, where the kernel, not the sandbox, refuses it: tmpfs holds user.*
// attributes only since Linux 6.6, and /tmp inside is a tmpfs. "" when the
// failure is the sandbox's to answer for: another error, another file
// system, or a tmpfs that should take them. rel is the kernel's release.
func noUserXattrs(err error, fsType int64, rel string) string {
	// AtLeast(rel, 0, 0) is false only for a release it cannot read:
	// then the failure stands.
	if !errors.Is(err, unix.EOPNOTSUPP) || fsType != unix.TMPFS_MAGIC || kernelver.AtLeast(rel, 6, 6) || !kernelver.AtLeast(rel, 0, 0) {
		return ""
	}
	return fmt.Sprintf("tmpfs holds user.* extended attributes from Linux 6.6 on; this is %s", rel)
}
