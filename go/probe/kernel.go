package probe

import (
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Kernel-wide calls. Each gets an argument the kernel rejects once past its
// permission check, so that if the sandbox let one through, the kernel
// would still refuse to do anything (EINVAL, EBADF, ENOENT...): only EPERM
// from the sandbox counts as a pass.

// raw makes a system call whose pointer arguments are NUL-terminated
// strings prepared by cstr.
func raw(nr uintptr, args ...uintptr) error {
	var a [6]uintptr
	copy(a[:], args)
	_, _, e := unix.Syscall6(nr, a[0], a[1], a[2], a[3], a[4], a[5])
	return errnoOrNil(e)
}

func rawPath(nr uintptr, path string, args ...uintptr) error {
	p, keep := cstr(path)
	err := raw(nr, append([]uintptr{p}, args...)...)
	runtime.KeepAlive(keep)
	return err
}

func kernelHostile() []Op {
	h := func(name string, run func(t Targets) error) Op {
		return Op{Name: name, Kind: Hostile, Run: run, Want: wantPerm}
	}
	const missing = "/nonexistent/ronly-probe"
	return []Op{
		h("reboot (bad magic)", func(Targets) error {
			return raw(unix.SYS_REBOOT, 0xdeadbeef, 0xdeadbeef, 0, 0)
		}),
		h("kexec_load (bad arch)", func(Targets) error {
			return raw(unix.SYS_KEXEC_LOAD, 0, 0, 0, 0x7fff0000)
		}),
		h("kexec_file_load (bad fds)", func(Targets) error {
			return raw(unix.SYS_KEXEC_FILE_LOAD, ^uintptr(0), ^uintptr(0), 0, 0, 0)
		}),
		h("init_module (empty image)", func(Targets) error {
			p, keep := cstr("")
			err := raw(unix.SYS_INIT_MODULE, 0, 0, p)
			runtime.KeepAlive(keep)
			return err
		}),
		h("finit_module (bad fd)", func(Targets) error {
			p, keep := cstr("")
			err := raw(unix.SYS_FINIT_MODULE, ^uintptr(0), p, 0)
			runtime.KeepAlive(keep)
			return err
		}),
		h("delete_module (no such module)", func(Targets) error {
			return unix.DeleteModule("ronly_probe_no_such_module", unix.O_NONBLOCK)
		}),
		h("swapon (no such file)", func(Targets) error { return rawPath(unix.SYS_SWAPON, missing, 0) }),
		h("swapoff (no such file)", func(Targets) error { return rawPath(unix.SYS_SWAPOFF, missing) }),
		h("acct (no such file)", func(Targets) error { return unix.Acct(missing) }),
		h("clock_settime (invalid value)", func(Targets) error {
			return unix.ClockSettime(unix.CLOCK_REALTIME, &unix.Timespec{Sec: 0, Nsec: 2e9})
		}),
		h("settimeofday (invalid value)", func(Targets) error {
			return unix.Settimeofday(&unix.Timeval{Sec: 0, Usec: 2e6})
		}),
		h("adjtimex (query)", func(Targets) error {
			var tx unix.Timex
			_, err := unix.Adjtimex(&tx)
			return err
		}),
		h("sethostname (same name)", func(Targets) error {
			var u unix.Utsname
			if err := unix.Uname(&u); err != nil {
				return err
			}
			return unix.Sethostname(cbytes(u.Nodename[:]))
		}),
		h("setdomainname (same name)", func(Targets) error {
			var u unix.Utsname
			if err := unix.Uname(&u); err != nil {
				return err
			}
			return unix.Setdomainname(cbytes(u.Domainname[:]))
		}),
		h("syslog READ_ALL", func(Targets) error {
			buf := make([]byte, 4096)
			_, err := unix.Klogctl(unix.SYSLOG_ACTION_READ_ALL, buf)
			return err
		}),
		h("keyctl GET_KEYRING_ID user", func(Targets) error {
			_, err := unix.KeyctlInt(unix.KEYCTL_GET_KEYRING_ID, unix.KEY_SPEC_USER_KEYRING, 0, 0, 0)
			return err
		}),
		h("add_key (invalid keyring)", func(Targets) error {
			_, err := unix.AddKey("user", "ronly-probe", []byte("x"), 0)
			return err
		}),
		h("request_key", func(Targets) error {
			_, err := unix.RequestKey("user", "ronly-probe-no-such-key", "", 0)
			return err
		}),
		h("bpf MAP_CREATE", func(Targets) error {
			attr := [16]uint32{unix.BPF_MAP_TYPE_ARRAY, 4, 4, 1}
			r, _, e := unix.Syscall(unix.SYS_BPF, unix.BPF_MAP_CREATE, uintptr(unsafe.Pointer(&attr)), unsafe.Sizeof(attr))
			if e == 0 {
				unix.Close(int(r))
			}
			return errnoOrNil(e)
		}),
		{Name: "perf_event_open system-wide", Kind: Hostile, Want: []unix.Errno{unix.EPERM, unix.EACCES}, Run: func(Targets) error {
			attr := unix.PerfEventAttr{Type: unix.PERF_TYPE_SOFTWARE, Config: unix.PERF_COUNT_SW_CPU_CLOCK}
			attr.Size = uint32(unsafe.Sizeof(attr))
			fd, err := unix.PerfEventOpen(&attr, -1, 0, -1, unix.PERF_FLAG_FD_CLOEXEC)
			if err != nil {
				return err
			}
			return unix.Close(fd)
		}},
		h("userfaultfd", func(Targets) error {
			r, _, e := unix.Syscall(unix.SYS_USERFAULTFD, unix.O_CLOEXEC, 0, 0)
			if e == 0 {
				unix.Close(int(r))
			}
			return errnoOrNil(e)
		}),
		h("io_uring_setup", func(Targets) error {
			var params [120]byte
			r, _, e := unix.Syscall(unix.SYS_IO_URING_SETUP, 1, uintptr(unsafe.Pointer(&params)), 0)
			if e == 0 {
				unix.Close(int(r))
			}
			return errnoOrNil(e)
		}),
		h("io_uring_enter (bad fd)", func(Targets) error {
			return raw(unix.SYS_IO_URING_ENTER, ^uintptr(0), 0, 0, 0, 0, 0)
		}),
		h("quotactl (no such device)", func(Targets) error {
			const qGetFmt = 0x800004 // Q_GETFMT
			var fmt uint32
			p, keep := cstr(missing)
			err := raw(unix.SYS_QUOTACTL, qGetFmt<<8, p, 0, uintptr(unsafe.Pointer(&fmt)))
			runtime.KeepAlive(keep)
			return err
		}),
		h("quotactl_fd (bad fd)", func(Targets) error {
			return raw(unix.SYS_QUOTACTL_FD, ^uintptr(0), 0, 0, 0)
		}),
		h("process_madvise canary", func(t Targets) error {
			pfd, err := unix.PidfdOpen(t.Pid, 0)
			if err != nil {
				return err
			}
			defer unix.Close(pfd)
			// An empty vector with an invalid advice: EINVAL were it allowed.
			return raw(unix.SYS_PROCESS_MADVISE, uintptr(pfd), 0, 0, 0xffff, 0)
		}),
		h("iopl(3)", func(Targets) error { return raw(unix.SYS_IOPL, 3) }),
		h("ioperm(0x80)", func(Targets) error { return raw(unix.SYS_IOPERM, 0x80, 1, 1) }),
	}
}

// cbytes is a NUL-terminated C array without its terminator.
func cbytes(a []byte) []byte {
	for i, c := range a {
		if c == 0 {
			return a[:i]
		}
	}
	return a
}
