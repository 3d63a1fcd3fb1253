package sandbox

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"ronly.dev/ronly/bpf"
)

// notifyChildEnv has the test binary act as a process under a seccomp
// filter that notifies getppid (TestNotifyChild).
const notifyChildEnv = "RONLY_TEST_NOTIFY_CHILD"

// TestNotifyChild is the child of the stop tests, not a test: on one
// thread it loads a filter that notifies getppid (without
// WAIT_KILLABLE_RECV, as on kernels before 5.19), prints the listener's
// number and the thread's id, and for each line on stdin calls getppid that many times, one
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
	fmt.Println("listener", fd, unix.Gettid())
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
	tid   int // the thread that makes the calls
	in    *os.File
	out   *bufio.Scanner
	n     *notifier
	mu    sync.Mutex
	count int
}

// notifySetup is how a test's notifier differs from the stop tests'.
type notifySetup struct {
	// received, if not nil, is the notifier's hook between a RECV and its
	// answer.
	received func(c *notifyChild, id uint64)
	// mediated: getppid goes to a mediator, which refuses it with EPERM,
	// instead of the notifier's own answer.
	mediated bool
}

func startNotifyChild(t *testing.T, setup notifySetup) *notifyChild {
	t.Helper()
	if underRonly() {
		// pidfd_getfd, which ronly's own filter refuses (as in TestReadMsg).
		t.Skip("under a seccomp filter (inside a sandbox); this runs on the host in CI's go test step")
	}
	c := &notifyChild{cmd: exec.Command(os.Args[0], "-test.run=^TestNotifyChild$", "-test.count=1")}
	// Without async preemption: a getppid waiting for the notifier is
	// user code to the child's runtime (RawSyscall), which after 10 ms
	// would interrupt it with SIGURG. This child's filter waits
	// interruptibly (no WAIT_KILLABLE_RECV, which ronly's init uses), and
	// there a signal that wakes the caller just before the answer
	// arrives makes the kernel drop the answer, which the notifier was
	// told it delivered, and restart the call: a second notification
	// (a 6.12 guest under qemu recorded 6 for 5 calls). The restart test
	// sends its own SIGURG, at a moment it chooses. (The first GODEBUG in
	// the environment is the one read.)
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
	var childFD int
	if n, err := fmt.Sscanf(line, "listener %d %d", &childFD, &c.tid); n != 2 {
		t.Fatalf("child: %q: %v", line, err)
	}
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
	var table bpf.Table
	var mediators map[int]mediator
	if setup.mediated {
		table = bpf.Table{unix.SYS_GETPPID: {Name: "getppid", Errno: unix.EPERM, Mediate: true}}
		mediators = map[int]mediator{unix.SYS_GETPPID: func(c *Call) *Refusal {
			c.Reply(0, unix.EPERM)
			return &Refusal{Kind: RefusedSyscall, Errno: unix.EPERM}
		}}
	}
	c.n = newNotifier(listener, table, mediators, func(Refusal) { c.mu.Lock(); c.count++; c.mu.Unlock() }, false, false)
	if setup.received != nil {
		c.n.received = func(id uint64) { setup.received(c, id) }
	}
	c.n.start()
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

// exit closes the child's stdin and waits for it to exit 0: every call it
// made was refused with EPERM.
func (c *notifyChild) exit(t *testing.T) {
	t.Helper()
	c.in.Close()
	if err := c.cmd.Wait(); err != nil {
		t.Fatalf("child: %v", err)
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
	c := startNotifyChild(t, notifySetup{})
	c.calls(t, 5)
	c.exit(t)
	c.n.stop(stopBound)
	c.ended(t, 5)
}

// stop comes while the session still runs and makes calls: the notifier
// answers and records every one until the last process is gone.
func TestNotifierStopDrains(t *testing.T) {
	c := startNotifyChild(t, notifySetup{})
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
	c.exit(t)
	<-stopped
	c.ended(t, 23)
}

// A signal that interrupts a notified call after the notifier received it
// makes the kernel restart the call, as a second notification, where the
// filter waits interruptibly (no WAIT_KILLABLE_RECV: before Linux 5.19,
// as this test's child loads it). The attempt is counted once: the answer
// to the first notification fails with ENOENT and is not counted, whether
// the notifier or a mediator gave it. (A signal that lands as the answer
// is delivered can still have the kernel drop a delivered answer and
// restart the call, counted twice: see startNotifyChild.)
func TestNotifierRestartedCallCountedOnce(t *testing.T) {
	for _, mediated := range []bool{false, true} {
		t.Run(fmt.Sprintf("mediated=%v", mediated), func(t *testing.T) {
			calls, withdrawn := 0, false // the notifier's goroutine's; read once it ended
			c := startNotifyChild(t, notifySetup{mediated: mediated, received: func(c *notifyChild, id uint64) {
				if calls++; calls > 1 {
					return
				}
				// The child's Go runtime handles SIGURG, with SA_RESTART.
				if err := unix.Tgkill(c.cmd.Process.Pid, c.tid, unix.SIGURG); err != nil {
					t.Error(err)
					return
				}
				// Until the kernel withdraws the notification: the call was
				// interrupted, and is restarted once the handler returns.
				for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
					_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(c.n.listener), unix.SECCOMP_IOCTL_NOTIF_ID_VALID, uintptr(unsafe.Pointer(&id)))
					if e == unix.ENOENT {
						withdrawn = true
						return
					}
				}
			}})
			c.calls(t, 1)
			c.exit(t)
			c.n.stop(stopBound)
			c.ended(t, 1)
			if !withdrawn || calls != 2 {
				t.Fatalf("the call was not interrupted and restarted as the test intends (withdrawn %v, %d notifications)", withdrawn, calls)
			}
		})
	}
}
