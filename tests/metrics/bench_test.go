package metrics_e2e

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"ronly.dev/ronly/go/metrics"
)

// Budgets of the design: a host exporter must stay small and keep up with
// a busy host.
const (
	maxIdleRSS = 20 << 20 // bytes
)

// TestExporterRateAndMemory checks the real exporter's idle RSS against its
// budget and that 5,000 reports from 16 concurrent sessions are all counted;
// with -v it logs the rate and the RSS after.
func TestExporterRateAndMemory(t *testing.T) {
	e := startExporter(t, t.TempDir())
	pid := e.cmd.Process.Pid
	idle := rss(t, pid)

	const n, workers = 5000, 16
	var failed atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += workers {
				if err := metrics.Deliver(session(t, i), metrics.DeliverOptions{Socket: e.socket, Spool: e.spool}); err != nil {
					failed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if f := failed.Load(); f > 0 {
		t.Errorf("%d of %d deliveries failed", f, n)
	}
	waitFor(t, "all reports counted", func() (bool, string) {
		got := e.metrics(t)[`ronly_sessions_total{result="ok"}`]
		return got == n, fmt.Sprint(got)
	})
	spooled := e.metrics(t)[`ronly_reports_received_total{via="spool"}`]
	rate := float64(n) / elapsed.Seconds()
	loaded := rss(t, pid)
	t.Logf("exporter: idle RSS %.1f MiB; %d reports from %d sessions at once in %v = %.0f reports/s (%v of them via the spool); RSS after %.1f MiB",
		mib(idle), n, workers, elapsed.Round(time.Millisecond), rate, spooled, mib(loaded))
	if idle > maxIdleRSS {
		t.Errorf("idle RSS %.1f MiB, budget %.0f MiB", mib(idle), mib(maxIdleRSS))
	}
	// The rate is logged, not asserted: speed belongs in benchmarks
	// (BenchmarkExporterIngest), where a loaded machine cannot fail CI.
}

// BenchmarkExporterIngest: reports a second that a real exporter ingests
// from parallel Deliver calls (go test -bench . -run ^$ ./tests/metrics).
func BenchmarkExporterIngest(b *testing.B) {
	e := startExporter(b, b.TempDir())
	var i atomic.Int64
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := metrics.Deliver(session(b, int(i.Add(1))), metrics.DeliverOptions{Socket: e.socket, Spool: e.spool}); err != nil {
				b.Error(err)
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "reports/s")
	b.ReportMetric(mib(rss(b, e.cmd.Process.Pid)), "RSS-MiB")
}

// rss is a process's resident set size in bytes, from /proc.
func rss(t testing.TB, pid int) int64 {
	t.Helper()
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range bytes.Split(status, []byte("\n")) {
		if rest, ok := bytes.CutPrefix(line, []byte("VmRSS:")); ok {
			kb, err := strconv.ParseInt(string(bytes.TrimSuffix(bytes.TrimSpace(rest), []byte(" kB"))), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmRSS in /proc/pid/status")
	return 0
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }
