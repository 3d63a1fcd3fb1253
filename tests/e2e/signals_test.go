package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// hostProcesses counts the processes in the host's /proc, as `ps -e` does.
func hostProcesses(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err == nil {
			n++
		}
	}
	return n
}

// signalReport is the part of --report these tests read.
type signalReport struct {
	Refused map[string]map[string]int `json:"refused"`
	Layers  struct {
		PIDNS           bool   `json:"pid_namespace"`
		PIDNSRefused    string `json:"pid_namespace_refused"`
		LandlockABI     int    `json:"landlock_abi"`
		SignalMediation bool   `json:"signal_mediation"`
	} `json:"layers"`
}

func readSignalReport(t *testing.T, path string) signalReport {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var r signalReport
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("report: %v\n%s", err, b)
	}
	return r
}

// TestSignalsWithoutLandlockScoping runs the debug profile as on a kernel
// whose Landlock cannot scope signals (ABI 5; Debian 12's 6.1 has 2): the
// session stays in the host's PID namespace, so ps shows the host, and
// the supervisor confines its signals. Checked from outside: the host
// canary process and the supervisor live on; inside, signals to the
// session's own processes and shell job control work, and kill(0) of a
// process group that also holds the supervisor and the test itself (stdio
// is pipes here: the command stays in its caller's group) reaches only the
// session's members.
func TestSignalsWithoutLandlockScoping(t *testing.T) {
	b := setup(t)
	needTool(t, "ps")
	needTool(t, "bash")
	for _, u := range users {
		t.Run(u.name, func(t *testing.T) {
			c := newCanaries(t, u.uid)
			pid := c.proc.Process.Pid
			dir := userDir(t, u.uid, "ronly-e2e-signals-")
			rep := filepath.Join(dir, "report.json")
			flags := append([]string{"--landlock-max-abi", "5", "-v", "--report", rep}, u.flags...)
			script := fmt.Sprintf(`
echo procs=$(ps -e --no-headers | wc -l)
ps -p %[1]d -o pid= >/dev/null && echo sees-canary
echo self=$$
kill -KILL %[1]d; echo kill=$?
kill -TERM 1; echo kill1=$?
kill -KILL $PPID; echo ppid=$?
kill -0 %[1]d; echo probe=$?
sleep 100 & kill $!; wait $!; echo child=$?
bash -c 'set -m; sleep 100 & kill %%1; wait %%1; echo job=$?'
trap : TERM
sh -c 'trap : TERM; sleep 100 & p=$!; kill -TERM 0; wait $p; echo group=$?'
`, pid)
			outside := hostProcesses(t)
			r := b.sh(t, opts{uid: u.uid}, flags, script)
			if r.code != 0 {
				t.Fatalf("session failed:\n%s", r)
			}
			for _, want := range []string{"sees-canary", "kill=1", "kill1=1", "ppid=1", "probe=1",
				"child=143", "job=143", "group=143"} {
				if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(want) + `$`).MatchString(r.stdout) {
					t.Errorf("want %q in the output:\n%s", want, r)
				}
			}
			if strings.Contains(r.stdout, "self=2\n") || strings.Contains(r.stderr, "private PID namespace") {
				t.Errorf("the debug profile got a PID namespace of its own:\n%s", r)
			}
			if !strings.Contains(r.stderr, "pidns=false") || !strings.Contains(r.stderr, "signal_mediation=true") {
				t.Errorf("-v should say: no PID namespace, signals mediated:\n%s", r)
			}
			m := regexp.MustCompile(`(?m)^procs=(\d+)$`).FindStringSubmatch(r.stdout)
			if m == nil {
				t.Fatalf("no process count:\n%s", r)
			}
			// Others run tests on this host meanwhile: the counts are
			// close, not equal. A PID namespace of the session's own
			// would show a handful.
			inside, _ := strconv.Atoi(m[1])
			if outside = min(outside, hostProcesses(t)); inside < 20 || inside < outside/2 {
				t.Errorf("ps inside shows %d processes, the host has %d", inside, outside)
			}
			if !alive(pid) {
				t.Errorf("HOST CHANGED: canary %d was killed from inside", pid)
			}
			got := readSignalReport(t, rep)
			if got.Layers.PIDNS || got.Layers.LandlockABI != 5 {
				t.Errorf("report layers: %+v", got.Layers)
			}
			// The canary, PID 1, the supervisor and the check of the
			// canary: each refused and counted.
			if n := got.Refused["syscall"]["kill"]; n < 4 {
				t.Errorf("report counts %d refused kill calls, want at least 4: %+v", n, got.Refused)
			}
		})
	}
}

// TestSignalsNestedFallsBackToPIDNamespace: where no seccomp listener can
// be had (another one is installed: a nested sandbox), the supervisor
// cannot hear the session's signals, and a private PID namespace with its
// own /proc confines them instead, said on stderr.
func TestSignalsNestedFallsBackToPIDNamespace(t *testing.T) {
	b := setup(t)
	c := newCanaries(t, 0)
	pid := c.proc.Process.Pid
	r := underFilter(t, "listener", b.ronly, "-v", "--landlock-max-abi", "5", "--", "/bin/sh", "-c",
		fmt.Sprintf("kill -KILL %d 2>/dev/null; echo kill=$?; echo self=$$; sleep 100 & kill $!; wait $!; echo child=$?", pid))
	if r.code != 0 || !strings.Contains(r.stdout, "kill=1\n") || !strings.Contains(r.stdout, "child=143\n") {
		t.Fatalf("want the kill refused, the child's signal delivered:\n%s", r)
	}
	if !strings.Contains(r.stdout, "self=2\n") || !strings.Contains(r.stderr, "pidns=true") ||
		!strings.Contains(r.stderr, "private PID namespace") {
		t.Errorf("want a PID namespace of the session's own, and said so:\n%s", r)
	}
	if !alive(pid) {
		t.Errorf("HOST CHANGED: canary %d was killed from inside", pid)
	}
}

// TestCIWithoutOwnProc runs the ci profile where the kernel refuses a new
// /proc, as in a container that masks /proc paths (Docker's default and
// Kubernetes' covering bind mounts; here /proc/keys covered in a mount
// namespace of the test's own). The session starts anyway, in the host's
// PID namespace, says in one line what it cannot hide, and still cannot
// signal the host's processes: checked from outside, on Landlock ABI 7 and
// as on a kernel whose Landlock cannot scope signals.
func TestCIWithoutOwnProc(t *testing.T) {
	b := setup(t)
	needTool(t, "unshare")
	needTool(t, "setpriv")
	for _, u := range users {
		for _, abi := range []string{"7", "5"} {
			t.Run(u.name+"-landlock"+abi, func(t *testing.T) {
				c := newCanaries(t, u.uid)
				pid := c.proc.Process.Pid
				ws := userDir(t, u.uid, "ronly-e2e-ciproc-")
				rep := filepath.Join(userDir(t, u.uid, "ronly-e2e-ciproc-report-"), "report.json")
				args := append([]string{"--profile", "ci", "--workspace", ws, "--landlock-max-abi", abi, "--report", rep}, u.flags...)
				args = append(args, "--", "/bin/sh", "-c", fmt.Sprintf("ps -p %[1]d -o pid= >/dev/null && echo sees-canary; kill -KILL %[1]d; echo kill=$?; echo ok > %[2]s/done", pid, ws))
				// The cover lives in the mount namespace unshare makes; ronly
				// runs there as the user.
				cover := `mount --bind /dev/null /proc/keys && uid="$1" && shift && exec setpriv --reuid="$uid" --regid="$uid" --clear-groups env HOME=/ "$@"`
				r := runCmd(t, "unshare", append([]string{"-m", "--propagation", "private", "sh", "-c", cover, "sh", strconv.Itoa(u.uid), b.ronly}, args...)...)
				if r.code != 0 {
					t.Fatalf("ci session failed:\n%s", r)
				}
				if !strings.Contains(r.stdout, "sees-canary\n") || !strings.Contains(r.stdout, "kill=1\n") {
					t.Errorf("want the host's processes visible and the kill refused:\n%s", r)
				}
				said := 0
				for _, l := range nonEmpty(r.stderr) {
					if strings.HasPrefix(l, "ronly:") {
						said++
					}
				}
				if said != 1 || !strings.Contains(r.stderr, "its own /proc") || !strings.Contains(r.stderr, "processes and command lines are visible") {
					t.Errorf("want one line saying what the session cannot hide:\n%s", r)
				}
				if !alive(pid) {
					t.Errorf("HOST CHANGED: canary %d was killed from inside", pid)
				}
				if b, err := os.ReadFile(filepath.Join(ws, "done")); err != nil || string(b) != "ok\n" {
					t.Errorf("the workspace was not writable: %q %v", b, err)
				}
				got := readSignalReport(t, rep)
				if got.Layers.PIDNS || got.Layers.PIDNSRefused == "" || got.Layers.SignalMediation != (abi == "5") {
					t.Errorf("report layers: %+v", got.Layers)
				}
			})
		}
	}
}

func nonEmpty(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.TrimSpace(l) != "" {
			out = append(out, l)
		}
	}
	return out
}

// runCmd runs a command (not ronly itself) within the hang guard.
func runCmd(t *testing.T, name string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = "/"
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("%s %q did not finish within %v", name, args, hangGuard)
	}
	r := result{stdout: stdout.String(), stderr: stderr.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestSupervisorSignals sends signals to ronly itself, as a process
// manager or a CI runner does (not to its terminal's process group): TERM
// reaches the command, whose trap decides the exit status ronly reports;
// INT (a terminal delivers it to the command directly) leaves the
// supervisor and the command running.
func TestSupervisorSignals(t *testing.T) {
	b := setup(t)
	for _, c := range []struct {
		name   string
		sig    syscall.Signal
		script string
		code   int
		out    string
	}{
		{"TERM is passed on", syscall.SIGTERM, `trap "echo got-term; exit 7" TERM; echo ready; while :; do sleep 0.05; done`, 7, "got-term"},
		{"INT is survived", syscall.SIGINT, `trap "echo got-int; exit 9" INT; echo ready; sleep 0.5; echo done`, 0, "done"},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
			defer cancel()
			cmd := exec.CommandContext(ctx, b.ronly, "--", "/bin/sh", "-c", c.script)
			cmd.Dir = "/"
			var stderr strings.Builder
			cmd.Stderr = &stderr
			stdout, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			r := bufio.NewReader(stdout)
			if line, err := r.ReadString('\n'); line != "ready\n" {
				cmd.Process.Kill()
				cmd.Wait()
				t.Fatalf("want ready, got %q (%v)\nstderr:\n%s", line, err, stderr.String())
			}
			if err := cmd.Process.Signal(c.sig); err != nil {
				t.Fatal(err)
			}
			rest, _ := io.ReadAll(r)
			err = cmd.Wait()
			code := 0
			if ee, ok := err.(*exec.ExitError); ok {
				code = ee.ExitCode() // -1 when ronly itself was killed
			} else if err != nil {
				t.Fatal(err)
			}
			if code != c.code || strings.TrimSpace(string(rest)) != c.out {
				t.Fatalf("after %v to ronly: want exit %d and %q, got exit %d (%v) and %q\nstderr:\n%s", c.sig, c.code, c.out, code, err, rest, stderr.String())
			}
		})
	}
}
