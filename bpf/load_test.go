package bpf

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	seccomp "github.com/seccomp/libseccomp-golang"
	"golang.org/x/sys/unix"
)

// The behaviour tests re-execute the test binary. The child loads a compiled
// program into the kernel, makes one call, and prints what happened; the
// parent checks it, and runs the same call without a filter as a control so
// a pass cannot come from the kernel refusing the call for another reason.

const (
	childEnv = "RONLY_BPF_TEST_CHILD" // "<filter>:<check>", filter = none|errno|notify|listener
	peerEnv  = "RONLY_BPF_TEST_PEER"  // pid of another process (the test itself)
	outcomeK = "outcome="
)

func TestMain(m *testing.M) {
	if spec := os.Getenv(childEnv); spec != "" {
		os.Exit(childMain(spec))
	}
	os.Exit(m.Run())
}

// load installs prog as a seccomp filter for every thread of the process.
func load(prog []byte, flags uintptr) (uintptr, error) {
	ins := decode(prog)
	filter := make([]unix.SockFilter, len(ins))
	for i, in := range ins {
		filter[i] = unix.SockFilter{Code: in.code, Jt: in.jt, Jf: in.jf, K: in.k}
	}
	fprog := unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return 0, fmt.Errorf("PR_SET_NO_NEW_PRIVS: %w", err)
	}
	r, _, e := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER,
		unix.SECCOMP_FILTER_FLAG_TSYNC|flags, uintptr(unsafe.Pointer(&fprog)))
	runtime.KeepAlive(filter)
	if e != 0 {
		return 0, fmt.Errorf("seccomp(SET_MODE_FILTER): %w", e)
	}
	return r, nil
}

func childMain(spec string) int {
	filter, check, _ := strings.Cut(spec, ":")
	runtime.LockOSThread()
	fail := func(err error) int {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 2
	}
	switch filter {
	case "none":
	case "errno", "notify":
		mode := ModeErrno
		if filter == "notify" {
			mode = ModeNotify
		}
		prog, err := Program(mode)
		if err != nil {
			return fail(err)
		}
		if _, err := load(prog, 0); err != nil {
			return fail(err)
		}
	case "listener":
		return listenerChild()
	default:
		return fail(fmt.Errorf("unknown filter %q", filter))
	}
	fn, ok := checks[check]
	if !ok {
		return fail(fmt.Errorf("unknown check %q", check))
	}
	fmt.Printf("%s%s\n", outcomeK, outcome(fn()))
	return 0
}

func outcome(e syscall.Errno) string {
	if e == 0 {
		return "ok"
	}
	return errnoName(e)
}

func peer() int {
	pid, _ := strconv.Atoi(os.Getenv(peerEnv))
	return pid
}

func sys(nr uintptr, args ...uintptr) syscall.Errno {
	var a [6]uintptr
	copy(a[:], args)
	_, _, e := unix.Syscall6(nr, a[0], a[1], a[2], a[3], a[4], a[5])
	return e
}

func ptr[T any](p *T) uintptr { return uintptr(unsafe.Pointer(p)) }

func cstr(s string) uintptr {
	p, _ := unix.BytePtrFromString(s)
	return ptr(p)
}

// pty opens a pseudo-terminal pair and returns the replica (slave) side.
func pty() (int, error) {
	m, err := unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	if err := unix.IoctlSetPointerInt(m, unix.TIOCSPTLCK, 0); err != nil {
		return -1, err
	}
	n, err := unix.IoctlGetInt(m, unix.TIOCGPTN)
	if err != nil {
		return -1, err
	}
	return unix.Open(fmt.Sprintf("/dev/pts/%d", n), unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
}

func ttyIoctl(req uintptr) syscall.Errno {
	fd, err := pty()
	if err != nil {
		return errnoOf(err)
	}
	c := byte('x')
	return sys(unix.SYS_IOCTL, uintptr(fd), req, ptr(&c))
}

func errnoOf(err error) syscall.Errno {
	if err == nil {
		return 0
	}
	var e syscall.Errno
	if errors.As(err, &e) {
		return e
	}
	fmt.Fprintln(os.Stderr, "child:", err)
	return syscall.Errno(4095)
}

// i386Getpid makes getpid through the i386 entry point, int 0x80, from
// machine code in an executable page: Go has no way to emit the instruction.
func i386Getpid() syscall.Errno {
	code := []byte{
		0xb8, 20, 0, 0, 0, // mov eax, 20 (i386 getpid)
		0xcd, 0x80, // int 0x80
		0xc3, // ret
	}
	mem, err := unix.Mmap(-1, 0, unix.Getpagesize(), unix.PROT_READ|unix.PROT_WRITE|unix.PROT_EXEC,
		unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return errnoOf(err)
	}
	copy(mem, code)
	// Where the kernel has no i386 entry (booted with ia32_emulation=0),
	// int 0x80 faults. Go's handler would turn that fault into a fatal
	// error and exit status 2; with the default action the kernel kills
	// the child with SIGSEGV, which the parent tells apart from SIGSYS.
	// struct kernel_sigaction {handler, flags, restorer, mask}: all zero is SIG_DFL.
	var dfl [4]uint64
	if _, _, e := unix.RawSyscall6(unix.SYS_RT_SIGACTION, uintptr(unix.SIGSEGV), uintptr(unsafe.Pointer(&dfl)), 0, 8, 0, 0); e != 0 {
		return e
	}
	entry := uintptr(unsafe.Pointer(&mem[0]))
	fv := &entry // a Go func value points at a word holding the code address
	call := *(*func())(unsafe.Pointer(&fv))
	call()
	return 0
}

// traceChild traces a real child the way a debugger does: reading its
// registers and memory works, writing the same values back is refused. It
// returns the outcome of the writes (both must agree), or of the first read
// that failed.
func traceChild() syscall.Errno {
	cmd := exec.Command("/bin/true")
	cmd.SysProcAttr = &syscall.SysProcAttr{Ptrace: true} // stops at exec
	if err := cmd.Start(); err != nil {
		return errnoOf(err)
	}
	defer cmd.Wait()
	pid := cmd.Process.Pid
	var ws unix.WaitStatus
	if _, err := unix.Wait4(pid, &ws, 0, nil); err != nil {
		return errnoOf(err)
	}
	if !ws.Stopped() {
		fmt.Fprintln(os.Stderr, "child: tracee not stopped:", ws)
		return syscall.Errno(4095)
	}
	defer unix.PtraceCont(pid, 0)
	var regs unix.PtraceRegs
	if err := unix.PtraceGetRegs(pid, &regs); err != nil {
		return errnoOf(err)
	}
	word := make([]byte, 8)
	if _, err := unix.PtracePeekData(pid, uintptr(regs.Rip), word); err != nil {
		return errnoOf(err)
	}
	_, poke := unix.PtracePokeData(pid, uintptr(regs.Rip), word)
	set := unix.PtraceSetRegs(pid, &regs)
	if errnoOf(poke) != errnoOf(set) {
		fmt.Fprintln(os.Stderr, "child: POKEDATA:", poke, "SETREGS:", set)
		return syscall.Errno(4095)
	}
	return errnoOf(poke)
}

// cloneNew calls clone with a namespace flag plus CLONE_SIGHAND without
// CLONE_VM, which the kernel refuses with EINVAL: without the filter the
// call fails harmlessly instead of forking the test.
func cloneNew(flag uintptr) func() syscall.Errno {
	return func() syscall.Errno {
		return sys(unix.SYS_CLONE, flag|unix.CLONE_SIGHAND, 0, 0, 0, 0)
	}
}

func unshare(flags uintptr) func() syscall.Errno {
	return func() syscall.Errno { return sys(unix.SYS_UNSHARE, flags) }
}

func runCmd(name string, args ...string) syscall.Errno {
	cmd := exec.Command(name, args...)
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		return errnoOf(err)
	}
	return 0
}

var checks = map[string]func() syscall.Errno{
	"getpid": func() syscall.Errno { return sys(unix.SYS_GETPID) },
	"mount": func() syscall.Errno {
		return sys(unix.SYS_MOUNT, cstr("none"), cstr("/nonexistent-ronly-bpf"), cstr("tmpfs"), 0, 0)
	},
	"umount2":        func() syscall.Errno { return sys(unix.SYS_UMOUNT2, cstr("/nonexistent-ronly-bpf"), 0) },
	"mount_setattr":  func() syscall.Errno { return sys(unix.SYS_MOUNT_SETATTR, ^uintptr(0), cstr(""), 0, 0, 0) },
	"open_tree":      func() syscall.Errno { return sys(unix.SYS_OPEN_TREE, ^uintptr(0), cstr(""), 0) },
	"fsopen":         func() syscall.Errno { return sys(unix.SYS_FSOPEN, cstr("nosuchfs"), 0) },
	"open_tree_attr": func() syscall.Errno { return sys(467, ^uintptr(0), cstr(""), 0, 0, 0) },
	"quotactl_fd":    func() syscall.Errno { return sys(443, ^uintptr(0), 0, 0, 0) },
	"setns":          func() syscall.Errno { return sys(unix.SYS_SETNS, ^uintptr(0), 0) },
	"chroot":         func() syscall.Errno { return sys(unix.SYS_CHROOT, cstr("/nonexistent-ronly-bpf")) },

	"unshare_newuser": unshare(unix.CLONE_NEWUSER),
	"unshare_newns":   unshare(unix.CLONE_NEWNS),
	"unshare_newnet":  unshare(unix.CLONE_NEWNET),
	"unshare_newtime": unshare(unix.CLONE_NEWTIME),
	"unshare_fs":      unshare(unix.CLONE_FS),
	"unshare_files":   unshare(unix.CLONE_FILES),
	"clone_newuser":   cloneNew(unix.CLONE_NEWUSER),
	"clone_newns":     cloneNew(unix.CLONE_NEWNS),
	"clone_newpid":    cloneNew(unix.CLONE_NEWPID),
	"clone_newnet":    cloneNew(unix.CLONE_NEWNET),
	"clone_newuts":    cloneNew(unix.CLONE_NEWUTS),
	"clone_newipc":    cloneNew(unix.CLONE_NEWIPC),
	"clone_newcgroup": cloneNew(unix.CLONE_NEWCGROUP),
	"clone3":          func() syscall.Errno { return sys(unix.SYS_CLONE3, 0, 0) },
	// Forks and threads must keep working: Go's os/exec uses clone, glibc's
	// pthread_create (behind the Go runtime's threads in a cgo binary) tries
	// clone3 first and falls back to clone on ENOSYS.
	"exec_go": func() syscall.Errno { return runCmd("/bin/true") },
	"exec_sh": func() syscall.Errno { return runCmd("/bin/sh", "-c", "/bin/true && (/bin/true) | /bin/cat") },
	"threads": func() syscall.Errno {
		var wg sync.WaitGroup
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				runtime.LockOSThread() // keeps the thread: forces new ones
				time.Sleep(50 * time.Millisecond)
			}()
		}
		wg.Wait()
		return 0
	},

	"tiocsti":      func() syscall.Errno { return ttyIoctl(unix.TIOCSTI) },
	"tiocsti_high": func() syscall.Errno { return ttyIoctl(1<<32 | unix.TIOCSTI) },
	"tioclinux":    func() syscall.Errno { return ttyIoctl(unix.TIOCLINUX) },
	"tcgets": func() syscall.Errno {
		fd, err := pty()
		if err != nil {
			return errnoOf(err)
		}
		var t unix.Termios
		return sys(unix.SYS_IOCTL, uintptr(fd), unix.TCGETS, ptr(&t))
	},

	"prlimit_other_get": func() syscall.Errno {
		var old unix.Rlimit
		return sys(unix.SYS_PRLIMIT64, uintptr(peer()), unix.RLIMIT_NOFILE, 0, ptr(&old))
	},
	"prlimit_other_set": func() syscall.Errno {
		var cur unix.Rlimit // sets the peer's limit to what it is already
		if e := sys(unix.SYS_PRLIMIT64, uintptr(peer()), unix.RLIMIT_NOFILE, 0, ptr(&cur)); e != 0 {
			return e
		}
		return sys(unix.SYS_PRLIMIT64, uintptr(peer()), unix.RLIMIT_NOFILE, ptr(&cur), 0)
	},
	"prlimit_self": func() syscall.Errno {
		var cur unix.Rlimit
		if e := sys(unix.SYS_PRLIMIT64, 0, unix.RLIMIT_NOFILE, 0, ptr(&cur)); e != 0 {
			return e
		}
		return sys(unix.SYS_PRLIMIT64, 0, unix.RLIMIT_NOFILE, ptr(&cur), 0)
	},
	// The peer is not traced by the child: read requests fail with ESRCH
	// (allowed through), write requests are refused before that.
	"ptrace_peekdata":      func() syscall.Errno { return sys(unix.SYS_PTRACE, unix.PTRACE_PEEKDATA, uintptr(peer()), 0, 0) },
	"ptrace_pokedata":      func() syscall.Errno { return sys(unix.SYS_PTRACE, unix.PTRACE_POKEDATA, uintptr(peer()), 0, 0) },
	"ptrace_pokedata_high": func() syscall.Errno { return sys(unix.SYS_PTRACE, 1<<32|unix.PTRACE_POKEDATA, uintptr(peer()), 0, 0) },
	"ptrace_setregset":     func() syscall.Errno { return sys(unix.SYS_PTRACE, unix.PTRACE_SETREGSET, uintptr(peer()), 0, 0) },
	"ptrace_tracee":        traceChild,
	"process_vm_writev":    func() syscall.Errno { return sys(unix.SYS_PROCESS_VM_WRITEV, uintptr(peer()), 0, 0, 0, 0, 0) },
	"pidfd_getfd":          func() syscall.Errno { return sys(unix.SYS_PIDFD_GETFD, ^uintptr(0), 0, 0) },
	"rt_sigqueueinfo": func() syscall.Errno {
		// Signal 0: only the permission checks run. si_code SI_QUEUE (-1):
		// the kernel itself refuses si_code >= 0 for other processes.
		var info [128]byte
		*(*int32)(unsafe.Pointer(&info[8])) = -1
		return sys(unix.SYS_RT_SIGQUEUEINFO, uintptr(peer()), 0, ptr(&info))
	},
	"setpriority_self": func() syscall.Errno { return sys(unix.SYS_SETPRIORITY, unix.PRIO_PROCESS, 0, 0) },
	"setpriority_other": func() syscall.Errno {
		return sys(unix.SYS_SETPRIORITY, unix.PRIO_PROCESS, uintptr(peer()), 0)
	},
	"sched_setaffinity_other": func() syscall.Errno {
		var set unix.CPUSet // the peer's own mask, unchanged
		if err := unix.SchedGetaffinity(peer(), &set); err != nil {
			return errnoOf(err)
		}
		return sys(unix.SYS_SCHED_SETAFFINITY, uintptr(peer()), unsafe.Sizeof(set), ptr(&set))
	},
	"sched_setaffinity_self": func() syscall.Errno {
		var set unix.CPUSet
		if err := unix.SchedGetaffinity(0, &set); err != nil {
			return errnoOf(err)
		}
		return sys(unix.SYS_SCHED_SETAFFINITY, 0, unsafe.Sizeof(set), ptr(&set))
	},

	// Set-id modes. Each check makes its own file in a fresh directory and
	// removes it again; unfiltered, root may set the bits on its own file.
	"chmod_setuid":     inScratch(func(d string) syscall.Errno { return sys(unix.SYS_CHMOD, cstr(touch(d)), 0o4755) }),
	"chmod_plain":      inScratch(func(d string) syscall.Errno { return sys(unix.SYS_CHMOD, cstr(touch(d)), 0o1755) }),
	"fchmodat_setgid":  inScratch(func(d string) syscall.Errno { return sys(unix.SYS_FCHMODAT, ^uintptr(99), cstr(touch(d)), 0o2755) }),
	"fchmodat2_setuid": inScratch(func(d string) syscall.Errno { return sys(452, ^uintptr(99), cstr(touch(d)), 0o4755, 0) }),
	"fchmod_setgid": inScratch(func(d string) syscall.Errno {
		fd, err := unix.Open(touch(d), unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return errnoOf(err)
		}
		defer unix.Close(fd)
		return sys(unix.SYS_FCHMOD, uintptr(fd), 0o2711)
	}),
	"open_creat_setuid": inScratch(func(d string) syscall.Errno {
		return closeFd(sys3(unix.SYS_OPEN, cstr(d+"/new"), unix.O_WRONLY|unix.O_CREAT|unix.O_CLOEXEC, 0o4755))
	}),
	"openat_creat_plain": inScratch(func(d string) syscall.Errno {
		return closeFd(sys4(unix.SYS_OPENAT, ^uintptr(99), cstr(d+"/new"), unix.O_WRONLY|unix.O_CREAT|unix.O_CLOEXEC, 0o755))
	}),
	"openat_tmpfile_setgid": inScratch(func(d string) syscall.Errno {
		return closeFd(sys4(unix.SYS_OPENAT, ^uintptr(99), cstr(d), unix.O_WRONLY|unix.O_TMPFILE|unix.O_CLOEXEC, 0o2755))
	}),
	"creat_setuid": inScratch(func(d string) syscall.Errno {
		return closeFd(sys3(unix.SYS_CREAT, cstr(d+"/new"), 0o4755, 0))
	}),
	"mknod_reg_setuid": inScratch(func(d string) syscall.Errno { return sys(unix.SYS_MKNOD, cstr(d+"/new"), unix.S_IFREG|0o4755, 0) }),
	"mknodat_fifo": inScratch(func(d string) syscall.Errno {
		return sys(unix.SYS_MKNODAT, ^uintptr(99), cstr(d+"/new"), unix.S_IFIFO|0o644, 0)
	}),
	"mkdir_setgid": inScratch(func(d string) syscall.Errno { return sys(unix.SYS_MKDIR, cstr(d+"/new"), 0o2775) }),
	"openat2": inScratch(func(d string) syscall.Errno {
		how := unix.OpenHow{Flags: unix.O_RDONLY | unix.O_CLOEXEC}
		return closeFd(sys4(unix.SYS_OPENAT2, ^uintptr(99), cstr(d), ptr(&how), unsafe.Sizeof(how)))
	}),
	// Scheduling calls on the process group or the user: never run
	// unfiltered (they would renice the test's host processes).
	"setpriority_pgrp": func() syscall.Errno { return sys(unix.SYS_SETPRIORITY, unix.PRIO_PGRP, 0, 19) },
	"setpriority_user": func() syscall.Errno { return sys(unix.SYS_SETPRIORITY, unix.PRIO_USER, 0, 19) },
	"ioprio_set_user": func() syscall.Errno {
		return sys(unix.SYS_IOPRIO_SET, 3 /* IOPRIO_WHO_USER */, 0, 3<<13 /* IOPRIO_CLASS_IDLE */)
	},
	"ioprio_set_self": func() syscall.Errno {
		return sys(unix.SYS_IOPRIO_SET, 1 /* IOPRIO_WHO_PROCESS */, 0, 2<<13|4 /* best effort, level 4 */)
	},
	"setsockopt_reuseport": func() syscall.Errno { return setsockoptInt(unix.SOL_SOCKET, unix.SO_REUSEPORT) },
	"setsockopt_reuseaddr": func() syscall.Errno { return setsockoptInt(unix.SOL_SOCKET, unix.SO_REUSEADDR) },

	"setxattr_user": inScratch(func(d string) syscall.Errno {
		v := []byte("1")
		return sys(unix.SYS_SETXATTR, cstr(touch(d)), cstr("user.ronly"), ptr(&v[0]), 1, 0)
	}),

	"keyctl": func() syscall.Errno {
		return sys(unix.SYS_KEYCTL, unix.KEYCTL_GET_KEYRING_ID, uintptr(unix.KEY_SPEC_USER_KEYRING&0xffffffff), 0)
	},
	"io_uring_setup": func() syscall.Errno {
		var params [120]byte
		r, _, e := unix.Syscall(unix.SYS_IO_URING_SETUP, 1, ptr(&params), 0)
		if e == 0 {
			unix.Close(int(r))
		}
		return e
	},
	"userfaultfd":       func() syscall.Errno { return sys(unix.SYS_USERFAULTFD, unix.O_CLOEXEC) },
	"syslog":            func() syscall.Errno { return sys(unix.SYS_SYSLOG, 10, 0, 0) },   // SYSLOG_ACTION_SIZE_BUFFER
	"reboot":            func() syscall.Errno { return sys(unix.SYS_REBOOT, 0, 0, 0, 0) }, // bad magic
	"bpf":               func() syscall.Errno { return sys(unix.SYS_BPF, 0, 0, 0) },
	"perf_event_open":   func() syscall.Errno { return sys(unix.SYS_PERF_EVENT_OPEN, 0, 0, ^uintptr(0), ^uintptr(0), 0) },
	"open_by_handle_at": func() syscall.Errno { return sys(unix.SYS_OPEN_BY_HANDLE_AT, ^uintptr(0), 0, 0) },
	"clock_settime": func() syscall.Errno {
		ts := unix.Timespec{Sec: 0, Nsec: 2e9} // invalid: the kernel refuses it
		return sys(unix.SYS_CLOCK_SETTIME, unix.CLOCK_REALTIME, ptr(&ts))
	},

	"x32_getpid":  func() syscall.Errno { return sys(unix.SYS_GETPID | 0x40000000) },
	"i386_getpid": i386Getpid,
}

// inScratch runs f on a fresh directory that is removed afterwards.
func inScratch(f func(dir string) syscall.Errno) func() syscall.Errno {
	return func() syscall.Errno {
		d, err := os.MkdirTemp("", "ronly-bpf-test-")
		if err != nil {
			return errnoOf(err)
		}
		defer os.RemoveAll(d)
		return f(d)
	}
}

// touch makes a plain file in dir and returns its path.
func touch(dir string) string {
	p := dir + "/f"
	if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
	}
	return p
}

func sys3(nr, a, b, c uintptr) (uintptr, syscall.Errno) {
	r, _, e := unix.Syscall(nr, a, b, c)
	return r, e
}

func sys4(nr, a, b, c, d uintptr) (uintptr, syscall.Errno) {
	r, _, e := unix.Syscall6(nr, a, b, c, d, 0, 0)
	return r, e
}

// closeFd closes the descriptor a successful open returned.
func closeFd(fd uintptr, e syscall.Errno) syscall.Errno {
	if e == 0 {
		unix.Close(int(fd))
	}
	return e
}

func setsockoptInt(level, opt int) syscall.Errno {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return errnoOf(err)
	}
	defer unix.Close(fd)
	one := int32(1)
	return sys(unix.SYS_SETSOCKOPT, uintptr(fd), uintptr(level), uintptr(opt), ptr(&one), 4)
}

// spawn runs the test binary as a child with the given filter and check and
// returns its outcome: "ok", an errno name, or "killed:SIGNAME".
func spawn(t *testing.T, filter, check string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+filter+":"+check, peerEnv+"="+strconv.Itoa(os.Getpid()))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	// A private mount namespace (Go makes / recursively private in it), so
	// that even a broken filter cannot mount anything on the host.
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS, Pdeathsig: syscall.SIGKILL}
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("%s:%s timed out; stderr: %s", filter, check, stderr.String())
	}
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		if ws, ok := exit.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return "killed:" + unix.SignalName(ws.Signal())
		}
	}
	if err != nil {
		t.Fatalf("%s:%s: %v; stderr: %s", filter, check, err, stderr.String())
	}
	for _, line := range strings.Split(stdout.String(), "\n") {
		if v, ok := strings.CutPrefix(line, outcomeK); ok {
			return v
		}
	}
	t.Fatalf("%s:%s printed no outcome; stdout %q stderr %q", filter, check, stdout.String(), stderr.String())
	return ""
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("the kernel behaviour tests need root (the controls compare with what root may do unfiltered); " +
			"the development machine and CI run them as root")
	}
}

type control int

const (
	differs   control = iota // unfiltered the call gets another outcome: the filter made the difference
	same                     // allowed: unfiltered the outcome is the same
	noControl                // unfiltered the call would change the host for real
)

func TestKernelEnforcesPolicy(t *testing.T) {
	requireRoot(t)
	cases := []struct {
		check string
		want  string
		ctl   control
	}{
		{"getpid", "ok", same},
		{"mount", "EPERM", differs},
		{"umount2", "EPERM", differs},
		{"mount_setattr", "EPERM", differs},
		{"open_tree", "EPERM", differs},
		{"fsopen", "EPERM", differs},
		{"open_tree_attr", "EPERM", differs},
		{"quotactl_fd", "EPERM", differs},
		{"setns", "EPERM", differs},
		{"chroot", "EPERM", differs},
		{"unshare_newuser", "EPERM", differs},
		{"unshare_newns", "EPERM", differs},
		{"unshare_newnet", "EPERM", differs},
		{"unshare_newtime", "EPERM", differs},
		{"unshare_fs", "ok", same},
		{"unshare_files", "ok", same},
		{"clone_newuser", "EPERM", differs},
		{"clone_newns", "EPERM", differs},
		{"clone_newpid", "EPERM", differs},
		{"clone_newnet", "EPERM", differs},
		{"clone_newuts", "EPERM", differs},
		{"clone_newipc", "EPERM", differs},
		{"clone_newcgroup", "EPERM", differs},
		{"clone3", "ENOSYS", differs},
		{"exec_go", "ok", same},
		{"exec_sh", "ok", same},
		{"threads", "ok", same},
		{"tiocsti", "EPERM", differs},
		{"tiocsti_high", "EPERM", differs},
		{"tioclinux", "EPERM", differs},
		{"tcgets", "ok", same},
		{"prlimit_other_get", "ok", same},
		{"prlimit_other_set", "EPERM", differs},
		{"prlimit_self", "ok", same},
		{"ptrace_peekdata", "ESRCH", same},
		{"ptrace_pokedata", "EPERM", differs},
		{"ptrace_pokedata_high", "EPERM", differs},
		{"ptrace_setregset", "EPERM", differs},
		{"ptrace_tracee", "EPERM", differs},
		{"process_vm_writev", "EPERM", differs},
		{"pidfd_getfd", "EPERM", differs},
		{"rt_sigqueueinfo", "EPERM", differs},
		{"setpriority_self", "ok", same},
		{"setpriority_other", "EPERM", noControl},
		{"sched_setaffinity_self", "ok", same},
		{"sched_setaffinity_other", "EPERM", noControl},
		{"chmod_setuid", "EPERM", differs},
		{"chmod_plain", "ok", same},
		{"fchmodat_setgid", "EPERM", differs},
		{"fchmodat2_setuid", "EPERM", differs},
		{"fchmod_setgid", "EPERM", differs},
		{"open_creat_setuid", "EPERM", differs},
		{"openat_creat_plain", "ok", same},
		{"openat_tmpfile_setgid", "EPERM", differs},
		{"creat_setuid", "EPERM", differs},
		{"mknod_reg_setuid", "EPERM", differs},
		{"mknodat_fifo", "ok", same},
		{"mkdir_setgid", "EPERM", differs},
		{"openat2", "ENOSYS", differs},
		{"setpriority_pgrp", "EPERM", noControl},
		{"setpriority_user", "EPERM", noControl},
		{"ioprio_set_user", "EPERM", noControl},
		{"ioprio_set_self", "ok", same},
		{"setsockopt_reuseport", "EPERM", differs},
		{"setsockopt_reuseaddr", "ok", same},
		{"keyctl", "EPERM", differs},
		{"io_uring_setup", "EPERM", differs},
		{"userfaultfd", "EPERM", differs},
		{"syslog", "EPERM", differs},
		{"reboot", "EPERM", differs},
		{"bpf", "EPERM", differs},
		{"perf_event_open", "EPERM", differs},
		{"open_by_handle_at", "EPERM", differs},
		{"clock_settime", "EPERM", differs},
		{"x32_getpid", "killed:SIGSYS", differs},
		{"i386_getpid", "killed:SIGSYS", differs},
	}
	for _, c := range cases {
		if _, ok := checks[c.check]; !ok {
			t.Fatalf("no check %q", c.check)
		}
		t.Run(c.check, func(t *testing.T) {
			t.Parallel()
			plain := ""
			if c.ctl != noControl {
				plain = spawn(t, "none", c.check)
				if c.check == "i386_getpid" && plain == "killed:SIGSEGV" {
					// Booted with ia32_emulation=0: int 0x80 faults before
					// reaching any syscall entry, so there is nothing to filter.
					t.Logf("this kernel has no i386 syscall entry (unfiltered: %s)", plain)
					return
				}
			}
			got := spawn(t, "errno", c.check)
			if got != c.want {
				t.Errorf("with the filter: %s, want %s", got, c.want)
			}
			// In notify mode without a listener the kernel answers notified
			// calls with ENOSYS; allowed calls, quiet rules and other ABIs
			// behave exactly as in errno mode.
			wantNotify := c.want
			if c.want == "EPERM" {
				wantNotify = "ENOSYS"
			}
			if got := spawn(t, "notify", c.check); got != wantNotify {
				t.Errorf("with the notify filter and no listener: %s, want %s", got, wantNotify)
			}
			if c.ctl == noControl {
				return
			}
			t.Logf("filtered %s, unfiltered %s", got, plain)
			switch {
			case c.ctl == differs && plain == c.want:
				t.Errorf("without the filter the call also gets %s: the test proves nothing", plain)
			case c.ctl == same && plain != c.want:
				t.Errorf("without the filter: %s, want %s", plain, c.want)
			}
		})
	}
}

// listenerChild loads the notify program with a listener fd, makes refused
// calls from another thread, and answers them the way the supervisor will:
// the errno from the table, never allowing the call.
func listenerChild() int {
	prog, err := Program(ModeNotify)
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 2
	}
	fd, err := load(prog, unix.SECCOMP_FILTER_FLAG_NEW_LISTENER|unix.SECCOMP_FILTER_FLAG_TSYNC_ESRCH)
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 2
	}
	tab, err := DefaultTable()
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 2
	}
	// Quiet rules are answered by the kernel: this must not block.
	fmt.Printf("clone3=%s\n", outcome(checks["clone3"]()))

	calls := []string{"mount", "tiocsti_high", "prlimit_other_set", "open_tree_attr"}
	results := make(chan string, len(calls))
	go func() {
		runtime.LockOSThread()
		for _, c := range calls {
			results <- c + "=" + outcome(checks[c]())
		}
	}()
	for range calls {
		req, err := seccomp.NotifReceive(seccomp.ScmpFd(fd))
		if err != nil {
			fmt.Fprintln(os.Stderr, "child: receive:", err)
			return 2
		}
		nr := int(req.Data.Syscall)
		entry, ok := tab[nr]
		errno := syscall.EPERM
		reason := "not in table"
		if ok {
			errno = entry.Errno
			var args [6]uint64
			copy(args[:], req.Data.Args)
			if r, hit := entry.Match(args); hit {
				reason = r.Reason
			}
		}
		fmt.Printf("notified=%s arch=%s reason=%q\n", SyscallName(nr), req.Data.Arch, reason)
		// libseccomp-golang negates Error itself: a positive errno here.
		// (A negative one would make the call "succeed" with return value
		// errno, without running it.)
		resp := &seccomp.ScmpNotifResp{ID: req.ID, Error: int32(errno)}
		if err := seccomp.NotifRespond(seccomp.ScmpFd(fd), resp); err != nil {
			fmt.Fprintln(os.Stderr, "child: respond:", err)
			return 2
		}
		fmt.Println(<-results)
	}
	return 0
}

func TestNotifyListener(t *testing.T) {
	requireRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"=listener:", peerEnv+"="+strconv.Itoa(os.Getpid()))
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS, Pdeathsig: syscall.SIGKILL}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("child: %v; stdout:\n%s\nstderr:\n%s", err, out, stderr.String())
	}
	got := string(out)
	t.Logf("child:\n%s", got)
	for _, want := range []string{
		"clone3=ENOSYS\n",
		`notified=mount arch=amd64 reason="remount read-write or mount over host paths"`,
		"mount=EPERM\n",
		`notified=ioctl arch=amd64 reason="TIOCSTI: type keystrokes into the terminal for another process"`,
		"tiocsti_high=EPERM\n",
		`notified=prlimit64 arch=amd64 reason="change another process's resource limits"`,
		"prlimit_other_set=EPERM\n",
		"notified=open_tree_attr arch=amd64",
		"open_tree_attr=EPERM\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("child output lacks %q", want)
		}
	}
}

// TestMediatedWithoutSupervisor: a mediated call (setxattr) is allowed by the
// errno program, which has no supervisor to ask, and notified by the notify
// program: without a listener the kernel answers ENOSYS.
func TestMediatedWithoutSupervisor(t *testing.T) {
	requireRoot(t)
	for filter, want := range map[string]string{"none": "ok", "errno": "ok", "notify": "ENOSYS"} {
		if got := spawn(t, filter, "setxattr_user"); got != want {
			t.Errorf("setxattr user.ronly with filter %s: %s, want %s", filter, got, want)
		}
	}
}
