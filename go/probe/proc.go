package probe

import (
	"fmt"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

var (
	wantPerm     = []unix.Errno{unix.EPERM}
	wantPermSrch = []unix.Errno{unix.EPERM, unix.ESRCH}
	// ENOENT: a PID namespace of the sandbox's own hides the process.
	wantProcFile = []unix.Errno{unix.EACCES, unix.EROFS, unix.EPERM, unix.ENOENT}
)

// siginfoQueue is a siginfo_t as rt_sigqueueinfo wants it: SI_QUEUE, with
// the sender's pid and uid in the first fields of the union.
type siginfoQueue struct {
	Signo, Errno, Code int32
	_                  int32
	Pid, UID           uint32
	_                  [128 - 24]byte
}

func newSiginfo(sig unix.Signal) *siginfoQueue {
	return &siginfoQueue{Signo: int32(sig), Code: -1 /* SI_QUEUE */, Pid: uint32(unix.Getpid()), UID: uint32(unix.Getuid())}
}

// withParent runs op on this process's parent, the ronly supervisor in
// the host's PID namespace. Never PID 1 or 0: in a PID namespace of its
// own the parent is not visible, and the operation does not apply.
func withParent(op func(ppid int) error) error {
	ppid := unix.Getppid()
	if ppid <= 1 {
		return skip("parent pid %d: not the supervisor", ppid)
	}
	return op(ppid)
}

func procHostile() []Op {
	h := func(name string, want []unix.Errno, run func(t Targets) error) Op {
		return Op{Name: name, Kind: Hostile, Run: run, Want: want}
	}
	return []Op{
		h("kill SIGKILL canary", wantPermSrch, func(t Targets) error { return unix.Kill(t.Pid, unix.SIGKILL) }),
		h("tkill SIGKILL canary", wantPermSrch, func(t Targets) error {
			_, _, e := unix.RawSyscall(unix.SYS_TKILL, uintptr(t.Pid), uintptr(unix.SIGKILL), 0)
			return errnoOrNil(e)
		}),
		h("tgkill SIGKILL canary", wantPermSrch, func(t Targets) error { return unix.Tgkill(t.Pid, t.Pid, unix.SIGKILL) }),
		h("pidfd_send_signal SIGKILL canary", wantPermSrch, func(t Targets) error {
			fd, err := unix.PidfdOpen(t.Pid, 0)
			if err != nil {
				return err
			}
			defer unix.Close(fd)
			return unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0)
		}),
		h("rt_sigqueueinfo SIGKILL canary", wantPermSrch, func(t Targets) error {
			info := newSiginfo(unix.SIGKILL)
			_, _, e := unix.RawSyscall(unix.SYS_RT_SIGQUEUEINFO, uintptr(t.Pid), uintptr(unix.SIGKILL), uintptr(unsafe.Pointer(info)))
			return errnoOrNil(e)
		}),
		h("rt_tgsigqueueinfo SIGKILL canary", wantPermSrch, func(t Targets) error {
			info := newSiginfo(unix.SIGKILL)
			_, _, e := unix.RawSyscall6(unix.SYS_RT_TGSIGQUEUEINFO, uintptr(t.Pid), uintptr(t.Pid), uintptr(unix.SIGKILL), uintptr(unsafe.Pointer(info)), 0, 0)
			return errnoOrNil(e)
		}),
		h("PTRACE_ATTACH canary", wantPermSrch, func(t Targets) error {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			if err := unix.PtraceAttach(t.Pid); err != nil {
				return err
			}
			var ws unix.WaitStatus
			unix.Wait4(t.Pid, &ws, unix.WALL, nil)
			unix.PtraceDetach(t.Pid)
			return nil
		}),
		h("PTRACE_POKEDATA canary", wantPermSrch, func(t Targets) error {
			// Address 0: even a tracer could not write there.
			_, _, e := unix.RawSyscall6(unix.SYS_PTRACE, unix.PTRACE_POKEDATA, uintptr(t.Pid), 0, 0, 0, 0)
			return errnoOrNil(e)
		}),
		h("process_vm_writev canary", wantPermSrch, func(t Targets) error {
			b := []byte{0}
			local := []unix.Iovec{{Base: &b[0], Len: 1}}
			// Remote address 0 faults if the access check ever passes.
			remote := []unix.RemoteIovec{{Base: 0, Len: 1}}
			_, err := unix.ProcessVMWritev(t.Pid, local, remote, 0)
			return err
		}),
		h("pidfd_getfd from canary", wantPermSrch, func(t Targets) error {
			pfd, err := unix.PidfdOpen(t.Pid, 0)
			if err != nil {
				return err
			}
			defer unix.Close(pfd)
			fd, err := unix.PidfdGetfd(pfd, t.PidFD, 0)
			if err != nil {
				return err
			}
			return unix.Close(fd)
		}),
		h("open /proc/<pid>/mem O_RDWR", wantProcFile, func(t Targets) error {
			return openClose(fmt.Sprintf("/proc/%d/mem", t.Pid), unix.O_RDWR, 0)
		}),
		h("open /proc/<pid>/oom_score_adj for write", wantProcFile, func(t Targets) error {
			return openClose(fmt.Sprintf("/proc/%d/oom_score_adj", t.Pid), unix.O_WRONLY, 0)
		}),
		h("prlimit canary (same value)", wantPermSrch, func(t Targets) error {
			var lim unix.Rlimit
			if err := unix.Prlimit(t.Pid, unix.RLIMIT_NOFILE, nil, &lim); err != nil {
				if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
					return fmt.Errorf("setup: %w", err)
				}
			}
			return unix.Prlimit(t.Pid, unix.RLIMIT_NOFILE, &lim, nil)
		}),
		h("setpriority canary (same value)", wantPermSrch, func(t Targets) error {
			prio, err := unix.Getpriority(unix.PRIO_PROCESS, t.Pid)
			nice := 20 - prio // the raw call answers 20-nice
			if err != nil {
				nice = 0
			}
			return unix.Setpriority(unix.PRIO_PROCESS, t.Pid, nice)
		}),
		h("sched_setaffinity canary (same mask)", wantPermSrch, func(t Targets) error {
			var set unix.CPUSet
			if err := unix.SchedGetaffinity(t.Pid, &set); err != nil {
				if err := unix.SchedGetaffinity(0, &set); err != nil {
					return fmt.Errorf("setup: %w", err)
				}
			}
			return unix.SchedSetaffinity(t.Pid, &set)
		}),
		h("sched_setscheduler canary (SCHED_OTHER)", wantPermSrch, func(t Targets) error {
			var param [1]int32
			_, _, e := unix.RawSyscall(unix.SYS_SCHED_SETSCHEDULER, uintptr(t.Pid), 0, uintptr(unsafe.Pointer(&param[0])))
			return errnoOrNil(e)
		}),
		h("kill SIGKILL parent (the ronly supervisor)", wantPermSrch, func(Targets) error {
			return withParent(func(ppid int) error { return unix.Kill(ppid, unix.SIGKILL) })
		}),
		h("PTRACE_ATTACH parent (the ronly supervisor)", wantPermSrch, func(Targets) error {
			return withParent(func(ppid int) error {
				runtime.LockOSThread()
				defer runtime.UnlockOSThread()
				if err := unix.PtraceAttach(ppid); err != nil {
					return err
				}
				var ws unix.WaitStatus
				unix.Wait4(ppid, &ws, unix.WALL, nil)
				unix.PtraceDetach(ppid)
				return nil
			})
		}),
		h("pidfd_getfd stdin from parent", wantPermSrch, func(Targets) error {
			return withParent(func(ppid int) error {
				pfd, err := unix.PidfdOpen(ppid, 0)
				if err != nil {
					return err
				}
				defer unix.Close(pfd)
				fd, err := unix.PidfdGetfd(pfd, 0, 0)
				if err != nil {
					return err
				}
				return unix.Close(fd)
			})
		}),
		h("create via /proc/<parent>/root", wantNoPath, func(t Targets) error {
			return withParent(func(ppid int) error {
				p := fmt.Sprintf("/proc/%d/root%s/ronly-probe-viaparent", ppid, t.Dir)
				return openClose(p, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL, 0o644)
			})
		}),
		h("ioprio_set canary (same value)", wantPermSrch, func(t Targets) error {
			const whoProcess = 1
			prio, _, e := unix.RawSyscall(unix.SYS_IOPRIO_GET, whoProcess, uintptr(t.Pid), 0)
			if e != 0 {
				prio = 0
			}
			_, _, e = unix.RawSyscall(unix.SYS_IOPRIO_SET, whoProcess, uintptr(t.Pid), prio)
			return errnoOrNil(e)
		}),
	}
}
