package probe

import (
	"fmt"
	"os/exec"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Scheduling calls reach other processes by pid, process group or user:
// PRIO_PGRP and PRIO_USER with who 0 mean "my process group" and "my
// user", which hold host processes too (the supervisor's group; every
// process of root, or of the user). The canary process is the target by
// pid; the caller checks its scheduling state from outside (SchedState).
//
// Harmless if they get through: the group and user operations set the
// lowest nice value already there (getpriority of the same set), so no
// process's nice value goes up, and lowering one needs CAP_SYS_NICE,
// which the sandbox has dropped (the kernel answers EACCES for those). The
// ioprio_set ones pass a value the kernel rejects (EINVAL) before it
// touches any process.

const (
	ioprioWhoProcess = 1
	ioprioWhoPgrp    = 2
	ioprioWhoUser    = 3
	// IOPRIO_CLASS_NONE with level 1: invalid, the kernel answers EINVAL.
	ioprioInvalid = 1
)

// setpriorityGroup calls setpriority(which, 0, n) with n the lowest nice
// value among the processes it addresses. The call going through at all,
// whatever it then answers, is the breach.
func setpriorityGroup(which int, what string) error {
	prio, err := unix.Getpriority(which, 0)
	if err != nil {
		return fmt.Errorf("setup: getpriority: %w", err)
	}
	lowest := 20 - prio // the raw call answers 20-nice
	_, _, e := unix.Syscall(unix.SYS_SETPRIORITY, uintptr(which), 0, uintptr(lowest))
	if e == unix.EPERM {
		return e
	}
	return breach("setpriority(%s, 0, %d) reached the processes (%v)", what, lowest, errnoOrNil(e))
}

// ioprioGroup calls ioprio_set(which, 0, invalid): EINVAL means the call
// reached the kernel's checks.
func ioprioGroup(which int, what string) error {
	_, _, e := unix.Syscall(unix.SYS_IOPRIO_SET, uintptr(which), 0, ioprioInvalid)
	if e == unix.EINVAL {
		return breach("ioprio_set(%s, 0) reached the kernel's argument check (EINVAL)", what)
	}
	return errnoOrNil(e)
}

func schedHostile() []Op {
	h := func(name string, want []unix.Errno, run func(t Targets) error) Op {
		return Op{Name: name, Kind: Hostile, Run: run, Want: want}
	}
	return []Op{
		h("setpriority PRIO_USER 0 (my user, host processes too)", wantPerm, func(Targets) error {
			return setpriorityGroup(unix.PRIO_USER, "PRIO_USER")
		}),
		h("setpriority PRIO_PGRP 0 (my process group)", wantPerm, func(Targets) error {
			return setpriorityGroup(unix.PRIO_PGRP, "PRIO_PGRP")
		}),
		h("ioprio_set IOPRIO_WHO_USER 0", wantPerm, func(Targets) error { return ioprioGroup(ioprioWhoUser, "IOPRIO_WHO_USER") }),
		h("ioprio_set IOPRIO_WHO_PGRP 0", wantPerm, func(Targets) error { return ioprioGroup(ioprioWhoPgrp, "IOPRIO_WHO_PGRP") }),
		h("sched_setparam canary (same value)", wantPermSrch, func(t Targets) error {
			var param [1]int32
			if _, _, e := unix.Syscall(unix.SYS_SCHED_GETPARAM, uintptr(t.Pid), uintptr(unsafe.Pointer(&param[0])), 0); e != 0 {
				return e
			}
			_, _, e := unix.Syscall(unix.SYS_SCHED_SETPARAM, uintptr(t.Pid), uintptr(unsafe.Pointer(&param[0])), 0)
			return errnoOrNil(e)
		}),
		h("sched_setattr canary (same value)", wantPermSrch, func(t Targets) error {
			attr, err := unix.SchedGetAttr(t.Pid, 0)
			if err != nil {
				return err
			}
			return unix.SchedSetAttr(t.Pid, attr, 0)
		}),
		h("SO_REUSEPORT on a host listener's port", wantPerm, func(t Targets) error {
			if t.ReusePort == 0 {
				return skip("no SO_REUSEPORT canary listener")
			}
			fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				return fmt.Errorf("setup: %w", err)
			}
			defer unix.Close(fd)
			if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); err != nil {
				return err
			}
			if err := unix.Bind(fd, &unix.SockaddrInet4{Port: t.ReusePort, Addr: [4]byte{127, 0, 0, 1}}); err != nil {
				return err
			}
			if err := unix.Listen(fd, 1); err != nil {
				return err
			}
			return breach("listening on 127.0.0.1:%d beside the host's listener", t.ReusePort)
		}),
	}
}

// runTool runs an everyday command line, if the tool is installed.
func runTool(name string, args ...string) error {
	path, err := exec.LookPath(name)
	if err != nil {
		return skip("%s is not installed", name)
	}
	out, err := exec.Command(path, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %q: %v: %s", name, args, err, out)
	}
	return nil
}

func schedEveryday() []Op {
	e := func(name string, run func(t Targets) error) Op { return Op{Name: name, Kind: Everyday, Run: run} }
	return []Op{
		e("nice -n 5 true", func(Targets) error { return runTool("nice", "-n", "5", "true") }),
		e("ionice -c3 true", func(Targets) error { return runTool("ionice", "-c3", "true") }),
		e("taskset -c 0 true", func(Targets) error { return runTool("taskset", "-c", "0", "true") }),
		// 19, the lowest priority: allowed from any nice value the
		// runner started with (a lower one would need CAP_SYS_NICE).
		e("renice -p 0 (self)", func(Targets) error { return runTool("renice", "-n", "19", "-p", "0") }),
		e("renice and taskset -p of self by own pid", func(Targets) error {
			if err := runTool("sh", "-c", "exec renice -n 19 -p $$"); err != nil {
				return err
			}
			return runTool("sh", "-c", "exec taskset -p 1 $$")
		}),
		e("sched_setaffinity own thread id", func(Targets) error {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			var set unix.CPUSet
			if err := unix.SchedGetaffinity(0, &set); err != nil {
				return err
			}
			return unix.SchedSetaffinity(unix.Gettid(), &set)
		}),
		e("prlimit own pid (same value)", func(Targets) error {
			var lim unix.Rlimit
			if err := unix.Prlimit(unix.Getpid(), unix.RLIMIT_NOFILE, nil, &lim); err != nil {
				return err
			}
			return unix.Prlimit(unix.Getpid(), unix.RLIMIT_NOFILE, &lim, nil)
		}),
		e("ioprio_set self (idle, in a child)", func(Targets) error {
			return inChild(sysCall{nr: unix.SYS_IOPRIO_SET, args: [6]uintptr{ioprioWhoProcess, 0, 3 << 13}})
		}),
		e("TCP listener on a free port of 127.0.0.1", func(Targets) error {
			l, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				return err
			}
			defer unix.Close(l)
			if err := unix.SetsockoptInt(l, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
				return err
			}
			if err := unix.Bind(l, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
				return err
			}
			if err := unix.Listen(l, 1); err != nil {
				return err
			}
			sa, err := unix.Getsockname(l)
			if err != nil {
				return err
			}
			c, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				return err
			}
			defer unix.Close(c)
			return unix.Connect(c, sa)
		}),
	}
}
