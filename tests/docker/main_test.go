// Package docker_e2e runs the real docker CLI against a real Docker engine
// through dockerguard.Guard.
//
// TestMain starts a private dockerd (Debian's docker.io, 20.10) and its own
// containerd, both confined to a temporary directory: vfs storage, no
// iptables, no bridge, its own socket, data, exec root, pid file and
// daemon.json, so it neither touches nor uses a system daemon. It imports a
// one-file image (a static Go program built by the test, see logger.go),
// runs containers with --network none, and serves a Guard on a second
// socket. Every docker client found (PATH, /usr/bin/docker,
// /usr/local/bin/docker) is run against both sockets.
//
// Needs root, dockerd, containerd, runc and go. Missing ones skip, except
// under CI=true, where they fail.
package docker_e2e

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"ronly.dev/ronly/go/dockerguard"
)

const image = "ronly-e2e:latest"

var (
	// skipReason is set when the environment cannot run these tests.
	skipReason string

	tmp       string   // everything the test creates lives here
	direct    string   // the daemon's socket
	guardSock string   // the guard's socket
	clients   []string // docker CLIs to run
	cfgDir    string   // DOCKER_CONFIG for every CLI run

	guardRefused = &refusals{}

	t0, t1 time.Time // around the setup's events
)

// refusals records Guard.Refused calls.
type refusals struct {
	mu  sync.Mutex
	got []string
}

func (r *refusals) add(method, route string) {
	r.mu.Lock()
	r.got = append(r.got, method+" "+route)
	r.mu.Unlock()
}

func (r *refusals) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	g := r.got
	r.got = nil
	return g
}

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	if reason := missing(); reason != "" {
		if os.Getenv("CI") == "true" {
			fmt.Fprintln(os.Stderr, "docker e2e: "+reason+" (CI=true, so this fails instead of skipping)")
			return 1
		}
		skipReason = reason
		return m.Run()
	}
	var err error
	// Under /var/tmp, not /tmp: the sandbox test must see the daemon's socket.
	if tmp, err = os.MkdirTemp("/var/tmp", "ronly-docker-e2e-"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	stop, err := setup()
	defer func() {
		if stop != nil {
			stop()
		}
		cleanupMounts(tmp)
		os.RemoveAll(tmp)
	}()
	if err != nil {
		fmt.Fprintln(os.Stderr, "docker e2e setup:", err)
		return 1
	}
	return m.Run()
}

// missing says what this environment lacks, "" if nothing.
func missing() string {
	if os.Geteuid() != 0 {
		return "not root"
	}
	for _, tool := range []string{"dockerd", "containerd", "runc", "go"} {
		if _, err := exec.LookPath(tool); err != nil {
			return tool + " not found: apt-get install docker.io (and Go)"
		}
	}
	seen := map[string]bool{}
	add := func(p string) {
		if p == "" {
			return
		}
		real, err := filepath.EvalSymlinks(p)
		if err != nil || seen[real] {
			return
		}
		seen[real] = true
		clients = append(clients, p)
	}
	if p, err := exec.LookPath("docker"); err == nil {
		add(p)
	}
	add("/usr/local/bin/docker")
	add("/usr/bin/docker")
	if len(clients) == 0 {
		return "no docker CLI: apt-get install docker.io"
	}
	return ""
}

func needDocker(t testing.TB) {
	t.Helper()
	if skipReason != "" {
		t.Skip(skipReason)
	}
}

// setup starts containerd, dockerd and the guard, builds and imports the
// image. stop undoes what was started, also on error.
func setup() (stop func(), err error) {
	var stops []func()
	stop = func() {
		for i := len(stops) - 1; i >= 0; i-- {
			stops[i]()
		}
	}
	direct = filepath.Join(tmp, "docker.sock")
	guardSock = filepath.Join(tmp, "guard.sock")
	cfgDir = filepath.Join(tmp, "cli-config")
	for _, d := range []string{cfgDir, filepath.Join(tmp, "containerd")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return stop, err
		}
	}

	// containerd of our own: left to itself, dockerd 20.10 uses a system
	// containerd whenever /run/containerd/containerd.sock exists.
	ctrdSock := filepath.Join(tmp, "containerd", "containerd.sock")
	ctrdCfg := filepath.Join(tmp, "containerd", "config.toml")
	if err := os.WriteFile(ctrdCfg, []byte(fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = %q
[ttrpc]
  address = %q
[debug]
  address = ""
`, filepath.Join(tmp, "containerd", "root"), filepath.Join(tmp, "containerd", "state"), ctrdSock, ctrdSock+".ttrpc")), 0o600); err != nil {
		return stop, err
	}
	ctrd, err := startDaemon("containerd", filepath.Join(tmp, "containerd.log"), "--config", ctrdCfg)
	if err != nil {
		return stop, err
	}
	stops = append(stops, func() { stopDaemon(ctrd, 20*time.Second) })
	if err := waitSocket(ctrdSock, ctrd); err != nil {
		return stop, fmt.Errorf("containerd: %v (log: %s)", err, tail(filepath.Join(tmp, "containerd.log")))
	}

	daemonJSON := filepath.Join(tmp, "daemon.json")
	if err := os.WriteFile(daemonJSON, []byte("{}\n"), 0o600); err != nil {
		return stop, err
	}
	dockerd, err := startDaemon("dockerd", filepath.Join(tmp, "dockerd.log"),
		"--config-file", daemonJSON,
		"--containerd", ctrdSock,
		"--storage-driver=vfs",
		"--iptables=false", "--ip-forward=false", "--ip-masq=false",
		"--bridge=none",
		"--host", "unix://"+direct,
		"--data-root", filepath.Join(tmp, "data"),
		"--exec-root", filepath.Join(tmp, "exec"),
		"--pidfile", filepath.Join(tmp, "dockerd.pid"),
	)
	if err != nil {
		return stop, err
	}
	stops = append(stops, func() {
		// Containers first, through the daemon, so that no shim outlives it.
		if out, err := dockerRaw(clients[0], direct, "ps", "-aq"); err == nil {
			if ids := strings.Fields(out); len(ids) > 0 {
				dockerRaw(clients[0], direct, append([]string{"rm", "-f"}, ids...)...)
			}
		}
		stopDaemon(dockerd, 30*time.Second)
		killShims(ctrdSock)
	})
	if err := waitSocket(direct, dockerd); err != nil {
		return stop, fmt.Errorf("dockerd: %v (log: %s)", err, tail(filepath.Join(tmp, "dockerd.log")))
	}
	// The socket exists before the API answers.
	deadline := time.Now().Add(60 * time.Second)
	for {
		_, err := dockerRaw(clients[0], direct, "version")
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			return stop, fmt.Errorf("dockerd does not answer: %v (log: %s)", err, tail(filepath.Join(tmp, "dockerd.log")))
		}
		time.Sleep(200 * time.Millisecond)
	}

	// The guard.
	ln, err := net.Listen("unix", guardSock)
	if err != nil {
		return stop, err
	}
	g := &dockerguard.Guard{Upstream: direct, Refused: guardRefused.add}
	served := make(chan error, 1)
	go func() { served <- g.Serve(ln) }()
	stops = append(stops, func() {
		ln.Close()
		select {
		case err := <-served:
			if err != nil {
				fmt.Fprintln(os.Stderr, "guard Serve:", err)
			}
		case <-time.After(10 * time.Second):
			fmt.Fprintln(os.Stderr, "guard Serve did not return")
		}
	})

	// The image: one static binary.
	bin := filepath.Join(tmp, "logger")
	if err := buildLogger(bin); err != nil {
		return stop, err
	}
	rootfs := filepath.Join(tmp, "rootfs.tar")
	if err := writeRootfs(rootfs, bin); err != nil {
		return stop, err
	}
	t0 = time.Now().Add(-time.Second)
	for _, args := range [][]string{
		{"import", rootfs, image},
		{"volume", "create", "ronly-vol"},
		{"run", "-d", "--name", "ronly-live", "--network", "none", image, "/logger", "loop"},
		{"run", "-d", "--name", "ronly-fixed", "--network", "none", image, "/logger", "once"},
		{"wait", "ronly-fixed"},
	} {
		if _, err := dockerRaw(clients[0], direct, args...); err != nil {
			return stop, err
		}
	}
	time.Sleep(time.Second) // events before t1 only, and a few log lines
	t1 = time.Now()
	return stop, nil
}

// startDaemon starts name in a process group of its own, output to logFile.
func startDaemon(name, logFile string, args ...string) (*exec.Cmd, error) {
	lf, err := os.Create(logFile)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(name, args...)
	cmd.Dir = tmp
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Env = append(os.Environ(), "TMPDIR="+tmp)
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, err
	}
	lf.Close()
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	daemons.Store(cmd, done)
	return cmd, nil
}

var daemons sync.Map // *exec.Cmd → chan struct{} closed when it exits

func exited(cmd *exec.Cmd) <-chan struct{} {
	d, _ := daemons.Load(cmd)
	return d.(chan struct{})
}

// stopDaemon sends SIGTERM, waits, then SIGKILLs the process group.
func stopDaemon(cmd *exec.Cmd, grace time.Duration) {
	pid := cmd.Process.Pid
	syscall.Kill(pid, syscall.SIGTERM)
	select {
	case <-exited(cmd):
	case <-time.After(grace):
		fmt.Fprintf(os.Stderr, "%s did not stop in %v; killing its process group\n", cmd.Path, grace)
	}
	syscall.Kill(-pid, syscall.SIGKILL)
	<-exited(cmd)
}

// killShims kills containerd shims left for our containerd (they put
// themselves in process groups of their own).
func killShims(ctrdSock string) {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		var pid int
		if _, err := fmt.Sscanf(e.Name(), "%d", &pid); err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(string(cmdline), "\x00")
		if len(args) > 0 && strings.HasPrefix(filepath.Base(args[0]), "containerd-shim") && slices.Contains(args, ctrdSock) {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// cleanupMounts detaches whatever is still mounted under dir, deepest first.
func cleanupMounts(dir string) {
	if dir == "" {
		return
	}
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return
	}
	var mounts []string
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && (f[4] == dir || strings.HasPrefix(f[4], dir+"/")) {
			mounts = append(mounts, f[4])
		}
	}
	sort.Slice(mounts, func(i, j int) bool { return len(mounts[i]) > len(mounts[j]) })
	for _, m := range mounts {
		unix.Unmount(m, unix.MNT_DETACH)
	}
}

func waitSocket(path string, cmd *exec.Cmd) error {
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.Dial("unix", path); err == nil {
			c.Close()
			return nil
		}
		select {
		case <-exited(cmd):
			return errors.New("exited")
		case <-time.After(100 * time.Millisecond):
		}
	}
	return errors.New("no socket after 60s")
}

func tail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 3000 {
		b = b[len(b)-3000:]
	}
	return string(b)
}

// cliEnv is the environment of every docker CLI run: no ambient host,
// context or configuration.
func cliEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "DOCKER_") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "DOCKER_CONFIG="+cfgDir, "DOCKER_CLI_HINTS=false")
}

// dockerRaw runs `cli -H unix://sock args...` and returns stdout; the error
// carries stderr.
func dockerRaw(cli, sock string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, cli, append([]string{"-H", "unix://" + sock}, args...)...)
	cmd.Env = cliEnv()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		return stdout.String(), fmt.Errorf("%s %s: %v: %s", filepath.Base(cli), strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// docker runs the CLI and fails the test on error.
func docker(t testing.TB, cli, sock string, args ...string) string {
	t.Helper()
	out, err := dockerRaw(cli, sock, args...)
	if err != nil {
		t.Fatalf("via %s: %v", sockName(sock), err)
	}
	return out
}

func sockName(sock string) string {
	if sock == guardSock {
		return "guard"
	}
	return "daemon"
}

// buildLogger builds logger.go's program, statically, as the image's only file.
func buildLogger(out string) error {
	dir := filepath.Join(tmp, "logger-src")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module logger\n\ngo 1.21\n"), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(loggerSource), 0o644); err != nil {
		return err
	}
	cmd := exec.Command("go", "build", "-trimpath", "-o", out, ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=", "GOTOOLCHAIN=local", "GOWORK=off")
	if os.Getenv("HOME") == "" && os.Getenv("GOCACHE") == "" {
		// A test runner may give no HOME, and go needs a build cache.
		cmd.Env = append(cmd.Env, "GOCACHE="+filepath.Join(tmp, "gocache"), "GOPATH="+filepath.Join(tmp, "gopath"))
	}
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("building the logger: %v: %s", err, b)
	}
	return nil
}

// writeRootfs writes a tarball holding bin as /logger.
func writeRootfs(path, bin string) error {
	data, err := os.ReadFile(bin)
	if err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	if err := tw.WriteHeader(&tar.Header{Name: "logger", Mode: 0o755, Size: int64(len(data)), Typeflag: tar.TypeReg, ModTime: time.Unix(0, 0)}); err != nil {
		return err
	}
	if _, err := tw.Write(data); err != nil {
		return err
	}
	return tw.Close()
}

// lines splits output into non-empty lines.
func lines(s string) []string {
	var out []string
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" {
			out = append(out, l)
		}
	}
	return out
}
