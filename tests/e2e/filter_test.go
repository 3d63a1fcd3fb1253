package e2e

import (
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// envFilter selects, in this test binary re-executed by underFilter, the
// seccomp filter it installs before it execs the rest of its arguments.
const envFilter = "RONLY_E2E_FILTER"

// Filters an outer sandbox may have installed before ronly starts.
var filters = map[string]struct {
	prog  []unix.SockFilter
	flags uintptr
}{
	// A filter with a listener (notify on a syscall nobody makes), as a
	// supervised sandbox around ronly would have.
	"listener": {[]unix.SockFilter{
		{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: 0}, // nr
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: 1000, Jt: 0, Jf: 1},
		{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_USER_NOTIF},
		{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ALLOW},
	}, unix.SECCOMP_FILTER_FLAG_NEW_LISTENER},
	// Docker's default profile, as far as user namespaces go:
	// unshare(CLONE_NEWUSER) fails with EPERM, clone3 with ENOSYS (libc
	// then falls back to clone).
	"deny-userns": {[]unix.SockFilter{
		{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: 0}, // nr
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: unix.SYS_CLONE3, Jt: 6, Jf: 0},
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: unix.SYS_UNSHARE, Jt: 1, Jf: 0},
		{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ALLOW},
		{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: 16}, // arg0, low half
		{Code: unix.BPF_JMP | unix.BPF_JSET | unix.BPF_K, K: 0x10000000 /* CLONE_NEWUSER */, Jt: 1, Jf: 0},
		{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ALLOW},
		{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM)},
		{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS)},
	}, 0},
}

// underFilter runs args (a program on PATH and its arguments) under the
// named filter, through this test binary.
func underFilter(t *testing.T, name string, args ...string) result {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	path, err := exec.LookPath(args[0])
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, append([]string{"-test.run=^$", "--", path}, args[1:]...)...)
	cmd.Env = append(os.Environ(), envFilter+"="+name)
	cmd.Dir = "/"
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return r
}

// execUnderFilter is the re-executed side of underFilter: it installs the
// filter on this thread, which execve passes on, and execs args.
func execUnderFilter(name string, args []string) {
	f, ok := filters[name]
	if !ok {
		panic("unknown filter " + name)
	}
	runtime.LockOSThread()
	fprog := unix.SockFprog{Len: uint16(len(f.prog)), Filter: &f.prog[0]}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		panic(err)
	}
	fd, _, e := unix.RawSyscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, f.flags, uintptr(unsafe.Pointer(&fprog)))
	if e != 0 {
		panic(e)
	}
	if f.flags&unix.SECCOMP_FILTER_FLAG_NEW_LISTENER != 0 {
		// The outer supervisor of a real nested sandbox holds its
		// listener open; closing it on exec would free the slot.
		if _, err := unix.FcntlInt(fd, unix.F_SETFD, 0); err != nil {
			panic(err)
		}
	}
	panic(syscall.Exec(args[0], args, os.Environ()))
}
