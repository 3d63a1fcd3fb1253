// Package metrics_e2e runs the real ronly-exporter with Debian's real
// Prometheus and promtool. Real sessions of the built binary, as root,
// attempt known refused actions (syscalls, writes, shimmed commands, Docker
// API calls), and what they report must reach the exporter, a node_exporter
// textfile and Prometheus with exact counts, also from 50 sessions at once.
// Reports delivered with metrics.Deliver, with known durations, cover what
// real sessions cannot: the exporter being down (a session's spool is the
// host's), exact histogram sums, the exporter's rate and memory. The
// deployment files in tools/deploy must pass Prometheus's own checks.
//
// go test ./tests/metrics builds ronly, ronly-exporter and ronly-writewatch;
// Bazel or CI may pass prebuilt ones with -ronly, -exporter and -writewatch. Missing prometheus/promtool (or python3, curl for the real
// sessions) skips, and so does not being root for the tests of real
// sessions, except under CI=true, where both fail. Everything listens on
// loopback or in a temporary directory.
package metrics_e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

var (
	ronlyFlag    = flag.String("ronly", "", "prebuilt ronly binary (default: go build ./go/cmd/ronly)")
	exporterFlag = flag.String("exporter", "", "prebuilt ronly-exporter binary (default: go build ./go/cmd/ronly-exporter)")
	wwFlag       = flag.String("writewatch", "", "prebuilt ronly-writewatch binary (default: go build ./go/cmd/ronly-writewatch), put beside ronly as --count-writes wants it")
)

// ronly and exporterBin are the binaries under test; repo is the
// repository's root.
var ronly, exporterBin, repo string

// deadline bounds every wait for something to appear; it is a hang guard,
// not a timing assertion.
const deadline = 60 * time.Second

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(run(m))
}

func run(m *testing.M) int {
	var err error
	if repo, err = repoRoot(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	dir, err := os.MkdirTemp("", "ronly-metrics-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	if ronly, err = binary(*ronlyFlag, dir, "./go/cmd/ronly"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if exporterBin, err = binary(*exporterFlag, dir, "./go/cmd/ronly-exporter"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if _, err = binary(*wwFlag, dir, "./go/cmd/ronly-writewatch"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

// binary puts a prebuilt binary into dir, or else builds pkg there, and
// returns its path: ronly finds ronly-writewatch beside itself.
func binary(prebuilt, dir, pkg string) (string, error) {
	out := filepath.Join(dir, filepath.Base(pkg))
	if prebuilt != "" {
		b, err := os.ReadFile(prebuilt)
		if err != nil {
			return "", err
		}
		return out, os.WriteFile(out, b, 0o755)
	}
	cmd := exec.Command("go", "build", "-o", out, pkg)
	cmd.Dir = repo
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go build %s: %w", pkg, err)
	}
	return out, nil
}

// repoRoot is the repository (go test) or the runfiles tree that holds
// this test's data (bazel test, which starts in it: rundir ".").
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d, nil
		}
		if _, err := os.Stat(filepath.Join(d, "tools", "deploy", "alerts.yml")); err == nil {
			return d, nil
		}
		if d == filepath.Dir(d) {
			return "", fmt.Errorf("no go.mod above %s", dir)
		}
	}
}

// needTool returns the path of a Debian tool, skipping the test without
// it, or failing under CI=true, where tools/install-deps installs it.
func needTool(t testing.TB, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	msg := name + " not found: tools/install-deps installs it"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg + " (CI=true, so this fails instead of skipping)")
	}
	t.Skip(msg)
	return ""
}

// needRoot skips a test of real sessions when not root, or fails it under
// CI=true: refused writes are counted by an eBPF program, which needs root.
func needRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	msg := "real ronly sessions count refused writes only as root; run the tests with sudo"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg + " (CI=true, so this fails instead of skipping)")
	}
	t.Skip(msg)
}

// exporter is a running ronly-exporter.
type exporter struct {
	cmd            *exec.Cmd
	addr           string // host:port of /metrics
	socket, spool  string
	stderr         *strings.Builder
	stderrFinished chan struct{}
}

// startExporter runs ronly-exporter on a free loopback port with its
// socket and spool in dir, and waits until it serves.
func startExporter(t testing.TB, dir string) *exporter {
	t.Helper()
	e := &exporter{
		socket: filepath.Join(dir, "run", "exporter.sock"),
		spool:  filepath.Join(dir, "spool"),
		stderr: &strings.Builder{}, stderrFinished: make(chan struct{}),
	}
	e.cmd = exec.Command(exporterBin, "--listen", "127.0.0.1:0",
		"--socket", e.socket, "--spool", e.spool, "--spool-interval", "100ms")
	pipe, err := e.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := e.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// The first line says where it serves: "... metrics on http://ADDR/metrics, ...".
	addrc := make(chan string, 1)
	go func() {
		defer close(e.stderrFinished)
		sc := bufio.NewScanner(pipe)
		for sc.Scan() {
			line := sc.Text()
			e.stderr.WriteString(line + "\n")
			if _, rest, ok := strings.Cut(line, "metrics on http://"); ok {
				addr, _, _ := strings.Cut(rest, "/")
				addrc <- addr
			}
		}
	}()
	t.Cleanup(func() { e.stop(t) })
	select {
	case e.addr = <-addrc:
	case <-e.stderrFinished:
		e.cmd.Wait()
		t.Fatalf("ronly-exporter exited before serving:\n%s", e.stderr)
	case <-time.After(deadline):
		t.Fatalf("ronly-exporter did not start serving")
	}
	if _, err := http.Get("http://" + e.addr + "/metrics"); err != nil {
		t.Fatal(err)
	}
	return e
}

// stop sends SIGTERM and expects a clean exit that removes the socket.
func (e *exporter) stop(t testing.TB) {
	if e.cmd.ProcessState != nil {
		return
	}
	e.cmd.Process.Signal(syscall.SIGTERM)
	<-e.stderrFinished
	if err := e.cmd.Wait(); err != nil {
		t.Errorf("ronly-exporter: %v\n%s", err, e.stderr)
	}
	if _, err := os.Stat(e.socket); err == nil {
		t.Errorf("socket %s left behind", e.socket)
	}
}

// metrics scrapes the exporter: each sample line's value, keyed by the
// text before it (`name{labels}`), as written.
func (e *exporter) metrics(t testing.TB) map[string]float64 {
	t.Helper()
	resp, err := http.Get("http://" + e.addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	return parseExposition(t, resp.Body)
}

func parseExposition(t testing.TB, r io.Reader) map[string]float64 {
	t.Helper()
	m := map[string]float64{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("bad sample %q", line)
		}
		m[line[:i]] = v
	}
	return m
}

// waitFor polls until cond holds, failing with what it last saw.
func waitFor(t testing.TB, what string, cond func() (bool, string)) {
	t.Helper()
	end := time.Now().Add(deadline)
	for {
		ok, saw := cond()
		if ok {
			return
		}
		if time.Now().After(end) {
			t.Fatalf("%s: gave up after %v; last saw %s", what, deadline, saw)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// prometheus is a running Prometheus server.
type prometheus struct {
	base string // http://127.0.0.1:port
}

// startPrometheus runs Debian's Prometheus scraping target every second,
// with the deployment's alert rules loaded, and waits until it is ready.
func startPrometheus(t testing.TB, target string) *prometheus {
	t.Helper()
	bin := needTool(t, "prometheus")
	dir := t.TempDir()
	config := fmt.Sprintf(`global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - %s
scrape_configs:
  - job_name: ronly
    static_configs:
      - targets: ['%s']
`, filepath.Join(repo, "tools", "deploy", "alerts.yml"), target)
	cfgPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgPath, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := freePort(t)
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin,
		"--config.file="+cfgPath,
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr,
		"--log.level=warn")
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	var log strings.Builder
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		cmd.Wait()
		if t.Failed() {
			t.Logf("prometheus log:\n%s", log.String())
		}
	})
	p := &prometheus{base: "http://" + addr}
	waitFor(t, "prometheus ready", func() (bool, string) {
		resp, err := http.Get(p.base + "/-/ready")
		if err != nil {
			return false, err.Error()
		}
		resp.Body.Close()
		return resp.StatusCode == 200, resp.Status
	})
	return p
}

// freePort returns a loopback address whose port was free a moment ago.
func freePort(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// query evaluates an instant PromQL query whose result is one sample.
func (p *prometheus) query(q string) (float64, error) {
	resp, err := http.Get(p.base + "/api/v1/query?query=" + url.QueryEscape(q))
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var body struct {
		Status string
		Error  string
		Data   struct {
			ResultType string
			Result     []struct {
				Value [2]any
			}
		}
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return 0, err
	}
	if body.Status != "success" {
		return 0, fmt.Errorf("%s: %s", q, body.Error)
	}
	if len(body.Data.Result) != 1 {
		return 0, fmt.Errorf("%s: %d samples, want 1", q, len(body.Data.Result))
	}
	s, _ := body.Data.Result[0].Value[1].(string)
	return strconv.ParseFloat(s, 64)
}
