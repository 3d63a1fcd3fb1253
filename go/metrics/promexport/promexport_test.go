package promexport

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"ronly.dev/ronly/go/metrics"
)

var t0 = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

// reports cover every family, escapes in label values, label values
// folded into "other", a failed session and both ways of arriving.
func reports() []metrics.Report {
	many := map[string]uint64{}
	for i := 0; i < 40; i++ {
		many[fmt.Sprintf("sys%02d", i)] = uint64(i + 1)
	}
	return []metrics.Report{
		{
			Session: "a", Start: t0, End: t0.Add(2500 * time.Millisecond),
			LandlockABI: 5, SeccompMode: metrics.SeccompNotify, WriteCounting: true, SocketMediation: true,
			BlockedSyscalls:   map[string]uint64{"mount": 3, "ptrace": 1},
			BlockedWrites:     map[string]uint64{"unlink": 2, `we"ird\label` + "\n": 1, strings.Repeat("x", 200): 1},
			BlockedCommands:   map[string]uint64{"docker rm": 1, "git": 2},
			BlockedAPICalls:   map[string]uint64{"POST /containers/{id}/kill": 1, "kubernetes delete pods": 3},
			AuditLinesDropped: 7, ShimReportsMalformed: 2,
		},
		{Session: "b", Start: t0, End: t0.Add(40 * time.Second), LandlockABI: 2, SeccompMode: metrics.SeccompErrno, BlockedSyscalls: many},
		{Session: "c", Start: t0.Add(time.Hour), End: t0.Add(time.Hour + time.Millisecond), Failed: true, ExitCode: 125},
	}
}

func exporterWith(t *testing.T) *metrics.Exporter {
	t.Helper()
	e := metrics.NewExporter(t.TempDir())
	for i, r := range reports() {
		data, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		via := []string{"socket", "spool"}[i%2]
		if err := e.Ingest(data, via); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.Ingest([]byte("{not json"), "socket"); err == nil {
		t.Fatal("malformed report accepted")
	}
	return e
}

// What Prometheus gets from /metrics through client_golang is byte for
// byte what the session's own text writer makes of the same Set (whose
// golden files go/metrics' tests keep): the two outputs cannot drift.
func TestHandlerServesWhatWriteTextWrites(t *testing.T) {
	e := exporterWith(t)
	h, err := Handler(e, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Prometheus's Accept header offers OpenMetrics first; the handler
	// answers in the text format.
	req := httptest.NewRequest("GET", "/metrics", nil)
	req.Header.Set("Accept", "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if ct := rec.Header().Get("Content-Type"); rec.Code != 200 || !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
		t.Fatalf("/metrics: %d, Content-Type %q\n%s", rec.Code, ct, rec.Body)
	}
	var want bytes.Buffer
	if err := e.WriteText(&want); err != nil {
		t.Fatal(err)
	}
	got := rec.Body.Bytes()
	if !bytes.Equal(got, want.Bytes()) {
		t.Errorf("client_golang's exposition differs from metrics.WriteText's:\n got:\n%s\nwant:\n%s", got, want.Bytes())
	}
	for _, s := range []string{`ronly_blocked_writes_total{operation="we\"ird\\label\n"} 1`, `ronly_blocked_writes_total{operation="other"} 1`,
		`ronly_reports_received_total{via="spool"} 1`, `ronly_reports_malformed_total 1`, `ronly_session_duration_seconds_count 3`,
		`ronly_sessions_total{result="failed"} 1`, `ronly_landlock_abi 2`, `ronly_socket_mediation 0`} {
		if !bytes.Contains(got, []byte(s+"\n")) {
			t.Errorf("exposition lacks %s", s)
		}
	}
	promtoolCheckMetrics(t, got)
}

// A fresh exporter serves its zero counters (so that rate() sees the
// first failure) the same way through both writers.
func TestEmptyExporter(t *testing.T) {
	e := metrics.NewExporter(t.TempDir())
	h, err := Handler(e, nil)
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	var want bytes.Buffer
	if err := e.WriteText(&want); err != nil {
		t.Fatal(err)
	}
	if rec.Code != 200 || rec.Body.String() != want.String() {
		t.Errorf("/metrics: %d\n%s\nwant:\n%s", rec.Code, rec.Body, want.String())
	}
	if !strings.Contains(want.String(), `ronly_sessions_total{result="failed"} 0`) {
		t.Errorf("a fresh exporter lacks the zero failed sessions:\n%s", want.String())
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
