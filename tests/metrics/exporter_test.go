package metrics_e2e

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"ronly.dev/ronly/go/metrics"
)

// TestConcurrentDeliver: 50 reports delivered at once all count, exactly
// once. Real sessions (TestConcurrentSessions) cannot show what this does:
// known durations adding up in the histogram, and a report whose answer
// came late being spooled into the exporter's own spool (a session's spool
// is the host's) without counting twice.
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

// TestConcurrentTextfile: 50 reports merging into one node_exporter
// textfile at once lose no counts, down to the histogram's sum, which
// real sessions (TestConcurrentSessionsTextfile) cannot know.
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

// TestExporterBadFlags: ronly-exporter refuses a bad flag value with exit
// 125 and one line naming the flag and the value, before it creates its
// socket or listens.
func TestExporterBadFlags(t *testing.T) {
	for _, tc := range []struct {
		flag, value, want string
	}{
		{"--socket-mode", "999", `ronly-exporter: --socket-mode "999": not an octal file mode`},
		{"--spool-interval", "0s", `ronly-exporter: --spool-interval 0s: must be positive`},
		{"--listen", "127.0.0.1:notaport", `ronly-exporter: --listen: `},
	} {
		dir := t.TempDir()
		socket := filepath.Join(dir, "run", "exporter.sock")
		cmd := exec.Command(exporterBin, "--socket", socket, "--spool", filepath.Join(dir, "spool"), tc.flag, tc.value)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		err := cmd.Run()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 125 {
			t.Errorf("%s %s: %v, want exit 125\n%s", tc.flag, tc.value, err, stderr.String())
		}
		lines := strings.Split(strings.TrimSuffix(stderr.String(), "\n"), "\n")
		if len(lines) != 1 || !strings.HasPrefix(lines[0], tc.want) {
			t.Errorf("%s %s: stderr %q, want one line starting %q", tc.flag, tc.value, stderr.String(), tc.want)
		}
		if entries, err := os.ReadDir(dir); err != nil || len(entries) != 0 {
			t.Errorf("%s %s: left %v in its directory (%v)", tc.flag, tc.value, entries, err)
		}
	}
}
