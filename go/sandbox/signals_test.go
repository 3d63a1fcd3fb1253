package sandbox

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// sleeper starts `sleep 100` as a child of the test, in a process group of
// its own when own is set, and returns it; it is killed at the end.
func sleeper(t *testing.T, own bool) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("sleep", "100")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: own}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd
}

// killedBy waits for cmd and says which signal ended it (0: none, or not yet).
func killedBy(cmd *exec.Cmd) syscall.Signal {
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		return 0
	}
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return ws.Signal()
	}
	return 0
}

func call(pid int, nr int, args ...uint64) *Call {
	c := &Call{listener: -1}
	c.PID, c.Nr = uint32(pid), int32(nr)
	copy(c.Args[:], args)
	return c
}

// The test process plays the supervisor: its children are the session's
// in tree mode; in cgroup mode, what shares its cgroup is.
func TestSignalMembership(t *testing.T) {
	child := sleeper(t, false)
	pid := child.Process.Pid
	for _, mode := range []string{"tree", "cgroup"} {
		g := newSignals()
		if mode == "cgroup" {
			if err := g.learn(os.Getpid(), true); err != nil {
				t.Fatal(err)
			}
		}
		fd, err := unix.PidfdOpen(pid, 0)
		if err != nil {
			t.Fatal(err)
		}
		if !g.member(pid, fd) {
			t.Errorf("%s: our child %d is not a member", mode, pid)
		}
		unix.Close(fd)
		if mode == "tree" {
			// The test's parent (go test, or a shell) is no member.
			ppid := os.Getppid()
			pfd, err := unix.PidfdOpen(ppid, 0)
			if err != nil {
				t.Fatal(err)
			}
			if g.member(ppid, pfd) {
				t.Errorf("tree: our parent %d is a member", ppid)
			}
			unix.Close(pfd)
		}
		one, err := unix.PidfdOpen(1, 0)
		if err != nil {
			t.Fatal(err)
		}
		// PID 1 is in the root cgroup (or its init.scope), never the
		// test's own, unless the test runs in a PID namespace whose
		// init shares its cgroup (Bazel's linux-sandbox): then PID 1
		// is a member by the very rule checked here.
		own, _ := os.ReadFile("/proc/self/cgroup")
		initCg, _ := os.ReadFile("/proc/1/cgroup")
		if g.member(1, one) && (mode != "cgroup" || string(own) != string(initCg)) {
			t.Errorf("%s: PID 1 is a member", mode)
		}
		unix.Close(one)
	}
}

// A grandchild whose parent has exited is still the session's once it is
// reparented to the supervisor (a subreaper).
func TestSignalTreeThroughShell(t *testing.T) {
	cmd := exec.Command("sh", "-c", "sleep 100 & echo $!; wait")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	buf := make([]byte, 32)
	n, _ := out.Read(buf)
	gc, err := strconv.Atoi(strings.TrimSpace(string(buf[:n])))
	if err != nil {
		t.Fatalf("grandchild pid %q: %v", buf[:n], err)
	}
	defer unix.Kill(gc, unix.SIGKILL)
	g := newSignals()
	fd, err := unix.PidfdOpen(gc, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if !g.member(gc, fd) {
		t.Errorf("grandchild %d is not a member", gc)
	}
	// Its pidfd outlives it: a pidfd whose process is gone is no member,
	// whatever now holds the pid.
	unix.Kill(gc, unix.SIGKILL)
	cmd.Wait() // the shell reaps it, then exits
	if g.member(gc, fd) {
		t.Errorf("grandchild %d is a member after it was reaped", gc)
	}
}

func TestSignalVerdicts(t *testing.T) {
	g := newSignals()
	me := os.Getpid()
	// The caller itself: the call continues.
	if v := g.kill(call(me, unix.SYS_KILL, uint64(me), 0)); !v.cont {
		t.Errorf("kill of self: %+v, want continue", v)
	}
	if v := g.tgkill(call(unix.Gettid(), unix.SYS_TGKILL, uint64(me), uint64(me), 0)); !v.cont {
		t.Errorf("tgkill within self: %+v, want continue", v)
	}
	if v := g.tkill(call(unix.Gettid(), unix.SYS_TKILL, uint64(unix.Gettid()), 0)); !v.cont {
		t.Errorf("tkill of own thread: %+v, want continue", v)
	}
	// rt_sigqueueinfo: the caller itself, or where Landlock or a PID
	// namespace confines signals, continues; with nothing to confine
	// them, refused.
	if v := g.sigqueue(call(me, unix.SYS_RT_SIGQUEUEINFO, uint64(me), 10, 0)); !v.cont {
		t.Errorf("rt_sigqueueinfo to self: %+v, want continue", v)
	}
	if v := g.sigqueue(call(me, unix.SYS_RT_SIGQUEUEINFO, 1, 10, 0)); v.cont || v.errno != unix.EPERM {
		t.Errorf("rt_sigqueueinfo to PID 1, nothing confining signals: %+v, want EPERM", v)
	}
	g.scoped = true
	if v := g.sigqueue(call(me, unix.SYS_RT_TGSIGQUEUEINFO, 1, 1, 10, 0)); !v.cont {
		t.Errorf("rt_tgsigqueueinfo where Landlock scopes signals: %+v, want continue", v)
	}
	g.scoped = false
	// Bad signals, as the kernel answers them.
	if v := g.kill(call(me, unix.SYS_KILL, 1, 65)); v.cont || v.errno != unix.EINVAL {
		t.Errorf("kill signal 65: %+v, want EINVAL", v)
	}
	// Outside the session: refused, and nothing is sent.
	for _, v := range []verdict{
		g.kill(call(me, unix.SYS_KILL, 1, 0)),
		g.kill(call(me, unix.SYS_KILL, uint64(os.Getppid()), 0)),
		g.tgkill(call(me, unix.SYS_TGKILL, 1, 1, 0)),
		g.tkill(call(me, unix.SYS_TKILL, 1, 0)),
	} {
		if v.cont || v.errno != unix.EPERM || v.target != 1 && v.target != os.Getppid() {
			t.Errorf("signal to a host process: %+v, want EPERM", v)
		}
	}
	// A pid nobody has.
	if v := g.kill(call(me, unix.SYS_KILL, 1<<22+1, 0)); v.errno != unix.ESRCH {
		t.Errorf("kill of no process: %+v, want ESRCH", v)
	}
	// A child: delivered by the supervisor.
	child := sleeper(t, false)
	if v := g.kill(call(me, unix.SYS_KILL, uint64(child.Process.Pid), uint64(unix.SIGTERM))); v.cont || v.errno != 0 {
		t.Errorf("kill of a child: %+v, want delivered", v)
	}
	if sig := killedBy(child); sig != unix.SIGTERM {
		t.Errorf("child ended by %v, want SIGTERM", sig)
	}
	// A process group of the session's: kill(-pgid), as `kill %1` of a
	// shell with job control sends.
	leader := sleeper(t, true)
	neg := uint64(int64(-leader.Process.Pid))
	if v := g.kill(call(me, unix.SYS_KILL, neg, uint64(unix.SIGKILL))); v.cont || v.errno != 0 {
		t.Errorf("kill of a child's group: %+v, want delivered", v)
	}
	if sig := killedBy(leader); sig != unix.SIGKILL {
		t.Errorf("group leader ended by %v, want SIGKILL", sig)
	}
	// tgkill of another process's thread: delivered (to the thread, or
	// its group before 6.9).
	other := sleeper(t, false)
	op := uint64(other.Process.Pid)
	if v := g.tgkill(call(me, unix.SYS_TGKILL, op, op, uint64(unix.SIGKILL))); v.cont || v.errno != 0 {
		t.Errorf("tgkill of a child: %+v, want delivered", v)
	}
	if sig := killedBy(other); sig != unix.SIGKILL {
		t.Errorf("child ended by %v, want SIGKILL", sig)
	}
}

func TestStatFields(t *testing.T) {
	f, ok := statFields(os.Getpid())
	if !ok || f[0] != "R" && f[0] != "S" {
		t.Fatalf("own stat: %q %v", f, ok)
	}
	if pp, ok := ppidOf(os.Getpid()); !ok || pp != os.Getppid() {
		t.Errorf("ppid %d %v, want %d", pp, ok, os.Getppid())
	}
	if pg, ok := pgrpOf(os.Getpid()); !ok || pg != unix.Getpgrp() {
		t.Errorf("pgrp %d %v, want %d", pg, ok, unix.Getpgrp())
	}
}
