package sandbox

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// notifyChildEnv has the test binary act as a process under a seccomp
// filter that notifies getppid (TestNotifyChild).
const notifyChildEnv = "RONLY_TEST_NOTIFY_CHILD"

// TestNotifyChild is the child of the stop tests, not a test: on one
// thread it loads a filter that notifies getppid, prints the listener's
// number, and for each line on stdin calls getppid that many times, one
// every millisecond; it exits 0 when every call failed with EPERM (the
// notifier's answer) once stdin closes.
func TestNotifyChild(t *testing.T) {
	if os.Getenv(notifyChildEnv) == "" {
		t.Skip("the child of TestNotifierStop")
	}
	runtime.LockOSThread()
	prog := []unix.SockFilter{
		{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: 0}, // seccomp_data.nr
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: unix.SYS_GETPPID, Jt: 0, Jf: 1},
		{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_USER_NOTIF},
		{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ALLOW},
	}
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		fmt.Println("error no_new_privs:", err)
		os.Exit(2)
	}
	fd, _, e := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, unix.SECCOMP_FILTER_FLAG_NEW_LISTENER, uintptr(unsafe.Pointer(&fprog)))
	if e != 0 {
		fmt.Println("error seccomp:", e)
		os.Exit(2)
	}
	fmt.Println("listener", fd)
	bad := 0
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		n, _ := strconv.Atoi(in.Text())
		for range n {
			if _, _, e := unix.RawSyscall(unix.SYS_GETPPID, 0, 0, 0); e != unix.EPERM {
				bad++
			}
			time.Sleep(time.Millisecond)
		}
		fmt.Println("called", n)
	}
	if bad > 0 {
		fmt.Println("error: getppid not refused with EPERM:", bad)
		os.Exit(1)
	}
	os.Exit(0)
}

// notifyChild starts TestNotifyChild and starts a notifier on its
// listener, recording into a counter.
type notifyChild struct {
	cmd   *exec.Cmd
	in    *os.File
	out   *bufio.Scanner
	n     *notifier
	mu    sync.Mutex
	count int
}

func startNotifyChild(t *testing.T) *notifyChild {
	t.Helper()
	if b, err := os.ReadFile("/proc/self/status"); err == nil && strings.Contains(string(b), "\nSeccomp:\t2") {
		// pidfd_getfd, which ronly's own filter refuses (as in TestReadMsg).
		t.Skip("under a seccomp filter (inside a sandbox); this runs on the host in CI's go test step")
	}
	c := &notifyChild{cmd: exec.Command(os.Args[0], "-test.run=^TestNotifyChild$", "-test.count=1")}
	// Without async preemption: a getppid waiting for the notifier is
	// user code to the child's runtime (RawSyscall), which after 10 ms
	// would interrupt it with SIGURG, and the restarted call is a second
	// notification (a 6.12 guest under qemu recorded 6 for 5 calls).
	// (The first GODEBUG in the environment is the one read.)
	c.cmd.Env = append([]string{notifyChildEnv + "=1", "GODEBUG=asyncpreemptoff=1"}, os.Environ()...)
	c.cmd.Stderr = os.Stderr
	in, err := c.cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	c.in = in.(*os.File)
	out, err := c.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	c.out = bufio.NewScanner(out)
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.cmd.Process.Kill(); c.cmd.Wait() })
	line := c.line(t)
	num, ok := strings.CutPrefix(line, "listener ")
	if !ok {
		t.Fatalf("child: %q", line)
	}
	childFD, _ := strconv.Atoi(num)
	pidfd, err := unix.PidfdOpen(c.cmd.Process.Pid, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(pidfd)
	listener, err := unix.PidfdGetfd(pidfd, childFD, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(listener) })
	c.n = startNotifier(listener, nil, nil, func(Refusal) { c.mu.Lock(); c.count++; c.mu.Unlock() }, false)
	return c
}

func (c *notifyChild) line(t *testing.T) string {
	t.Helper()
	if !c.out.Scan() {
		t.Fatalf("child: no output (%v)", c.out.Err())
	}
	return c.out.Text()
}

// calls has the child make k notified calls and waits until it made them.
func (c *notifyChild) calls(t *testing.T, k int) {
	t.Helper()
	fmt.Fprintln(c.in, k)
	if l := c.line(t); l != fmt.Sprint("called ", k) {
		t.Fatalf("child: %q", l)
	}
}

// ended checks that the notifier's goroutine ended (stop returned because
// it did, not because its time ran out) after answering and recording
// want calls, and that the child saw every one refused.
func (c *notifyChild) ended(t *testing.T, want int) {
	t.Helper()
	select {
	case <-c.n.done:
	default:
		t.Errorf("stop returned with the notifier still running (stopping %v, draining %v): a RECV nobody woke",
			c.n.stopping.Load(), c.n.draining.Load())
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.count != want {
		t.Errorf("%d refusals recorded, want %d", c.count, want)
	}
}

// stopBound only keeps a broken stop from hanging the test: the checks
// are that the goroutine ended, whatever the time.
const stopBound = 20 * time.Second

// The session's processes are all gone while the notifier waits in RECV:
// stop ends it. Before Linux 6.6 the kernel leaves that RECV asleep
// (TestKernels runs this test in its 6.1 guest); from 6.6 on it wakes it.
func TestNotifierStop(t *testing.T) {
	c := startNotifyChild(t)
	c.calls(t, 5)
	c.in.Close()
	if err := c.cmd.Wait(); err != nil {
		t.Fatalf("child: %v", err)
	}
	c.n.stop(stopBound)
	c.ended(t, 5)
}

// stop comes while the session still runs and makes calls: the notifier
// answers and records every one until the last process is gone.
func TestNotifierStopDrains(t *testing.T) {
	c := startNotifyChild(t)
	c.calls(t, 3)
	stopped := make(chan struct{})
	go func() { c.n.stop(stopBound); close(stopped) }()
	// Before 6.6 these come while the notifier waits in poll (draining),
	// from 6.6 on while it waits in a RECV the signal restarted.
	c.calls(t, 20)
	select {
	case <-stopped:
		t.Fatal("stop returned while the child still runs")
	default:
	}
	c.in.Close()
	if err := c.cmd.Wait(); err != nil {
		t.Fatalf("child: %v", err)
	}
	<-stopped
	c.ended(t, 23)
}
