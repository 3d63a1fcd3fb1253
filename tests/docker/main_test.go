// Package docker_e2e runs the real docker CLI against a real Docker engine
// through dockerguard.Guard.
//
// TestMain uses a dockerd in its standard place (tests/dockerd: the one
// already answering on /run/docker.sock, else Debian's docker.io 20.10
// started there with vfs storage, no iptables and no bridge, and stopped at
// the end), as users have it. It imports a one-file image (a static Go
// program built by the test, see logger.go), runs containers with
// --network none, and serves a Guard on a socket of its own. Every docker
// client found (PATH, /usr/bin/docker, /usr/local/bin/docker) is run
// against both sockets. What it created (containers, volume) is removed at
// the end; the image stays for the next run.
//
// Needs root, dockerd, containerd, runc and go. Missing ones skip, except
// under CI=true, where they fail.
package docker_e2e

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"ronly.dev/ronly/go/dockerguard"
	"ronly.dev/ronly/tests/dockerd"
)

const image = "ronly-e2e:latest"

var (
	// skipReason is set when the environment cannot run these tests.
	skipReason string

	tmp       string // everything the test creates lives here
	daemon    *dockerd.Daemon
	direct    string   // the daemon's socket
	guardSock string   // the guard's socket
	clients   []string // docker CLIs to run
	cfgDir    string   // DOCKER_CONFIG for every CLI run

	guardRefused = &refusals{}

	t0, t1 time.Time // around the setup's events

	// atSetup is the daemon's objects when setup finished: a daemon in
	// its standard place may hold others' besides this test's.
	atSetup daemonState
)

// daemonState is the names of a daemon's objects, each list sorted.
type daemonState struct {
	containers, images, networks, volumes []string
}

func stateOf(cli, sock string) (daemonState, error) {
	var s daemonState
	for _, q := range []struct {
		dst  *[]string
		args []string
	}{
		{&s.containers, []string{"ps", "-a", "--format", "{{.Names}}"}},
		{&s.images, []string{"images", "--format", "{{.Repository}}:{{.Tag}}"}},
		{&s.networks, []string{"network", "ls", "--format", "{{.Name}}"}},
		{&s.volumes, []string{"volume", "ls", "--format", "{{.Name}}"}},
	} {
		out, err := dockerRaw(cli, sock, q.args...)
		if err != nil {
			return s, err
		}
		*q.dst = sorted(lines(out))
	}
	return s, nil
}

// The test's own objects in the daemon.
var (
	ourContainers = []string{"ronly-fixed", "ronly-live"}
	ourVolume     = "ronly-vol"
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
	if reason := dockerd.Missing(); reason != "" {
		return reason
	}
	if _, err := exec.LookPath("go"); err != nil {
		return "go not found"
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
	guardSock = filepath.Join(tmp, "guard.sock")
	cfgDir = filepath.Join(tmp, "cli-config")
	if err := os.MkdirAll(cfgDir, 0o700); err != nil {
		return stop, err
	}
	if daemon, err = dockerd.Start(tmp); err != nil {
		return stop, err
	}
	direct = daemon.Socket
	stops = append(stops, func() {
		removeOurs()
		if err := daemon.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "docker e2e:", err)
		}
	})
	// Left by an interrupted run: the names must be free.
	removeOurs()

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
	if err := daemon.Import(rootfs, image); err != nil {
		return stop, err
	}
	t0 = time.Now().Add(-time.Second)
	for _, args := range [][]string{
		{"volume", "create", ourVolume},
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
	atSetup, err = stateOf(clients[0], direct)
	return stop, err
}

// removeOurs removes the containers and the volume the test creates.
func removeOurs() {
	dockerRaw(clients[0], direct, append([]string{"rm", "-f"}, ourContainers...)...)
	dockerRaw(clients[0], direct, "volume", "rm", "-f", ourVolume)
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
