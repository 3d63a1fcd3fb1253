package e2e

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
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

// sessionCgroups lists the session cgroups whose names match pattern, in
// every hierarchy (cgroup.Name: SESSION-PID-flock-START).
func sessionCgroups(pattern string) []string {
	m, _ := filepath.Glob("/sys/fs/cgroup/*/ronly/" + pattern)
	n, _ := filepath.Glob("/sys/fs/cgroup/ronly/" + pattern)
	return append(m, n...)
}

// supervisorCgroups are the cgroups of the sessions supervisor sup made.
func supervisorCgroups(sup int) []string { return sessionCgroups(fmt.Sprintf("*-%d-*", sup)) }

// killedSession leaves what a sweep must end: a session without a limit
// (so without a watchdog) whose command left a process in a terminal
// session of its own, its supervisor then SIGKILLed. It returns the marker
// in the left process's command line and the dead supervisor's pid.
func killedSession(t *testing.T, b bins) (marker string, sup int) {
	t.Helper()
	marker = sleepMarker(t)
	cmd := exec.Command(b.ronly, "--", "/bin/sh", "-c",
		fmt.Sprintf("setsid sh -c 'sleep 601.%s & exit'; sleep 0.2; echo started; sleep 602.%s", marker, marker))
	cmd.Dir = "/"
	startSession(t, cmd)
	cmd.Process.Kill()
	cmd.Wait()
	if len(marked(marker)) == 0 || len(supervisorCgroups(cmd.Process.Pid)) == 0 {
		t.Fatalf("the killed session left no process or no cgroup to sweep: %v, %v", marked(marker), supervisorCgroups(cmd.Process.Pid))
	}
	return marker, cmd.Process.Pid
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
// cgroup, kills what still runs in it and reports it lost.
func TestKilledSupervisorSweptFromOtherPIDNS(t *testing.T) {
	b := setup(t)
	needTool(t, "unshare")
	marker, sup := killedSession(t, b)
	textfile := filepath.Join(t.TempDir(), "ronly.prom")
	next := b.inPIDNS("--metrics-textfile", textfile, "--", "/bin/true")
	if o, err := next.CombinedOutput(); err != nil {
		t.Fatalf("next session, in its own PID namespace: %v\n%s", err, o)
	}
	// It reported the dead session lost, beside its own.
	got, _ := os.ReadFile(textfile)
	for _, want := range []string{`ronly_sessions_total{result="lost"} 1`, `ronly_sessions_total{result="ok"} 1`} {
		if !bytes.Contains(got, []byte(want)) {
			t.Errorf("the next session's --metrics-textfile lacks %s:\n%s", want, got)
		}
	}
	if left := marked(marker); len(left) > 0 {
		t.Errorf("processes of the killed session outlived the next session: %v", left)
	}
	if left := supervisorCgroups(sup); len(left) > 0 {
		t.Errorf("cgroups of the killed session outlived the next session: %v", left)
	}
}

// TestKilledSupervisorWatchdog: a session with a limit has a watchdog
// (init/watchdog.c), so when its supervisor is SIGKILLed, what the session
// left running dies and its cgroup goes at once, not at the next session's
// start. A session without a limit has none (a fork costs its start about
// 0.5 ms here), and a watchdog that was not needed is reaped before ronly
// exits.
func TestKilledSupervisorWatchdog(t *testing.T) {
	b := setup(t)
	marker := sleepMarker(t)
	script := fmt.Sprintf("setsid sh -c 'sleep 611.%s & exit'; sleep 0.2; echo started; sleep 612.%s", marker, marker)
	start := func(args ...string) (*exec.Cmd, int) {
		t.Helper()
		cmd := exec.Command(b.ronly, append(args, "--", "/bin/sh", "-c", script)...)
		cmd.Dir = "/"
		startSession(t, cmd)
		return cmd, watchdogOf(cmd.Process.Pid)
	}
	cgroups := supervisorCgroups

	// Without a limit: no watchdog.
	cmd, wd := start()
	cmd.Process.Signal(unix.SIGTERM)
	cmd.Wait()
	if wd != 0 {
		t.Errorf("a session without a limit has a watchdog, pid %d", wd)
	}
	if left := marked(marker); len(left) > 0 {
		t.Fatalf("a session ended by SIGTERM left %v", left)
	}

	// With one, ended as usual: the watchdog is reaped before ronly exits.
	cmd, wd = start("--timeout", "10m")
	if wd == 0 {
		t.Fatal("a session with --timeout has no watchdog")
	}
	cmd.Process.Signal(unix.SIGTERM)
	cmd.Wait()
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", wd)); err == nil {
		t.Errorf("the watchdog, pid %d, outlived a supervisor that ended as usual (state %s)", wd, procState(wd))
	}

	// SIGKILLed: the watchdog kills the session, removes its cgroup and
	// reports it lost where the session would have reported. With
	// --count-writes, the session's write counter ends too.
	textfile := filepath.Join(t.TempDir(), "ronly.prom")
	cmd, wd = start("--pids", "100", "--count-writes", "--metrics-textfile", textfile)
	if wd == 0 {
		t.Fatal("a session with --pids has no watchdog")
	}
	sup := cmd.Process.Pid
	if len(cgroups(sup)) == 0 {
		t.Fatalf("the session has no cgroup to check (%v)", cgroups(sup))
	}
	killed := time.Now()
	cmd.Process.Kill()
	cmd.Wait()
	for time.Since(killed) < 10*time.Second && (len(marked(marker)) > 0 || len(cgroups(sup)) > 0 || len(writeWatchers()) > 0) {
		time.Sleep(20 * time.Millisecond)
	}
	if left := writeWatchers(); len(left) > 0 {
		t.Errorf("10 s after the supervisor was SIGKILLed, write counters run: pids %v", left)
	}
	if left := marked(marker); len(left) > 0 {
		t.Errorf("10 s after its supervisor was SIGKILLed, the session's processes (or its watchdog) run: %v", left)
	}
	if left := cgroups(sup); len(left) > 0 {
		t.Errorf("10 s after its supervisor was SIGKILLed, the session's cgroup is there: %v", left)
	}
	t.Logf("the session was gone %v after its supervisor was killed", time.Since(killed).Round(time.Millisecond))
	const lost = `ronly_sessions_total{result="lost"} 1`
	var got []byte
	for time.Since(killed) < 10*time.Second && !bytes.Contains(got, []byte(lost)) {
		time.Sleep(20 * time.Millisecond)
		got, _ = os.ReadFile(textfile)
	}
	if !bytes.Contains(got, []byte(lost)) {
		t.Errorf("the watchdog did not report the session lost in its --metrics-textfile; it holds:\n%s", got)
	}
}

// watchdogOf finds the watchdog init/watchdog.c forked for supervisor
// sup: its child with the same command line (a fork, not exec'd). 0 when
// there is none.
func watchdogOf(sup int) int {
	own, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", sup))
	if err != nil {
		return 0
	}
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", sup))
	for _, t := range tasks {
		b, _ := os.ReadFile(t)
		for _, f := range strings.Fields(string(b)) {
			pid, err := strconv.Atoi(f)
			if err != nil {
				continue
			}
			if c, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); err == nil && bytes.Equal(c, own) {
				return pid
			}
		}
	}
	return 0
}

// writeWatchers lists the host's ronly-writewatch processes.
func writeWatchers() []int {
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if comm, err := os.ReadFile(filepath.Join("/proc", e.Name(), "comm")); err == nil && strings.HasPrefix(string(comm), "ronly-writewat") {
			pids = append(pids, pid)
		}
	}
	return pids
}

// startSession starts cmd, a ronly whose command prints "started" once it
// has set up what the test looks at, and waits for that line.
func startSession(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
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
		t.Fatalf("%s: sandbox did not start: %q", strings.Join(cmd.Args[1:], " "), line)
	}
}

// TestProbeSweepsAndReportsLost: `ronly probe` sweeps what dead sessions
// left, as every session's start does, and reports the sessions lost where
// its flags send metrics; but not its own sessions, whose supervisors it
// kills on purpose (here: Ctrl-C of a probe mid-session), so that running
// the probe does not look like supervisors dying.
func TestProbeSweepsAndReportsLost(t *testing.T) {
	b := setup(t)
	cgroups := sessionCgroups
	// A probe interrupted while one of its sessions runs: the session's
	// supervisor is SIGKILLed and its cgroup stays until a sweep.
	for try := 0; try < 5 && len(cgroups("probe-*")) == 0; try++ {
		probe := exec.Command(b.ronly, "probe")
		probe.Dir = "/"
		if err := probe.Start(); err != nil {
			t.Fatal(err)
		}
		began := time.Now()
		for time.Since(began) < 30*time.Second && len(cgroups("probe-*")) == 0 {
			time.Sleep(2 * time.Millisecond)
		}
		probe.Process.Signal(unix.SIGINT)
		probe.Wait()
	}
	if len(cgroups("probe-*")) == 0 {
		t.Fatal("no interrupted probe left its session's cgroup in 5 tries")
	}
	// A user's session whose supervisor was SIGKILLed.
	marker, sup := killedSession(t, b)

	_, got := sweepWith(t, b, marker, sup, "probe")
	if left := cgroups("probe-*"); len(left) > 0 {
		t.Errorf("the probe's sessions did not sweep the interrupted probe's cgroup: %v", left)
	}
	if want := `ronly_sessions_total{result="lost"} 1` + "\n"; !bytes.Contains(got, []byte(want)) {
		t.Errorf("ronly probe's --metrics-textfile should count the user's session lost and not the probe's:\n%s", got)
	}
}

// TestSweepCommand: `ronly sweep` ends at once what a SIGKILLed
// supervisor's session without a limit (so without a watchdog) left
// running, removes its cgroup, names the session and reports it lost
// where its metrics flags say; run again, it finds nothing.
func TestSweepCommand(t *testing.T) {
	b := setup(t)
	marker, sup := killedSession(t, b)
	f := strings.Split(filepath.Base(supervisorCgroups(sup)[0]), "-")
	session := strings.Join(f[:len(f)-3], "-")
	// Some time later: nothing else ends it meanwhile.
	time.Sleep(time.Second)
	if len(marked(marker)) == 0 {
		t.Fatal("the dead session's processes ended without a sweep")
	}

	r, got := sweepWith(t, b, marker, sup, "sweep")
	if !strings.Contains(r.stdout, "session "+session+":") {
		t.Errorf("ronly sweep did not name the session %s it swept:\n%s", session, r)
	}
	const lost = `ronly_sessions_total{result="lost"} 1` + "\n"
	if !bytes.Contains(got, []byte(lost)) {
		t.Errorf("ronly sweep's --metrics-textfile lacks the lost session:\n%s", got)
	}

	textfile := filepath.Join(t.TempDir(), "again.prom")
	r = b.run(t, opts{}, "sweep", "--metrics-textfile", textfile)
	if r.code != 0 || r.stdout != "" {
		t.Errorf("a second ronly sweep: want exit 0 and nothing said\n%s", r)
	}
	if again, err := os.ReadFile(textfile); !os.IsNotExist(err) {
		t.Errorf("a second ronly sweep reported something lost: %v\n%s", err, again)
	}
}

// sweepWith runs ronly with args and --metrics-textfile, which must end
// what the dead session (killedSession's marker and sup) left: it
// returns the run and the textfile.
func sweepWith(t *testing.T, b bins, marker string, sup int, args ...string) (result, []byte) {
	t.Helper()
	textfile := filepath.Join(t.TempDir(), "ronly.prom")
	r := b.run(t, opts{}, append(args, "--metrics-textfile", textfile)...)
	if r.code != 0 {
		t.Fatalf("ronly %s: want exit 0\n%s", strings.Join(args, " "), r)
	}
	if left := marked(marker); len(left) > 0 {
		t.Errorf("processes of the dead session outlived ronly %s: %v", strings.Join(args, " "), left)
	}
	if left := supervisorCgroups(sup); len(left) > 0 {
		t.Errorf("the dead session's cgroup outlived ronly %s: %v", strings.Join(args, " "), left)
	}
	got, _ := os.ReadFile(textfile)
	return r, got
}
