package metrics_e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// hangGuard bounds one batch of real sessions, so that a hung sandbox
// fails the test instead of the whole suite. It is not a timing assertion.
const hangGuard = 3 * time.Minute

// refusedPrelude defines `refused CMD...`: CMD must fail, else the session
// says what got through and exits 99. What CMD says goes to /dev/null, so
// a session's stderr holds only what ronly itself says.
const refusedPrelude = `set -u
refused() { if "$@" 2>/dev/null; then echo "not refused: $*"; exit 99; fi; }
`

// everyRefusal attempts, in one session, each kind of refusal ronly
// counts: 2 unshare(CLONE_NEWUSER) and 1 keyctl, refused by the seccomp
// filter (EPERM); an unlink, an open creating a file and a mkdir in a
// directory of the host, refused by the read-only mounts (EROFS); docker
// run and docker rm, refused by the docker shim (no docker CLI or daemon
// needed); and POST /containers/{id}/kill, answered 403 by the Docker API
// guard in front of DOCKER_HOST.
const everyRefusal = refusedPrelude + `
refused unshare -U true
refused unshare -U true
# exits 1 when keyctl was refused with EPERM, 0 when it was not
refused python3 -c 'import ctypes, sys; libc = ctypes.CDLL(None, use_errno=True); sys.exit(libc.syscall(250, 0) == -1 and ctypes.get_errno() == 1)'
refused rm "$RONLY_E2E_DIR/victim"
refused sh -c 'echo x > "$RONLY_E2E_DIR/new"'
refused mkdir "$RONLY_E2E_DIR/dir"
refused docker run ronly-metrics-e2e
refused docker rm -f ronly-metrics-e2e
code=$(curl -s -o /dev/null -w '%{http_code}' --unix-socket "${DOCKER_HOST#unix://}" -X POST http://docker/containers/ronly-metrics-e2e/kill)
[ "$code" = 403 ] || { echo "POST /containers/ronly-metrics-e2e/kill: HTTP $code, want 403"; exit 99; }
`

// twoUnsharesAndAWrite is a session of the concurrency tests: 2 refused
// unshare(CLONE_NEWUSER) and 1 refused mkdir.
const twoUnsharesAndAWrite = refusedPrelude + `
refused unshare -U true
refused unshare -U true
refused mkdir "$RONLY_E2E_DIR/dir"
`

// TestPrometheusCountsRealSessions: Debian's Prometheus scrapes a real
// exporter that real sessions reported to, each having attempted every
// kind of refused action; Prometheus's HTTP API answers the exact counts,
// and nothing else was counted. The deployment's alert rules load, and
// what the live exporter serves passes promtool's lint.
func TestPrometheusCountsRealSessions(t *testing.T) {
	needRoot(t)
	needTool(t, "python3")
	needTool(t, "curl")
	e := startExporter(t, t.TempDir())
	p := startPrometheus(t, e.addr)
	dir := hostDir(t)
	docker := fakeDocker(t, dir)
	rep := filepath.Join(t.TempDir(), "report.json")
	const n = 5
	lost := runSessions(t, n, dir, []string{"DOCKER_HOST=unix://" + docker}, func(i int) []string {
		if i == 0 { // the layers the sessions had, for the gauges
			return []string{"--metrics-socket", e.socket, "--report", rep}
		}
		return []string{"--metrics-socket", e.socket}
	}, everyRefusal)
	if lost > 0 {
		t.Fatalf("%d of %d sessions did not deliver their metrics to the exporter", lost, n)
	}
	abi := landlockABI(t, rep)

	// Each session had its report counted before it ended; one scrape
	// holds them all, so once Prometheus has the sessions it has the rest.
	sessions := `ronly_sessions_total{job="ronly",result="ok"}`
	waitFor(t, "prometheus scraped the sessions", func() (bool, string) {
		got, err := p.query(sessions)
		if err != nil {
			return false, err.Error()
		}
		return got == n, fmt.Sprint(got)
	})
	for _, c := range []struct {
		q    string
		want float64
	}{
		{`ronly_blocked_syscalls_total{job="ronly",syscall="unshare"}`, 2 * n},
		{`ronly_blocked_syscalls_total{job="ronly",syscall="keyctl"}`, n},
		{`sum(ronly_blocked_syscalls_total{job="ronly"})`, 3 * n},
		{`ronly_blocked_writes_total{job="ronly",operation="unlink"}`, n},
		{`ronly_blocked_writes_total{job="ronly",operation="open"}`, n},
		{`ronly_blocked_writes_total{job="ronly",operation="mkdir"}`, n},
		{`sum(ronly_blocked_writes_total{job="ronly"})`, 3 * n},
		{`ronly_blocked_commands_total{job="ronly",tool="docker",subcommand="run"}`, n},
		{`ronly_blocked_commands_total{job="ronly",tool="docker",subcommand="rm"}`, n},
		{`sum(ronly_blocked_commands_total{job="ronly"})`, 2 * n},
		{`ronly_blocked_api_calls_total{job="ronly",api="docker",verb="POST",resource="/containers/{id}/kill"}`, n},
		{`sum(ronly_blocked_api_calls_total{job="ronly"})`, n},
		{sessions, n},
		{`ronly_sessions_total{job="ronly",result="failed"}`, 0},
		{`ronly_session_duration_seconds_count{job="ronly"}`, n},
		{`ronly_session_duration_seconds_bucket{job="ronly",le="+Inf"}`, n},
		{`ronly_reports_received_total{job="ronly",via="socket"}`, n},
		{`ronly_reports_received_total{job="ronly",via="spool"}`, 0},
		{`ronly_reports_malformed_total{job="ronly"}`, 0},
		{`ronly_write_counting{job="ronly"}`, 1},
		{`ronly_seccomp_counting{job="ronly"}`, 1},
		{`ronly_landlock_abi{job="ronly"}`, float64(abi)},
	} {
		got, err := p.query(c.q)
		if err != nil {
			t.Errorf("%s: %v", c.q, err)
		} else if got != c.want {
			t.Errorf("%s = %v, want %v", c.q, got, c.want)
		}
	}

	// The deployment's rules are loaded and healthy.
	waitFor(t, "alert rules loaded", func() (bool, string) {
		resp, err := http.Get(p.base + "/api/v1/rules?type=alert")
		if err != nil {
			return false, err.Error()
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return bytes.Contains(body, []byte(`"RonlyBlockedSyscallsHigh"`)) &&
			bytes.Contains(body, []byte(`"RonlyExporterDown"`)) &&
			!bytes.Contains(body, []byte(`"health":"err"`)), string(body)
	})
	// What the live exporter serves passes promtool's lint too.
	promtool := needTool(t, "promtool")
	resp, err := http.Get("http://" + e.addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = resp.Body
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics on the live exporter: %v\n%s", err, out)
	}
}

// TestConcurrentSessions: 50 real sessions at once, reporting to the
// exporter, add up exactly.
func TestConcurrentSessions(t *testing.T) {
	needRoot(t)
	e := startExporter(t, t.TempDir())
	dir := hostDir(t)
	const n = 50
	flags := func(int) []string { return []string{"--metrics-socket", e.socket, "--metrics-spool", e.spool} }
	lost := runSessions(t, n, dir, nil, flags, twoUnsharesAndAWrite)
	if lost > 0 {
		t.Fatalf("%d of %d sessions did not deliver their metrics to the exporter", lost, n)
	}
	// A session ends only after the exporter counted its report, or after
	// its 150 ms for an answer ran out: then its report went into the
	// exporter's spool, which it ingests every 100 ms here. Either way
	// each report is counted once.
	waitFor(t, "every report received", func() (bool, string) {
		m := e.metrics(t)
		got := m[`ronly_reports_received_total{via="socket"}`] + m[`ronly_reports_received_total{via="spool"}`]
		return got >= n, fmt.Sprintf("%v received", got)
	})
	m := e.metrics(t)
	t.Logf("received: %v by socket, %v from the spool", m[`ronly_reports_received_total{via="socket"}`], m[`ronly_reports_received_total{via="spool"}`])
	want := concurrentWant(n)
	want[`ronly_reports_malformed_total`] = 0
	want[`ronly_reports_dropped_total`] = 0
	if m := exactly(m, want); m != "" {
		t.Errorf("exporter after %d concurrent sessions: %s", n, m)
	}
	if got := m[`ronly_reports_received_total{via="socket"}`] + m[`ronly_reports_received_total{via="spool"}`]; got != n {
		t.Errorf("the exporter received %v reports, want %d", got, n)
	}
}

// TestConcurrentSessionsTextfile: 50 real sessions at once, merging into
// one node_exporter textfile under its lock, add up exactly, and the file
// passes promtool. (The lock used to be polled with LOCK_NB: 50 sessions
// ending at once on 2 CPUs starved the holder and some gave up. It is a
// blocking flock now, bounded by the session's metrics budget.)
func TestConcurrentSessionsTextfile(t *testing.T) {
	needRoot(t)
	path := filepath.Join(t.TempDir(), "ronly.prom")
	dir := hostDir(t)
	const n = 50
	flags := func(int) []string { return []string{"--metrics-textfile", path} }
	lost := runSessions(t, n, dir, nil, flags, twoUnsharesAndAWrite)
	if lost > 0 {
		t.Errorf("%d of %d sessions did not merge into the textfile (%s...)", lost, n, notDelivered)
	}
	// A session that could not take the lock in its budget left its
	// report beside the file (and said "metrics queued"); the next
	// session's merge adds every such report. So after one more, all
	// n+1 are in, each once, and nothing is left beside the file.
	if lost := runSessions(t, 1, dir, nil, flags, twoUnsharesAndAWrite); lost > 0 {
		t.Fatalf("the session after the %d: metrics not delivered", n)
	}
	text, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if m := exactly(parseExposition(t, bytes.NewReader(text)), concurrentWant(n+1-lost)); m != "" {
		t.Errorf("textfile after %d concurrent sessions and one more, %d of them not delivered: %s\n%s", n, lost, m, text)
	}
	entries, err := os.ReadDir(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() != filepath.Base(path) {
			t.Errorf("%s left beside the textfile", e.Name())
		}
	}
	promtool := needTool(t, "promtool")
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = bytes.NewReader(text)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}

// concurrentWant is what n sessions of twoUnsharesAndAWrite add up to, as
// sample keys of the exposition.
func concurrentWant(n int) map[string]float64 {
	f := float64(n)
	return map[string]float64{
		`ronly_blocked_syscalls_total{syscall="unshare"}`:  2 * f,
		`ronly_blocked_writes_total{operation="mkdir"}`:    f,
		`ronly_sessions_total{result="ok"}`:                f,
		`ronly_sessions_total{result="failed"}`:            0,
		`ronly_sessions_total{result="lost"}`:              0, // none taken for dead while it ran
		`ronly_session_duration_seconds_count`:             f,
		`ronly_session_duration_seconds_bucket{le="+Inf"}`: f,
		`ronly_write_counting`:                             1,
		`ronly_seccomp_counting`:                           1,
	}
}

// exactly is mismatch, and also names every refusal counted that want
// does not expect.
func exactly(got, want map[string]float64) string {
	s := mismatch(got, want)
	var extra []string
	for k, v := range got {
		if _, ok := want[k]; !ok && strings.HasPrefix(k, "ronly_blocked_") && v != 0 {
			extra = append(extra, fmt.Sprintf("%s = %v", k, v))
		}
	}
	sort.Strings(extra)
	if len(extra) > 0 {
		s += "unexpected refusals counted: " + strings.Join(extra, ", ")
	}
	return s
}

// hostDir makes a directory of the host that sessions see read-only (it
// is not under /tmp), named by RONLY_E2E_DIR in their environment. It
// holds "victim", which they try to remove; they also try to create "new"
// and "dir" in it. At cleanup it must hold just the victim, unchanged.
func hostDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("/var/tmp", "ronly-metrics-e2e-")
	if err != nil {
		t.Fatal(err)
	}
	victim := filepath.Join(dir, "victim")
	if err := os.WriteFile(victim, []byte("victim\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		defer os.RemoveAll(dir)
		if b, err := os.ReadFile(victim); err != nil || string(b) != "victim\n" {
			t.Errorf("the host's %s changed: %q, %v", victim, b, err)
		}
		entries, _ := os.ReadDir(dir)
		for _, ent := range entries {
			if ent.Name() != "victim" {
				t.Errorf("%s appeared on the host", filepath.Join(dir, ent.Name()))
			}
		}
	})
	return dir
}

// fakeDocker listens on a unix socket in dir, which a session's Docker API
// guard (DOCKER_HOST=unix://PATH) takes for the host's Docker. The guard
// answers refused calls itself, so nothing here has to answer anything.
func fakeDocker(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "docker.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() }) // which removes the socket
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	return path
}

// runSessions runs n real ronly sessions of script at once (started
// together, as on a busy host), each with flags(i) before the command,
// RONLY_E2E_DIR=dir and env in its environment. Each must exit 0 with
// nothing on stderr (the scripts silence what they run, so anything there
// is ronly's own, such as a warning that a layer is off and counts
// nothing), except that a session may say its metrics were not delivered:
// it then merged or sent nothing, and undelivered counts those sessions.
func runSessions(t *testing.T, n int, dir string, env []string, flags func(i int) []string, script string) (undelivered int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	env = append(append(os.Environ(), "RONLY_E2E_DIR="+dir), env...)
	errs := make([]error, n)
	lost := make([]bool, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	began := time.Now()
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// --count-writes: the scripts' refused writes are among the
			// counts every test here expects (counting is off by default).
			cmd := exec.CommandContext(ctx, ronly, append(flags(i), "--count-writes", "--", "/bin/sh", "-c", script)...)
			cmd.Dir = "/"
			cmd.Env = env
			var stdout, stderr strings.Builder
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			<-start
			err := cmd.Run()
			switch {
			case ctx.Err() != nil:
				errs[i] = fmt.Errorf("session %d did not end within %v (hang guard)\nstdout:\n%s\nstderr:\n%s", i, hangGuard, &stdout, &stderr)
			case err == nil && strings.HasPrefix(stderr.String(), notDelivered) && strings.Count(stderr.String(), "\n") == 1:
				lost[i] = true
				t.Logf("session %d: %s", i, strings.TrimSpace(stderr.String()))
			case err == nil && strings.HasPrefix(stderr.String(), metricsQueued) && strings.Count(stderr.String(), "\n") == 1:
				// Delivered late: the next session's merge adds it.
			case err != nil || stderr.Len() > 0:
				errs[i] = fmt.Errorf("session %d: exit %v\nstdout:\n%s\nstderr:\n%s", i, err, &stdout, &stderr)
			}
		}()
	}
	close(start)
	wg.Wait()
	t.Logf("%d sessions at once took %v", n, time.Since(began).Round(time.Millisecond))
	for i, err := range errs {
		if err != nil {
			t.Error(err)
		}
		if lost[i] {
			undelivered++
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	return undelivered
}

// notDelivered starts what a session says when its metrics went nowhere.
const notDelivered = "ronly: warning: metrics not delivered: "

// metricsQueued starts what a session says when its report waits beside
// the textfile for the next session's merge.
const metricsQueued = "ronly: warning: metrics queued: "

// landlockABI is the Landlock ABI a session's --report says it used.
func landlockABI(t *testing.T, path string) int {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var r struct {
		Layers struct {
			LandlockABI int `json:"landlock_abi"`
		}
	}
	if err := json.Unmarshal(data, &r); err != nil {
		t.Fatalf("report %s: %v", path, err)
	}
	return r.Layers.LandlockABI
}
