package metrics_e2e

import (
	"bytes"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"ronly.dev/ronly/go/metrics"
)

// TestPrometheusScrapesExporter: reports delivered to a real exporter reach
// a real Prometheus with their exact counts, and the deployment's alert
// rules load.
func TestPrometheusScrapesExporter(t *testing.T) {
	e := startExporter(t, t.TempDir())
	p := startPrometheus(t, e.addr)
	const n = 7
	for i := 0; i < n; i++ {
		if err := metrics.Deliver(session(t, i), metrics.DeliverOptions{Socket: e.socket, Spool: e.spool}); err != nil {
			t.Fatal(err)
		}
	}
	for q, want := range map[string]float64{
		`ronly_blocked_syscalls_total{job="ronly",syscall="mount"}`:                       2 * n,
		`ronly_blocked_commands_total{job="ronly",tool="docker",subcommand="rm"}`:         n,
		`ronly_blocked_api_calls_total{job="ronly",method="POST"}`:                        n,
		`ronly_sessions_total{job="ronly",result="ok"}`:                                   n,
		`ronly_session_duration_seconds_count{job="ronly"}`:                               n,
		`ronly_reports_received_total{job="ronly",via="socket"}`:                          n,
		`ronly_landlock_abi{job="ronly"}`:                                                 5,
		`ronly_seccomp_counting{job="ronly"}`:                                             1,
		`histogram_quantile(0.5, ronly_session_duration_seconds_bucket{job="ronly"}) > 1`: 0, // any value: present
	} {
		waitFor(t, q, func() (bool, string) {
			got, err := p.query(q)
			if err != nil {
				return false, err.Error()
			}
			return want == 0 || got == want, ""
		})
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

// TestConcurrentDeliver: 50 sessions ending at once all count, exactly once.
func TestConcurrentDeliver(t *testing.T) {
	e := startExporter(t, t.TempDir())
	const n = 50
	deliverAtOnce(t, n, metrics.DeliverOptions{Socket: e.socket, Spool: e.spool})
	// A report whose answer came late was also spooled: the exporter
	// ingests the spool every 100ms here and must not count it twice.
	want := expected(n)
	waitFor(t, "exact counts", func() (bool, string) {
		got := e.metrics(t)
		got["received"] = got[`ronly_reports_received_total{via="socket"}`] + got[`ronly_reports_received_total{via="spool"}`]
		want["received"] = n
		m := mismatch(got, want)
		return m == "", m
	})
}

// TestConcurrentTextfile: 50 sessions merging into one node_exporter
// textfile at once lose no counts, and the file passes promtool.
func TestConcurrentTextfile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ronly.prom")
	const n = 50
	// The default timeout: 50 merges serialise on the lock within it.
	deliverAtOnce(t, n, metrics.DeliverOptions{Textfile: path})
	text, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if m := mismatch(parseExposition(t, bytes.NewReader(text)), expected(n)); m != "" {
		t.Errorf("textfile after %d concurrent merges: %s\n%s", n, m, text)
	}
	promtool := needTool(t, "promtool")
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = bytes.NewReader(text)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}

// TestSpoolWhileExporterDown: reports of sessions that end while the
// exporter is down wait in the spool and are counted, once, when it starts.
func TestSpoolWhileExporterDown(t *testing.T) {
	dir := t.TempDir()
	socket, spool := filepath.Join(dir, "run", "exporter.sock"), filepath.Join(dir, "spool")
	const n = 5
	for i := 0; i < n; i++ {
		if err := metrics.Deliver(session(t, i), metrics.DeliverOptions{Socket: socket, Spool: spool}); err != nil {
			t.Fatal(err)
		}
	}
	files, _ := filepath.Glob(filepath.Join(spool, "*.json"))
	if len(files) != n {
		t.Fatalf("%d reports in the spool, want %d", len(files), n)
	}
	e := startExporter(t, dir)
	want := expected(n)
	want[`ronly_reports_received_total{via="spool"}`] = n
	want[`ronly_reports_received_total{via="socket"}`] = 0
	waitFor(t, "spooled reports counted", func() (bool, string) {
		m := mismatch(e.metrics(t), want)
		return m == "", m
	})
	files, _ = filepath.Glob(filepath.Join(spool, "*.json"))
	if len(files) != 0 {
		t.Errorf("spool not emptied: %v", files)
	}
	// Then a session while it is up goes by the socket.
	if err := metrics.Deliver(session(t, n), metrics.DeliverOptions{Socket: e.socket, Spool: e.spool}); err != nil {
		t.Fatal(err)
	}
	if got := e.metrics(t)[`ronly_reports_received_total{via="socket"}`]; got != 1 {
		t.Errorf("received via socket %v, want 1", got)
	}
	if got := e.metrics(t)[`ronly_sessions_total{result="ok"}`]; got != n+1 {
		t.Errorf("sessions %v, want %d", got, n+1)
	}
}

// deliverAtOnce delivers the reports of sessions 0..n-1 from n goroutines
// released together, as sessions ending at the same moment would.
func deliverAtOnce(t *testing.T, n int, o metrics.DeliverOptions) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	start := make(chan struct{})
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			errs <- metrics.Deliver(session(t, i), o)
		}()
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}
