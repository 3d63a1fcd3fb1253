package sandbox

import (
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestStartPinnedOutlivesAsCaller: the kernel sends a child's Pdeathsig
// when the thread that forked it exits, and every asCaller call ends its
// thread. A child started through startPinned, as launch starts the init,
// must survive many asCaller calls made right after the start by the same
// goroutine (the likeliest way to get the forking thread: a new goroutine
// runs on the thread of the one that waits for it). Checked on the child
// process itself: not dead, not a zombie. With a plain cmd.Start it dies
// within the first calls.
func TestStartPinnedOutlivesAsCaller(t *testing.T) {
	if os.Getenv("RONLY_PINNED_CHILD") == "1" {
		time.Sleep(time.Minute)
		return
	}
	// asCaller's credential change needs setgroups and capset, which
	// Bazel's sandbox refuses; what matters here is only that it ends its
	// thread, so where it cannot run, a locked goroutine that returns
	// (its thread exits the same way) stands in for it.
	cr, err := callerCreds(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	endThread := func() syscall.Errno { return asCaller(cr, func() syscall.Errno { return 0 }) }
	if endThread() == syscall.EPERM {
		endThread = func() syscall.Errno {
			done := make(chan struct{})
			go func() {
				runtime.LockOSThread() // never unlocked: the thread exits with the goroutine
				close(done)
			}()
			<-done
			return 0
		}
	}
	for round := 0; round < 5; round++ {
		cmd := exec.Command(os.Args[0], "-test.run=^TestStartPinnedOutlivesAsCaller$")
		cmd.Env = append(os.Environ(), "RONLY_PINNED_CHILD=1")
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		cmd, _, err := startPinned(func() (*exec.Cmd, bool, error) { return cmd, false, cmd.Start() })
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 50; i++ {
			if e := endThread(); e != 0 {
				t.Fatalf("asCaller: %v", e)
			}
		}
		time.Sleep(50 * time.Millisecond) // for a SIGKILL on its way
		state := processState(cmd.Process.Pid)
		cmd.Process.Kill()
		cmd.Wait()
		if state != "S" && state != "R" && state != "D" {
			t.Fatalf("round %d: the child's state is %q after 50 asCaller calls: killed by its Pdeathsig", round, state)
		}
	}
}

// processState is the state letter of /proc/<pid>/stat ("" when gone).
func processState(pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return ""
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) == 0 {
		return ""
	}
	return f[0]
}
