package probe

import (
	"fmt"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Some calls behave differently in a multi-threaded process: unshare of a
// user or mount namespace and setns into a mount namespace fail with EINVAL
// whenever other threads share the caller's filesystem state, which every Go
// program's threads do. Such a refusal would prove nothing about the
// sandbox, so these calls run in a single-threaded copy of this process made
// by a bare clone (a fork): the child makes exactly one raw system call and
// exits with its errno as status.

// sysCall is one raw system call with its arguments, prepared before the
// fork so that the child allocates nothing.
type sysCall struct {
	nr   uintptr
	args [6]uintptr
}

// inChild runs c in a forked child and returns its errno (0: it succeeded).
func inChild(c sysCall) error {
	pid, errno := rawFork()
	if errno != 0 {
		return fmt.Errorf("fork: %w", errno)
	}
	if pid == 0 {
		childCall(&c) // never returns
	}
	return waitChild(int(pid))
}

// inChildWait forks a child that only waits for signals (for own-process
// operations: kill, pidfd_send_signal). The caller must signal and reap it.
func inChildWait() (int, error) {
	pid, errno := rawFork()
	if errno != 0 {
		return 0, fmt.Errorf("fork: %w", errno)
	}
	if pid == 0 {
		childPause() // never returns
	}
	return int(pid), nil
}

//go:nosplit
func rawFork() (uintptr, syscall.Errno) {
	r, _, e := syscall.RawSyscall6(syscall.SYS_CLONE, uintptr(syscall.SIGCHLD), 0, 0, 0, 0, 0)
	return r, e
}

//go:nosplit
func childCall(c *sysCall) {
	_, _, e := syscall.RawSyscall6(c.nr, c.args[0], c.args[1], c.args[2], c.args[3], c.args[4], c.args[5])
	for {
		syscall.RawSyscall(syscall.SYS_EXIT_GROUP, uintptr(e), 0, 0)
	}
}

//go:nosplit
func childPause() {
	for {
		syscall.RawSyscall(syscall.SYS_PAUSE, 0, 0, 0)
	}
}

func waitChild(pid int) error {
	var ws unix.WaitStatus
	for {
		_, err := unix.Wait4(pid, &ws, 0, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("wait4: %w", err)
		}
		break
	}
	switch {
	case ws.Exited() && ws.ExitStatus() == 0:
		return nil
	case ws.Exited():
		return unix.Errno(ws.ExitStatus())
	default:
		return fmt.Errorf("child killed by signal %v", ws.Signal())
	}
}

// cstr returns a pointer to a NUL-terminated copy of s that stays alive as
// long as the caller keeps the returned slice.
func cstr(s string) (uintptr, []byte) {
	b := append([]byte(s), 0)
	return uintptr(unsafe.Pointer(&b[0])), b
}

// atFDCWD is AT_FDCWD as a raw system call argument.
var atFDCWD = uintptr(^uintptr(99)) // -100
