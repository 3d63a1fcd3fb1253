package metrics

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"ronly.dev/ronly/go/hostfile"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

var t0 = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

// goldenReports are a fixed set of sessions: the golden exposition is what
// they add up to.
func goldenReports() []Report {
	return []Report{
		{
			Session: "s1", Start: t0, End: t0.Add(2500 * time.Millisecond),
			LandlockABI: 5, SeccompMode: SeccompNotify,
			BlockedSyscalls:   map[string]uint64{"mount": 3, "ptrace": 1},
			BlockedWrites:     map[string]uint64{"unlink": 2, "open-write": 7},
			BlockedCommands:   map[string]uint64{"docker rm": 1, "kubectl delete": 2},
			BlockedAPICalls:   map[string]uint64{"POST /containers/{id}/kill": 1},
			AuditLinesDropped: 7,
		},
		{
			Session: "s2", Start: t0, End: t0.Add(40 * time.Second),
			LandlockABI: 2, SeccompMode: SeccompErrno,
			BlockedSyscalls:   map[string]uint64{"mount": 1},
			BlockedCommands:   map[string]uint64{"git": 1, "docker other": 4},
			BlockedAPICalls:   map[string]uint64{"DELETE /containers/{id}": 2, "kubernetes delete pods": 3},
			AuditLinesDropped: 5,
		},
		// Older than s2: must not overwrite the gauges.
		{
			Session: "s3", Start: t0.Add(-time.Hour), End: t0.Add(-time.Hour + 90*time.Millisecond),
			LandlockABI: 6, SeccompMode: SeccompNotify,
			BlockedWrites: map[string]uint64{"rename": 1, `we"ird\label` + "\n": 1},
		},
		// Failed: counted as a session, gauges untouched.
		{Session: "s4", Start: t0.Add(time.Hour), End: t0.Add(time.Hour + time.Millisecond), Failed: true, ExitCode: 125},
	}
}

func goldenSet() *Set {
	s := NewSet()
	for _, r := range goldenReports() {
		s.Add(r)
	}
	return s
}

func TestGoldenExposition(t *testing.T) {
	var got bytes.Buffer
	if err := goldenSet().WriteText(&got); err != nil {
		t.Fatal(err)
	}
	checkGolden(t, "testdata/sessions.prom", got.Bytes())
	promtoolCheckMetrics(t, got.Bytes())
}

func TestGoldenExporterExposition(t *testing.T) {
	e := NewExporter(t.TempDir())
	for _, r := range goldenReports() {
		if err := e.Ingest(mustJSON(t, r), "socket"); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.Ingest([]byte("{not json"), "socket"); err == nil {
		t.Fatal("malformed report accepted")
	}
	// The same text as the session's textfile writer's; promexport's
	// tests check that client_golang serves exactly this too.
	var b bytes.Buffer
	if err := e.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	got := b.Bytes()
	checkGolden(t, "testdata/exporter.prom", got)
	promtoolCheckMetrics(t, got)
}

func checkGolden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test ./go/metrics -update writes it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("exposition differs from %s (a renamed metric breaks dashboards; if intended, rerun with -update):\n got:\n%s\nwant:\n%s", path, got, want)
	}
}

// promtoolCheckMetrics lints an exposition with Prometheus's own linter.
// Under CI a missing promtool is a failure: tools/install-deps installs it.
func promtoolCheckMetrics(t *testing.T, exposition []byte) {
	t.Helper()
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("promtool not found (Debian package prometheus); CI=true, so this fails instead of skipping")
		}
		t.Skip("promtool not found (Debian package prometheus)")
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = bytes.NewReader(exposition)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}
}

// A lost session (its supervisor died; a sweep reports it) counts as a
// session with result "lost" and nothing else, even what its report
// claims: no counts, duration or gauges.
func TestLostSession(t *testing.T) {
	s := goldenSet()
	var before bytes.Buffer
	if err := s.WriteText(&before); err != nil {
		t.Fatal(err)
	}
	s.Add(Report{Session: "s5", Start: t0.Add(2 * time.Hour), End: t0.Add(3 * time.Hour), Lost: true, LandlockABI: 9,
		SeccompMode: SeccompErrno, BlockedSyscalls: map[string]uint64{"mount": 100}})
	var after bytes.Buffer
	if err := s.WriteText(&after); err != nil {
		t.Fatal(err)
	}
	want := strings.Replace(before.String(), `ronly_sessions_total{result="lost"} 0`, `ronly_sessions_total{result="lost"} 1`, 1)
	if want == before.String() {
		t.Fatalf("no lost sessions at zero before:\n%s", before.String())
	}
	if after.String() != want {
		t.Errorf("a lost session changed more than its count:\n got:\n%s\nwant:\n%s", after.String(), want)
	}
}

func TestLabelValuesBounded(t *testing.T) {
	s := NewSet()
	// Many sessions, each under its per-report bound (bounds.go).
	r := Report{Session: "x", Start: t0, End: t0, BlockedSyscalls: map[string]uint64{}}
	for i := 0; i < MaxLabelValues+50; i++ {
		r.BlockedSyscalls[fmt.Sprintf("sys%03d", i)] = 1
		if len(r.BlockedSyscalls) == maxReportSyscalls {
			s.Add(r)
			r.BlockedSyscalls = map[string]uint64{}
		}
	}
	r.BlockedSyscalls[strings.Repeat("x", maxLabelLen+1)] = 1
	r.BlockedSyscalls["\xff\xfe"] = 1
	s.Add(r)
	m := s.counters[blockedSyscalls]
	// "other" may take one of the slots (an unusable value came first).
	if len(m) < MaxLabelValues || len(m) > MaxLabelValues+1 || m[other] == 0 {
		t.Errorf("%d series (other: %d), want %d values and other", len(m), m[other], MaxLabelValues)
	}
	var total uint64
	for _, n := range m {
		total += n
	}
	if want := uint64(MaxLabelValues + 52); total != want || m[other] < 52 {
		t.Errorf("total %d (other %d), want %d: folding must not lose counts", total, m[other], want)
	}
}

func TestTextRoundTrip(t *testing.T) {
	var first, second bytes.Buffer
	goldenSet().WriteText(&first)
	s := NewSet()
	if err := s.readText(bytes.NewReader(first.Bytes())); err != nil {
		t.Fatal(err)
	}
	s.WriteText(&second)
	// NewSet's two zero sessions series are read back as zero: equal.
	if first.String() != second.String() {
		t.Errorf("round trip changed the exposition:\n%s\nvs\n%s", first.String(), second.String())
	}
}

// TestReadTextKeepsRonlySamples: a textfile written by an earlier ronly
// (label order as written, families in its order) with foreign lines merges
// its ronly_ samples; a broken ronly_ sample is an error.
func TestReadTextKeepsRonlySamples(t *testing.T) {
	in := `# HELP node_foo not ours
# TYPE node_foo gauge
node_foo{x="y"} 1
not an exposition line {{{
# HELP ronly_blocked_commands_total Commands a shim refused inside ronly sessions, by tool and subcommand.
# TYPE ronly_blocked_commands_total counter
ronly_blocked_commands_total{tool="docker",subcommand="rm"} 3
ronly_blocked_commands_total{tool="",subcommand="x"} 1
ronly_future_total{a="b"} 9
# HELP ronly_session_duration_seconds Wall-clock duration of ronly sessions.
# TYPE ronly_session_duration_seconds histogram
ronly_session_duration_seconds_bucket{le="0.1"} 1
ronly_session_duration_seconds_bucket{le="0.2"} 1
ronly_session_duration_seconds_bucket{le="+Inf"} 2
ronly_session_duration_seconds_sum 7.5
ronly_session_duration_seconds_count 2
# TYPE ronly_landlock_abi gauge
ronly_landlock_abi 4
`
	s := NewSet()
	if err := s.readText(strings.NewReader(in)); err != nil {
		t.Fatal(err)
	}
	m := s.counters[blockedCommands]
	if len(m) != 2 || m["docker"+sep+"rm"] != 3 || m[other+sep+"x"] != 1 {
		t.Errorf("blocked commands %v", m)
	}
	if s.durBuckets[0] != 1 || s.durBuckets[len(durationBuckets)] != 2 || s.durSum != 7.5 || s.gauges[landlockABI] != 4 {
		t.Errorf("buckets %v, sum %v, landlock %v", s.durBuckets, s.durSum, s.gauges[landlockABI])
	}
	err := NewSet().readText(strings.NewReader("x\nronly_sessions_total{result=\"ok} 1\n"))
	if err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("broken sample: %v, want an error on line 2", err)
	}
}

func TestMergeTextfileAddsUp(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ronly.prom")
	for _, r := range goldenReports() {
		if err := MergeTextfile(path, r, time.Now().Add(time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// Gauges in the textfile come from the last merged report that knew
	// them, not the newest by End time: the file does not keep times.
	// Here the last such report is s3.
	want := goldenSet()
	want.gauges[landlockABI] = 6
	want.gauges[seccompCounting] = 1
	var wb bytes.Buffer
	want.WriteText(&wb)
	wb.WriteString(mergedLine + queuedName("ronly.prom", goldenReports()[3].Session) + "\n")
	if string(got) != wb.String() {
		t.Errorf("textfile after 4 merges:\n%s\nwant:\n%s", got, wb.String())
	}
	promtoolCheckMetrics(t, got)
	entries, _ := os.ReadDir(filepath.Dir(path))
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			t.Errorf("temporary file %s left behind", e.Name())
		}
	}
}

// holdLock takes the lock sessions take on d, as another process would.
func holdLock(t *testing.T, d *hostfile.Dir) *os.File {
	t.Helper()
	held, err := d.LockFile()
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Flock(int(held.Fd()), unix.LOCK_EX); err != nil {
		held.Close()
		t.Fatal(err)
	}
	return held
}

// TestMergeTextfileQueued: a report that cannot take the lock before its
// deadline waits beside the textfile, and the next merge adds it, once.
func TestMergeTextfileQueued(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "ronly.prom")
	d, err := hostfile.OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	held := holdLock(t, d)
	r := Report{Session: "late", BlockedSyscalls: map[string]uint64{"mount": 3}}
	err = MergeTextfile(path, r, time.Now().Add(50*time.Millisecond))
	var q *QueuedError
	if !errors.As(err, &q) {
		t.Fatalf("merge with the lock held elsewhere: %v, want a QueuedError", err)
	}
	if _, err := os.Stat(q.Name); err != nil {
		t.Fatalf("the queued report: %v", err)
	}
	held.Close()
	if err := MergeTextfile(path, Report{Session: "next"}, time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	// A merger that dies after its rename leaves its reports behind; the
	// file names them, so the next merge removes them uncounted.
	data, _ := os.ReadFile(path)
	if err := os.WriteFile(filepath.Join(dir, queuedName("ronly.prom", "next")), []byte(`{"session":"next"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(data, []byte(queuedName("ronly.prom", "next"))) {
		t.Fatalf("the textfile does not name its last merge:\n%s", data)
	}
	if err := MergeTextfile(path, Report{Session: "third"}, time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	s := NewSet()
	f, _ := os.Open(path)
	defer f.Close()
	if err := s.readText(f); err != nil {
		t.Fatal(err)
	}
	if got := s.counters[sessions]["ok"]; got != 3 {
		t.Errorf("sessions ok = %d, want 3 (late, next, third: each once)", got)
	}
	if got := s.counters[blockedSyscalls]["mount"]; got != 3 {
		t.Errorf("mount = %d, want 3", got)
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if e.Name() != "ronly.prom" {
			t.Errorf("%s left beside the textfile", e.Name())
		}
	}
}

// TestMergeTextfileConcurrent: 50 merges at once, each with the session's
// usual deadline, and one more after them: each report is counted once.
// (How many of the 50 were left queued for the last one depends on the
// machine's load; none is lost.)
func TestMergeTextfileConcurrent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ronly.prom")
	const n = 50
	errs := make(chan error, n)
	for i := range n {
		go func() {
			r := Report{Session: fmt.Sprintf("s%d", i), BlockedSyscalls: map[string]uint64{"unshare": 2}}
			errs <- MergeTextfile(path, r, time.Now().Add(DefaultTimeout))
		}()
	}
	queued := 0
	for range n {
		var q *QueuedError
		switch err := <-errs; {
		case errors.As(err, &q):
			queued++
		case err != nil:
			t.Error(err)
		}
	}
	t.Logf("%d of %d left queued for the next merge", queued, n)
	last := Report{Session: "last", BlockedSyscalls: map[string]uint64{"unshare": 2}}
	if err := MergeTextfile(path, last, time.Now().Add(10*time.Second)); err != nil {
		t.Fatal(err)
	}
	s := NewSet()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := s.readText(f); err != nil {
		t.Fatal(err)
	}
	if got := s.counters[blockedSyscalls]["unshare"]; got != 2*(n+1) {
		t.Errorf("unshare = %d, want %d", got, 2*(n+1))
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	for _, e := range entries {
		if e.Name() != "ronly.prom" {
			t.Errorf("%s left beside the textfile", e.Name())
		}
	}
}

func TestSpoolName(t *testing.T) {
	for in, want := range map[string]string{
		"abc-123_x.y": "abc-123_x.y.json",
		"../etc/x":    "",
		".hidden":     "",
		"a/b":         "",
		"":            "",
	} {
		got := spoolName(in)
		if want != "" && got != want {
			t.Errorf("spoolName(%q) = %q, want %q", in, got, want)
		}
		if want == "" && (strings.ContainsAny(got, "/") || strings.HasPrefix(got, ".") || len(got) != 32+len(spoolExt)) {
			t.Errorf("spoolName(%q) = %q, want a hash", in, got)
		}
	}
}
