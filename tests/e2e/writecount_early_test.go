package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"ronly.dev/ronly/go/writewatch/rawtp"
)

// fakeWritewatch speaks ronly-writewatch's protocol (go/writewatch/remote)
// without loading anything, after a pause longer than ronly takes to fail
// on a bad flag, and logs to $RONLY_E2E_HELPER_LOG when it starts (with
// its arguments), when it is told a cgroup and when it ends: so the log
// says from outside which helpers ronly started, which one counted the
// session, and that each ended before ronly exited.
const fakeWritewatch = `#!/bin/sh
echo "start $$ $*" >> "$RONLY_E2E_HELPER_LOG"
sleep 0.3
echo '{"ready":"fexit"}'
while read cmd arg; do
	if [ "$cmd" = add ]; then
		echo "add $$" >> "$RONLY_E2E_HELPER_LOG"
		echo '{"added":true}'
	fi
done
echo '{"counts":{},"final":true}'
echo "end $$" >> "$RONLY_E2E_HELPER_LOG"
`

// withFakeWritewatch is a copy of ronly in a new directory (named with
// prefix) beside fakeWritewatch, which it then finds as its helper.
func withFakeWritewatch(t *testing.T, prefix string) (bins, string) {
	t.Helper()
	b := setup(t)
	dir := userDir(t, 0, prefix)
	ronly := filepath.Join(dir, "ronly")
	if err := copyFile(b.ronly, ronly); err != nil {
		t.Fatal(err)
	}
	writeFile(t, 0, filepath.Join(dir, "ronly-writewatch"), fakeWritewatch, 0o755)
	return bins{dir: dir, ronly: ronly, probe: b.probe}, dir
}

// helperLog is the fake helper's log, one entry per helper, in the order
// they started.
type helperLog struct {
	pid    string
	events bool // started with --events
	added  bool
	ended  bool
}

func readHelperLog(t *testing.T, path string) []*helperLog {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var hs []*helperLog
	byPID := map[string]*helperLog{}
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		switch f[0] {
		case "start":
			h := &helperLog{pid: f[1], events: slices.Contains(f[2:], "--events")}
			hs = append(hs, h)
			byPID[f[1]] = h
		case "add":
			byPID[f[1]].added = true
		case "end":
			byPID[f[1]].ended = true
		}
	}
	return hs
}

func (h *helperLog) String() string {
	return fmt.Sprintf("{pid %s events %t added %t ended %t}", h.pid, h.events, h.added, h.ended)
}

// TestWriteCounterStartsEarly: with --count-writes on the command line,
// ronly starts its helper before it has parsed its flags, uses that one
// helper for the session, and when the session does not use it (a bad
// flag, a bad value found after parsing, a sandbox that cannot be built,
// an audit log the helper was not started for) ends it before exiting,
// with the exit code and message of the same command line without
// --count-writes. Checked from outside with a helper that logs its life.
//
// Where the kernel cannot run fexit programs (this VM), a line that does
// not name an audit log starts no helper at all: the supervisor counts
// itself (go/sandbox's sharedHere), and the report says so; only events
// need the helper.
func TestWriteCounterStartsEarly(t *testing.T) {
	fake, dir := withFakeWritewatch(t, "ronly-e2e-early-")
	here := !rawtp.FexitPossible()
	audit := filepath.Join(dir, "policy-audit.jsonl")
	policyFile := filepath.Join(dir, "audit.toml")
	writeFile(t, 0, policyFile, fmt.Sprintf("audit-log = %q\n", audit), 0o644)

	for i, c := range []struct {
		name    string
		flags   []string // before "--count-writes"
		code    int
		helpers int    // how many ronly starts
		events  bool   // the counting one (when the session ran) has --events
		script  string // the command, sh -c; "" is true
	}{
		{"counted by the early helper", nil, 0, 1, false, ""},
		{"audit log on the command line", []string{"--audit-log", filepath.Join(dir, "a.jsonl")}, 0, 1, true, ""},
		{"bad flag", []string{"--bogus-flag"}, 125, 1, false, ""},
		{"bad value after parsing", []string{"--tmpfs-size", "lots"}, 125, 1, false, ""},
		{"sandbox not built", []string{"--rw", "/nonexistent-ronly-e2e"}, 125, 1, false, ""},
		// The early helper counts only; the session wants events for the
		// policy file's audit log, and starts one with them. The early
		// one must end while the session runs (not hold programs
		// attached until it is over): the command waits for its end
		// line, which only it can have written by then.
		{"audit log in a policy file", []string{"--policy", policyFile}, 0, 2, true, waitUnusedEnd},
		// Flags given with "=" keep the C side reading (a separate value
		// ends its guess): the helper is started before the Go runtime,
		// and the Go side adopts it, or ends it for one with events.
		{"audit log given with =", []string{"--audit-log=" + filepath.Join(dir, "b.jsonl")}, 0, 1, true, ""},
		{"audit log in a policy file given with =", []string{"--policy=" + policyFile}, 0, 2, true, waitUnusedEnd},
	} {
		// The C side's guess counts without events when the line names
		// no audit log: here that guess starts no helper.
		guessEvents := slices.ContainsFunc(c.flags, func(f string) bool { return strings.HasPrefix(f, "--audit-log") })
		if here && !guessEvents {
			c.helpers--
			c.script = ""
		}
		t.Run(strings.ReplaceAll(c.name, " ", "_"), func(t *testing.T) {
			log := filepath.Join(dir, fmt.Sprintf("helpers-%d.log", i))
			rep := filepath.Join(dir, fmt.Sprintf("report-%d.json", i))
			o := opts{env: []string{"RONLY_E2E_HELPER_LOG=" + log}}
			command := []string{"true"}
			if c.script != "" {
				command = []string{"/bin/sh", "-c", c.script}
			}
			args := append(append(append([]string{"--no-metrics", "--report", rep}, c.flags...), "--count-writes", "--"), command...)
			r := fake.run(t, o, args...)
			if r.code != c.code {
				t.Fatalf("exit %d, want %d\n%s", r.code, c.code, r)
			}
			hs := readHelperLog(t, log)
			if len(hs) != c.helpers {
				t.Fatalf("ronly started %d helpers, want %d: %v\n%s", len(hs), c.helpers, hs, r)
			}
			var counting []*helperLog
			for _, h := range hs {
				if !h.ended {
					t.Errorf("a helper had not ended when ronly exited: %v", hs)
				}
				if pid, _ := strconv.Atoi(h.pid); pid > 0 && syscall.Kill(pid, 0) == nil {
					t.Errorf("a helper still runs after ronly exited: %v", hs)
				}
				if h.added {
					counting = append(counting, h)
				}
			}
			if c.code == 0 {
				// The fake helper says fexit; ronly itself counts at the
				// tracepoint.
				counter := "fexit"
				if here && !c.events {
					counter = "tracepoint"
					if len(counting) != 0 {
						t.Errorf("a helper counted a session that counts in ronly: %v", hs)
					}
				} else if len(counting) != 1 || counting[0].events != c.events {
					t.Errorf("want one helper counting the session, with --events %t: %v", c.events, hs)
				}
				got := readReport(t, rep)
				if !got.Layers.WriteCounting || got.Layers.WriteCounter != counter {
					t.Errorf("report: write_counting %t, write_counter %q; want true, %s", got.Layers.WriteCounting, got.Layers.WriteCounter, counter)
				}
				return
			}
			if len(counting) != 0 {
				t.Errorf("a helper counted a session that did not run: %v", hs)
			}
			// The same command line without --count-writes says the same.
			without := fake.run(t, o, append(append([]string{"--no-metrics", "--report", rep}, c.flags...), "--", "true")...)
			if without.code != r.code || without.stderr != r.stderr {
				t.Errorf("with --count-writes:\n%s\nwithout:\n%s", r, without)
			}
			if n := strings.Count(r.stderr, "\n"); n != 1 {
				t.Errorf("%d lines on stderr, want 1:\n%s", n, r)
			}
		})
	}
}

// waitUnusedEnd is a session's command that waits for the end line of a
// helper the session did not use: only that one can have ended while the
// session runs.
const waitUnusedEnd = `for i in $(seq 300); do grep -q "^end" "$RONLY_E2E_HELPER_LOG" && exit 0; sleep 0.1; done; echo "the unused helper did not end while the session ran" >&2; exit 1`

// TestWriteCounterEarlyWrongGuess: the C side guesses from the raw words,
// before the Go runtime, that `--audit-log=F --rw --count-writes -- true`
// counts, with events, and starts the helper (the audit log makes it start
// one on every kernel); the Go side reads --count-writes as a misplaced
// value of --rw, which kong refuses. ronly exits 125 naming --rw, and the
// helper it started has ended, without counting anything, before ronly
// exits.
func TestWriteCounterEarlyWrongGuess(t *testing.T) {
	fake, dir := withFakeWritewatch(t, "ronly-e2e-guess-")
	log := filepath.Join(dir, "helpers.log")
	r := fake.run(t, opts{env: []string{"RONLY_E2E_HELPER_LOG=" + log}}, "--no-metrics",
		"--audit-log="+filepath.Join(dir, "audit.jsonl"), "--rw", "--count-writes", "--", "true")
	if r.code != 125 || strings.Count(r.stderr, "\n") != 1 || !strings.Contains(r.stderr, "--rw") {
		t.Fatalf("want exit 125 and one line naming --rw:\n%s", r)
	}
	hs := readHelperLog(t, log)
	if len(hs) != 1 {
		t.Fatalf("want the one helper the C side started: %v\n%s", hs, r)
	}
	if h := hs[0]; !h.ended || h.added {
		t.Errorf("the helper must have ended, counting nothing, when ronly exited: %v", h)
	}
	if pid, _ := strconv.Atoi(hs[0].pid); pid > 0 && syscall.Kill(pid, 0) == nil {
		t.Errorf("the helper still runs after ronly exited: %v", hs)
	}
}

// TestWriteCounterEarlyLeavesNothing: ronly --count-writes with a bad flag
// exits 125 with its one line, and the real helper it started before
// parsing is gone when it exits, with whatever it had attached: no process
// carries the run's marker in its environment (the helper inherits
// ronly's), and no process holds an eBPF link the helper made. While a
// counted session runs, the same check sees its helper and links, so the
// check can fail.
func TestWriteCounterEarlyLeavesNothing(t *testing.T) {
	b := setup(t)
	marker := "RONLY_E2E_EARLY=" + strconv.FormatInt(time.Now().UnixNano(), 10)
	o := opts{env: []string{marker}}

	// An audit log, so that a helper starts on every kernel (without
	// one, a kernel without fexit counts in ronly itself).
	audit := "--audit-log=" + filepath.Join(userDir(t, 0, "ronly-e2e-leaves-"), "audit.jsonl")
	r := b.run(t, o, audit, "--count-writes", "--bogus-flag", "--", "true")
	if r.code != 125 || strings.Count(r.stderr, "\n") != 1 || !strings.Contains(r.stderr, "--bogus-flag") {
		t.Fatalf("want exit 125 and one line naming --bogus-flag:\n%s", r)
	}
	if pids := markedProcesses(t, marker); len(pids) > 0 {
		t.Errorf("processes of the failed run left behind: %v (comm %q), holding eBPF objects: %t", pids, comms(pids), holdsBPF(pids))
	}

	// The positive control: a session holds its helper while it runs.
	seen := make(chan []int, 1)
	go func() {
		deadline := time.Now().Add(time.Minute)
		for time.Now().Before(deadline) {
			for _, p := range markedProcesses(t, marker) {
				argv, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(p), "cmdline"))
				argv0, _, _ := bytes.Cut(argv, []byte{0})
				if filepath.Base(string(argv0)) == "ronly-writewatch" && holdsBPF([]int{p}) {
					seen <- []int{p}
					return
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
		seen <- nil
	}()
	// The command waits for its stdin's line, which arrives once the
	// helper was seen.
	marked := b.run(t, opts{env: o.env, stdinFile: helperGate(t, seen)}, audit, "--count-writes", "--", "/bin/sh", "-c", "read x")
	if marked.code != 0 {
		t.Fatalf("counted session:\n%s", marked)
	}
	if pids := markedProcesses(t, marker); len(pids) > 0 {
		t.Errorf("processes of the counted session left behind: %v (comm %q)", pids, comms(pids))
	}
}

// helperGate is a pipe whose read end is a session's stdin: one line is
// written once seen reports the helper with eBPF objects (the test fails
// if it never does), then the write end is closed.
func helperGate(t *testing.T, seen chan []int) *os.File {
	t.Helper()
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pr.Close() })
	go func() {
		defer pw.Close()
		if p := <-seen; p == nil {
			t.Error("no ronly-writewatch holding eBPF objects carried the marker while the counted session ran")
		}
		pw.Write([]byte("x\n"))
	}()
	return pr
}

// markedProcesses are the processes whose environment holds marker.
func markedProcesses(t *testing.T, marker string) []int {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		env, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err != nil {
			continue
		}
		if bytes.Contains(append(append([]byte{0}, env...), 0), []byte("\x00"+marker+"\x00")) {
			pids = append(pids, pid)
		}
	}
	return pids
}

func comms(pids []int) []string {
	var cs []string
	for _, p := range pids {
		c, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(p), "comm"))
		cs = append(cs, strings.TrimSpace(string(c)))
	}
	return cs
}

// holdsBPF is true when one of pids holds an eBPF object open (a process
// that is gone holds none).
func holdsBPF(pids []int) bool {
	for _, p := range pids {
		dir := filepath.Join("/proc", strconv.Itoa(p), "fd")
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			if target, err := os.Readlink(filepath.Join(dir, e.Name())); err == nil && strings.HasPrefix(target, "anon_inode:bpf") {
				return true
			}
		}
	}
	return false
}

// TestSweepStartsNoCounter: the ronly a watchdog execs to sweep runs with
// its dead supervisor's arguments (init/watchdog.c). With --count-writes
// among them, the C side must not take it for a counting session and
// start the helper. (With an audit log too, so that a session of the same
// line starts one on every kernel.)
func TestSweepStartsNoCounter(t *testing.T) {
	b, dir := withFakeWritewatch(t, "ronly-e2e-sweep-")
	log := filepath.Join(dir, "helper.log")
	audit := "--audit-log=" + filepath.Join(dir, "audit.jsonl")
	cmd := exec.Command(b.ronly, audit, "--count-writes", "--", "true")
	cmd.Env = []string{"_RONLY_SWEEP=1", "RONLY_E2E_HELPER_LOG=" + log}
	cmd.Dir = "/"
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("the sweep: %v\n%s", err, out)
	}
	if hs := readHelperLog(t, log); len(hs) > 0 {
		t.Errorf("the sweep started %d write counter helpers", len(hs))
	}
	// The same line as a session does start one: the check above can fail.
	cmd = exec.Command(b.ronly, audit, "--count-writes", "--", "true")
	cmd.Env = []string{"PATH=/usr/bin:/bin", "RONLY_E2E_HELPER_LOG=" + log}
	cmd.Dir = "/"
	cmd.CombinedOutput()
	if hs := readHelperLog(t, log); len(hs) == 0 {
		t.Error("a counting session started no helper either: the fake helper is not found")
	}
}
