// Package dockerd gives end-to-end tests a Docker engine where users have
// one: the socket /run/docker.sock, data in /var/lib/docker, exec root and
// network namespaces under /run/docker. Tests against a private daemon in a
// temporary directory missed bugs that only the standard places trigger
// (a mount at /run/docker/netns/default, say).
//
// Start reuses a daemon that already answers on /run/docker.sock and leaves
// it running; otherwise it starts Debian's dockerd (vfs storage, no
// iptables, no bridge: nothing on the host's network changes), which runs
// its own containerd unless a system one listens at its standard socket, and
// Stop stops it again. Images come from rootfs tarballs (docker import):
// nothing can be pulled here.
//
// One test binary at a time holds the daemon (a lock file), so that one
// package stopping the daemon it started never pulls it from under another
// run side by side.
package dockerd

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The standard places.
const (
	Socket   = "/run/docker.sock"
	DataRoot = "/var/lib/docker"
	ExecRoot = "/run/docker"
)

// lockPath serialises the test binaries that use the daemon.
const lockPath = "/run/lock/ronly-tests-dockerd.lock"

// Daemon is the engine a test binary uses.
type Daemon struct {
	// Socket is the daemon's API socket (always the standard one).
	Socket string
	// CLI is the docker client Docker runs.
	CLI string
	// Started: this process started the daemon, and Stop stops it.
	Started bool
	// LogFile holds the daemon's output when Started.
	LogFile string

	cfgDir string
	cmd    *exec.Cmd
	done   chan struct{}
	lock   *os.File
}

// Missing says what this machine lacks to run a daemon, "" if nothing.
func Missing() string {
	if os.Geteuid() != 0 {
		return "not root"
	}
	for _, tool := range []string{"dockerd", "containerd", "runc", "docker"} {
		if _, err := exec.LookPath(tool); err != nil {
			return tool + " not found: apt-get install docker.io"
		}
	}
	return ""
}

// Start returns a daemon answering on Socket: the one already there, or
// one it starts. dir holds the daemon's log and the CLI's configuration;
// it must exist. On error, whatever Start did is undone.
func Start(dir string) (*Daemon, error) {
	if reason := Missing(); reason != "" {
		return nil, errors.New(reason)
	}
	cli, err := exec.LookPath("docker")
	if err != nil {
		return nil, err
	}
	d := &Daemon{Socket: Socket, CLI: cli, cfgDir: filepath.Join(dir, "docker-cli-config"), LogFile: filepath.Join(dir, "dockerd.log")}
	if err := os.MkdirAll(d.cfgDir, 0o700); err != nil {
		return nil, err
	}
	if d.lock, err = takeLock(10 * time.Minute); err != nil {
		return nil, err
	}
	if d.answers() {
		return d, nil
	}
	if err := d.start(); err != nil {
		d.Stop()
		return nil, err
	}
	return d, nil
}

// takeLock waits up to timeout for the lock another test binary may hold.
func takeLock(timeout time.Duration) (*os.File, error) {
	if err := os.MkdirAll(filepath.Dir(lockPath), 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(lockPath, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(timeout)
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return f, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) || time.Now().After(deadline) {
			f.Close()
			return nil, fmt.Errorf("lock %s (another test binary uses the daemon): %w", lockPath, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// answers says whether a daemon's API answers on the socket.
func (d *Daemon) answers() bool {
	c, err := net.DialTimeout("unix", d.Socket, 2*time.Second)
	if err != nil {
		return false
	}
	c.Close()
	_, err = d.Docker("version", "--format", "{{.Server.Version}}")
	return err == nil
}

func (d *Daemon) start() error {
	lf, err := os.Create(d.LogFile)
	if err != nil {
		return err
	}
	defer lf.Close()
	// The standard places are dockerd's defaults; only what keeps the
	// host's network untouched and works on any backing filesystem is set.
	cmd := exec.Command("dockerd", "--storage-driver=vfs", "--iptables=false", "--ip-forward=false", "--ip-masq=false", "--bridge=none")
	cmd.Stdout, cmd.Stderr = lf, lf
	// A process group of its own: Stop kills whatever is left of it. The
	// daemon dies with this process (Pdeathsig) rather than outlive a
	// killed test binary holding the standard socket.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Dir = "/"
	if err := cmd.Start(); err != nil {
		return err
	}
	d.cmd, d.done, d.Started = cmd, make(chan struct{}), true
	go func() { cmd.Wait(); close(d.done) }()
	deadline := time.Now().Add(90 * time.Second)
	for !d.answers() {
		select {
		case <-d.done:
			return fmt.Errorf("dockerd exited: %s", d.Tail())
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("dockerd does not answer on %s after 90s: %s", d.Socket, d.Tail())
		}
	}
	return nil
}

// Stop stops the daemon if Start started it, and lets other test binaries
// have it.
func (d *Daemon) Stop() error {
	var err error
	if d.Started && d.cmd != nil {
		// The callers removed their containers; dockerd stops any other
		// running one itself on SIGTERM (and leaves the stopped ones, which
		// may be the machine owner's, in /var/lib/docker).
		pid := d.cmd.Process.Pid
		syscall.Kill(pid, syscall.SIGTERM)
		select {
		case <-d.done:
		case <-time.After(30 * time.Second):
			err = fmt.Errorf("dockerd did not stop in 30s; killed its process group")
		}
		syscall.Kill(-pid, syscall.SIGKILL)
		<-d.done
		// dockerd unmounts what it mounted when it stops cleanly; after a
		// kill, this does.
		for _, dir := range []string{ExecRoot, DataRoot} {
			detachBelow(dir)
		}
		d.cmd = nil
	}
	if d.lock != nil {
		d.lock.Close()
		d.lock = nil
	}
	return err
}

// detachBelow detaches whatever is mounted at or under dir, deepest first.
func detachBelow(dir string) {
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

// Tail is the end of the daemon's log (when Started).
func (d *Daemon) Tail() string {
	b, _ := os.ReadFile(d.LogFile)
	if len(b) > 3000 {
		b = b[len(b)-3000:]
	}
	return string(b)
}

// Env is the environment for a docker CLI talking to this daemon: no
// ambient host, context or configuration of the caller's.
func (d *Daemon) Env() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "DOCKER_") {
			env = append(env, kv)
		}
	}
	return append(env, "DOCKER_HOST=unix://"+d.Socket, "DOCKER_CONFIG="+d.cfgDir, "DOCKER_CLI_HINTS=false")
}

// Docker runs the CLI with args and returns stdout; the error carries
// stderr.
func (d *Daemon) Docker(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, d.CLI, args...)
	cmd.Env = d.Env()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("docker %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// ImportLabel is the image label holding the SHA-256 of the rootfs tarball
// an image was imported from.
const ImportLabel = "dev.ronly.test.rootfs"

// Import makes ref the image of the rootfs tarball, importing it unless ref
// already is that tarball's image (reruns are fast). Older images of the
// same repository that Import made are removed. changes are docker import
// --change instructions (CMD, USER, ENV...).
func (d *Daemon) Import(tarball, ref string, changes ...string) error {
	sum, err := fileSHA256(tarball)
	if err != nil {
		return err
	}
	if have, err := d.Docker("image", "inspect", "--format", `{{index .Config.Labels "`+ImportLabel+`"}}`, ref); err == nil && strings.TrimSpace(have) == sum {
		return nil
	}
	repo := ref
	if i := strings.LastIndex(ref, ":"); i > strings.LastIndex(ref, "/") {
		repo = ref[:i]
	}
	old, _ := d.Docker("images", "--filter", "label="+ImportLabel, "--format", "{{.ID}}", repo)
	args := []string{"import", "--change", "LABEL " + ImportLabel + "=" + sum}
	for _, c := range changes {
		args = append(args, "--change", c)
	}
	if _, err := d.Docker(append(args, tarball, ref)...); err != nil {
		return err
	}
	for _, id := range strings.Fields(old) {
		d.Docker("rmi", id) // still used by a container: it stays, harmlessly
	}
	return nil
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
