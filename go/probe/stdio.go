package probe

import (
	"fmt"
	"io"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Attacks on the host objects ronly's caller hands it as stdin, stdout and
// stderr: a file on the host's writable mount, an O_APPEND log, the caller's
// terminal. Reopening /proc/self/fd/N reaches the object on its own
// (writable) mount, and fchmod, futimens, fsetxattr and TIOCSETD need no
// reopen at all. The sandbox must give the command streams of its own
// instead (EBADF below: the host's object never reached the sandbox).
//
// Each operation runs only when the runner named the object it gave as
// descriptor N (Targets.Stdio) and the descriptor still is that object; it
// is skipped when the runner gave none. If it goes through, it changes
// nothing: the same mode, owner, times and discipline are set again, the
// truncated file gets its own bytes back, the xattr is removed again.

// FileID is a file's identity as fstat gives it, inside and outside alike.
type FileID struct {
	Dev uint64 `json:"dev"`
	Ino uint64 `json:"ino"`
}

// IDOf is the identity of the file open as fd.
func IDOf(fd int) (FileID, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return FileID{}, err
	}
	return FileID{Dev: st.Dev, Ino: st.Ino}, nil
}

// stdioXattr is the extended attribute the probe sets and removes.
const stdioXattr = "user.ronly-probe"

func stdioHostile() []Op {
	var ops []Op
	for fd := 0; fd <= 2; fd++ {
		h := func(what string, run func(fd int, st *unix.Stat_t) error) Op {
			return Op{Name: fmt.Sprintf("%s stdio fd %d", what, fd), Kind: Hostile, Want: wantBadFD,
				Run: func(t Targets) error {
					st, err := stdioCanary(t, fd)
					if err != nil {
						return err
					}
					return run(fd, st)
				}}
		}
		self := fmt.Sprintf("/proc/self/fd/%d", fd)
		ops = append(ops,
			h("reopen O_WRONLY", func(fd int, st *unix.Stat_t) error { return openClose(self, unix.O_WRONLY, 0) }),
			h("reopen O_TRUNC", func(fd int, st *unix.Stat_t) error { return truncateSame(self, st) }),
			h("fchmod (same mode)", func(fd int, st *unix.Stat_t) error { return unix.Fchmod(fd, st.Mode&0o7777) }),
			h("fchown (-1, -1)", func(fd int, st *unix.Stat_t) error { return unix.Fchown(fd, -1, -1) }),
			h("futimens (same times)", func(fd int, st *unix.Stat_t) error {
				ts := [2]unix.Timespec{st.Atim, st.Mtim}
				_, _, e := unix.Syscall6(unix.SYS_UTIMENSAT, uintptr(fd), 0, uintptr(unsafe.Pointer(&ts[0])), 0, 0, 0)
				return errnoOrNil(e)
			}),
			h("fsetxattr "+stdioXattr, func(fd int, st *unix.Stat_t) error {
				if st.Mode&unix.S_IFMT != unix.S_IFREG {
					return skip("descriptor %d is not a regular file: no user xattrs", fd)
				}
				if err := unix.Fsetxattr(fd, stdioXattr, []byte("1"), 0); err != nil {
					return err
				}
				return unix.Fremovexattr(fd, stdioXattr)
			}),
			h("ioctl TIOCSETD (same discipline)", func(fd int, st *unix.Stat_t) error {
				ldisc, err := unix.IoctlGetInt(fd, unix.TIOCGETD)
				if err == unix.ENOTTY {
					return skip("descriptor %d is not a terminal", fd)
				}
				if err != nil {
					return err
				}
				return unix.IoctlSetPointerInt(fd, unix.TIOCSETD, ldisc)
			}),
		)
	}
	return ops
}

// stdioCanary says what descriptor fd is, if it is the host object the
// runner gave as that descriptor; EBADF when the sandbox put something
// else there.
func stdioCanary(t Targets, fd int) (*unix.Stat_t, error) {
	id, ok := t.Stdio[fd]
	if !ok {
		return nil, skip("the runner gave no host object as descriptor %d", fd)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Dev != id.Dev || st.Ino != id.Ino {
		return nil, unix.EBADF
	}
	return &st, nil
}

// truncateSame opens path with O_TRUNC and, if that went through, writes
// back what a regular file held before (read first through a read-only
// reopen, which is no attack).
func truncateSame(path string, st *unix.Stat_t) error {
	var keep []byte
	if st.Mode&unix.S_IFMT == unix.S_IFREG {
		fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOCTTY, 0)
		if err != nil {
			return fmt.Errorf("setup: %w", err)
		}
		f := fdReader(fd)
		keep, err = io.ReadAll(io.LimitReader(&f, 1<<20))
		unix.Close(fd)
		if err != nil {
			return fmt.Errorf("setup: %w", err)
		}
	}
	fd, err := unix.Open(path, unix.O_WRONLY|unix.O_TRUNC|unix.O_CLOEXEC|unix.O_NOCTTY, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if len(keep) == 0 {
		return nil // a terminal ignores O_TRUNC
	}
	if _, err := unix.Pwrite(fd, keep, 0); err != nil {
		return breach("truncated, and writing back failed: %v", err)
	}
	return nil
}

type fdReader int

func (f *fdReader) Read(b []byte) (int, error) {
	n, err := unix.Read(int(*f), b)
	if err != nil {
		return 0, err
	}
	if n == 0 {
		return 0, io.EOF
	}
	return n, nil
}
