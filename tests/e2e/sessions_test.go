package e2e

import (
	"bufio"
	"bytes"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// inPIDNS runs ronly with args as PID 1 of a new PID namespace with its own
// /proc, as a ronly started in a container or under `unshare --pid` is:
// from there no other session's supervisor has a pid.
func (b bins) inPIDNS(args ...string) *exec.Cmd {
	return exec.Command("unshare", append([]string{"--pid", "--fork", "--mount-proc", b.ronly}, args...)...)
}

// TestSessionsAcrossPIDNamespaces runs sessions from two PID namespaces
// side by side, several of each, starting while the others run (each
// session sweeps the dead ones' cgroups when it starts): none may take
// another for dead. Each must run its whole command and exit 0, nothing
// may be killed, and the test's own process group (which a kill(0) from a
// ronly started here would reach) must be alive at the end.
func TestSessionsAcrossPIDNamespaces(t *testing.T) {
	b := setup(t)
	needTool(t, "unshare")
	// A sentinel in the test's process group: it dies with a kill(0) too.
	sentinel := exec.Command("sleep", "120")
	if err := sentinel.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { sentinel.Process.Kill(); sentinel.Wait() }()

	const each, length = 3, 5 * time.Second
	type run struct {
		name    string
		cmd     *exec.Cmd
		out     bytes.Buffer
		err     error
		elapsed time.Duration
	}
	var runs []*run
	var wg sync.WaitGroup
	start := func(name string, cmd *exec.Cmd) {
		r := &run{name: name, cmd: cmd}
		cmd.Stdout, cmd.Stderr = &r.out, &r.out
		cmd.Dir = "/"
		runs = append(runs, r)
		began := time.Now()
		if r.err = cmd.Start(); r.err != nil {
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.err = cmd.Wait()
			r.elapsed = time.Since(began)
		}()
	}
	args := []string{"--", "/bin/sh", "-c", fmt.Sprintf("sleep %d && echo done", int(length.Seconds()))}
	for round := 0; round < each; round++ {
		start(fmt.Sprintf("host pidns #%d", round), exec.Command(b.ronly, args...))
		time.Sleep(300 * time.Millisecond)
		start(fmt.Sprintf("own pidns #%d", round), b.inPIDNS(args...))
		time.Sleep(300 * time.Millisecond)
	}
	wg.Wait()
	for _, r := range runs {
		switch {
		case r.err != nil:
			t.Errorf("%s: %v (ran %v)\n%s", r.name, r.err, r.elapsed, r.out.String())
		case !strings.Contains(r.out.String(), "done"):
			t.Errorf("%s: command did not finish (ran %v)\n%s", r.name, r.elapsed, r.out.String())
		case r.elapsed < length:
			t.Errorf("%s: over after %v, before its command could have finished", r.name, r.elapsed)
		}
	}
	if err := unix.Kill(sentinel.Process.Pid, 0); err != nil || procState(sentinel.Process.Pid) == "Z" {
		t.Errorf("the test's process group was signalled: sentinel %v, state %s", err, procState(sentinel.Process.Pid))
	}
}

// TestKilledSupervisorSweptFromOtherPIDNS: a SIGKILLed supervisor's session
// is dead for a ronly in another PID namespace too, which removes its
// cgroup and kills what still runs in it.
func TestKilledSupervisorSweptFromOtherPIDNS(t *testing.T) {
	b := setup(t)
	needTool(t, "unshare")
	marker := sleepMarker(t)
	script := fmt.Sprintf("setsid sh -c 'sleep 601.%s & exit'; sleep 0.2; echo started; sleep 602.%s", marker, marker)
	cmd := exec.Command(b.ronly, "--", "/bin/sh", "-c", script)
	cmd.Dir = "/"
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if line, _ := bufio.NewReader(out).ReadString('\n'); line != "started\n" {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("sandbox did not start: %q", line)
	}
	cgroups := func() []string {
		m, _ := filepath.Glob(fmt.Sprintf("/sys/fs/cgroup/*/ronly/*-%d-*", cmd.Process.Pid))
		n, _ := filepath.Glob(fmt.Sprintf("/sys/fs/cgroup/ronly/*-%d-*", cmd.Process.Pid))
		return append(m, n...)
	}
	cmd.Process.Kill()
	cmd.Wait()
	if len(marked(marker)) == 0 || len(cgroups()) == 0 {
		t.Fatalf("expected the killed session's processes and cgroup to outlive it until the next session: %v, %v", marked(marker), cgroups())
	}
	next := b.inPIDNS("--", "/bin/true")
	if o, err := next.CombinedOutput(); err != nil {
		t.Fatalf("next session, in its own PID namespace: %v\n%s", err, o)
	}
	if left := marked(marker); len(left) > 0 {
		t.Errorf("processes of the killed session outlived the next session: %v", left)
	}
	if left := cgroups(); len(left) > 0 {
		t.Errorf("cgroups of the killed session outlived the next session: %v", left)
	}
}
