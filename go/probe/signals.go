package probe

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// signalsEveryday are the signals a session sends to its own processes in
// every way a shell, a supervisor of jobs or a runtime does. Where Landlock
// cannot scope signals, ronly's supervisor delivers each of these itself
// (go/sandbox/signals.go): they must keep working there.
func signalsEveryday() []Op {
	e := func(name string, run func(t Targets) error) Op { return Op{Name: name, Kind: Everyday, Run: run} }
	// onChild runs send on a child that waits for signals, then makes sure
	// it is gone and reaped.
	onChild := func(send func(pid int) error) error {
		pid, err := inChildWait()
		if err != nil {
			return err
		}
		defer waitChild(pid)
		if err := send(pid); err != nil {
			unix.Kill(pid, unix.SIGKILL)
			return err
		}
		return nil
	}
	return []Op{
		// `kill %1` in a shell with job control: the job's process group.
		e("kill own child's process group (kill %1)", func(Targets) error {
			return onChild(func(pid int) error {
				if err := unix.Setpgid(pid, pid); err != nil {
					return err
				}
				return unix.Kill(-pid, unix.SIGKILL)
			})
		}),
		e("tgkill own child", func(Targets) error {
			return onChild(func(pid int) error { return unix.Tgkill(pid, pid, unix.SIGKILL) })
		}),
		e("tkill own child", func(Targets) error {
			return onChild(func(pid int) error {
				_, _, errno := unix.Syscall(unix.SYS_TKILL, uintptr(pid), uintptr(unix.SIGKILL), 0)
				return errnoOrNil(errno)
			})
		}),
		// sigqueue(3) with a value for the receiver, to a child.
		e("rt_sigqueueinfo own child", func(Targets) error {
			return onChild(func(pid int) error {
				info := newSiginfo(unix.SIGKILL)
				_, _, errno := unix.Syscall(unix.SYS_RT_SIGQUEUEINFO, uintptr(pid), uintptr(unix.SIGKILL), uintptr(unsafe.Pointer(info)))
				return errnoOrNil(errno)
			})
		}),
		e("rt_tgsigqueueinfo own child", func(Targets) error {
			return onChild(func(pid int) error {
				info := newSiginfo(unix.SIGKILL)
				_, _, errno := unix.Syscall6(unix.SYS_RT_TGSIGQUEUEINFO, uintptr(pid), uintptr(pid), uintptr(unix.SIGKILL), uintptr(unsafe.Pointer(info)), 0, 0)
				return errnoOrNil(errno)
			})
		}),
		// A runtime's preemption and pthread_kill: a thread of its own.
		e("tgkill own thread with signal 0", func(Targets) error {
			return unix.Tgkill(unix.Getpid(), unix.Gettid(), 0)
		}),
		// The caller's process group also holds processes outside the
		// session (ronly, and whoever started it, when stdio is not a
		// terminal): the signal reaches the session's members, as
		// Landlock's scoping lets it.
		e("kill own process group with signal 0 (kill 0)", func(Targets) error {
			return unix.Kill(0, 0)
		}),
	}
}
