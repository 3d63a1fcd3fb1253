package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"ronly.dev/ronly/go/probe"
)

// TestSocketChangesDuringSession: an API socket that appears under /run
// while a session runs must be as unreachable as one that was there at the
// start. Daemons do this: restarting dockerd removes and recreates
// /run/docker.sock.
func TestSocketChangesDuringSession(t *testing.T) {
	b := setup(t)
	cases := []struct {
		name    string
		atStart bool // a listener exists before ronly starts
	}{
		{"created after start", false},
		{"removed and recreated after start", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := newCanaries(t, 0)
			path := "/run/ronly-e2e-late-" + c.marker + ".sock"
			t.Cleanup(func() { os.Remove(path) })
			var first *net.UnixListener
			if tc.atStart {
				first = listenUnix(t, path)
				defer first.Close()
			}
			tg := c.targets()
			tg.Socket = path
			s := startPaused(t, b, tg, "connect hidden unix socket under /run")

			if first != nil {
				first.Close()
				os.Remove(path)
			}
			l := listenUnix(t, path)
			defer l.Close()

			res := s.resume(t)
			if !res.Pass {
				t.Errorf("SANDBOX BUG: a socket %s is reachable from inside: %q succeeded (errno %q)", tc.name, res.Name, res.Errno)
			}
			if n := drain(l); n > 0 {
				t.Errorf("HOST REACHED: %d connection(s) accepted on %s", n, path)
			}
		})
	}
}

// TestSocketOutsideRun: an API socket bound outside /run before the session
// starts (a daemon's socket under /var/lib, /srv, /opt) must be as
// unreachable as one under /run, and its listener must see no connection.
// A directory crowded with sockets is mirrored like /run, so there even a
// socket its daemon re-creates during the session stays unreachable.
func TestSocketOutsideRun(t *testing.T) {
	b := setup(t)
	cases := []struct {
		name      string
		sockets   int  // bound in the directory before ronly starts
		recreated bool // the target is removed and bound again after the start
	}{
		{"one, bound at start", 1, false},
		{"crowded directory, re-created after start", 6, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := newCanaries(t, 0)
			dir, err := os.MkdirTemp("/var/tmp", "ronly-e2e-sock-")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.RemoveAll(dir) })
			os.Chmod(dir, 0o755)
			var ls []*net.UnixListener
			for i := 0; i < tc.sockets; i++ {
				l := listenUnix(t, filepath.Join(dir, fmt.Sprintf("api%d.sock", i)))
				defer l.Close()
				ls = append(ls, l)
			}
			path := filepath.Join(dir, "api0.sock")
			tg := c.targets()
			tg.Socket = path
			s := startPaused(t, b, tg, "connect hidden unix socket under /run")
			if tc.recreated {
				ls[0].Close()
				os.Remove(path)
				l := listenUnix(t, path)
				defer l.Close()
				ls = append(ls, l)
			}
			res := s.resume(t)
			if !res.Pass {
				t.Errorf("SANDBOX BUG: a socket outside /run is reachable from inside: %q succeeded (errno %q)", res.Name, res.Errno)
			}
			for _, l := range ls {
				if n := drain(l); n > 0 {
					t.Errorf("HOST REACHED: %d connection(s) accepted on %s", n, path)
				}
			}
		})
	}
}

// TestTooManySocketsFailsClosed: more sockets outside /run than ronly
// covers one by one (spread so that no directory is mirrored whole) stop
// the session before it starts — exit 125, one line, the command never
// ran — rather than leave some reachable.
func TestTooManySocketsFailsClosed(t *testing.T) {
	b := setup(t)
	c := newCanaries(t, 0)
	before := c.snapshot(t)
	dir, err := os.MkdirTemp("/var/tmp", "ronly-e2e-socks-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	for d := 0; d < 130; d++ {
		sub := filepath.Join(dir, fmt.Sprint(d))
		if err := os.Mkdir(sub, 0o755); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 4; i++ {
			defer listenUnix(t, filepath.Join(sub, fmt.Sprintf("%d.sock", i))).Close()
		}
	}
	r := b.run(t, opts{}, "--rw", c.rwDir, "/bin/sh", "-c", "touch "+filepath.Join(c.rwDir, "ran"))
	if r.code != 125 {
		t.Errorf("want exit 125:\n%s", r)
	}
	if lines := strings.Split(strings.TrimSuffix(r.stderr, "\n"), "\n"); len(lines) != 1 || !strings.Contains(r.stderr, "520 unix sockets outside /run") {
		t.Errorf("want one line naming the 520 sockets, got:\n%s", r.stderr)
	}
	if entries := dirNames(t, c.rwDir); len(entries) > 0 {
		t.Errorf("the command ran: %v", entries)
	}
	c.verify(t, before)
}

// listenUnix listens on a unix socket anyone may connect to, and leaves the
// path in place when closed, as a daemon that is killed does.
func listenUnix(t *testing.T, path string) *net.UnixListener {
	t.Helper()
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(false)
	os.Chmod(path, 0o777)
	return l
}

// paused is a probe operation inside a running session, waiting for the
// test to change the host before it runs.
type paused struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	out    *bufio.Reader
	stderr *strings.Builder
}

// startPaused starts ronly running a shell that says "ready" once the
// sandbox is built, then waits for a line before it runs probe op op.
func startPaused(t *testing.T, b bins, tg probe.Targets, op string) *paused {
	t.Helper()
	js, err := json.Marshal(tg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	t.Cleanup(cancel)
	script := fmt.Sprintf(`echo ready; read go; exec %s -only '%s' -targets '%s'`, b.probe, op, js)
	cmd := exec.CommandContext(ctx, b.ronly, "--", "/bin/sh", "-c", script)
	cmd.Dir = "/"
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &paused{cmd: cmd, stdin: stdin, out: bufio.NewReader(stdout), stderr: &strings.Builder{}}
	cmd.Stderr = p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	if line, err := p.out.ReadString('\n'); err != nil || line != "ready\n" {
		t.Fatalf("sandbox did not start: %q %v\n%s", line, err, p.stderr.String())
	}
	return p
}

// resume lets the operation run and returns its result.
func (p *paused) resume(t *testing.T) probe.Result {
	t.Helper()
	fmt.Fprintln(p.stdin, "go")
	p.stdin.Close()
	results, err := probe.ReadJSON(p.out)
	if err != nil {
		t.Fatalf("probe output: %v\n%s", err, p.stderr.String())
	}
	if err := p.cmd.Wait(); err != nil {
		t.Fatalf("ronly: %v\n%s", err, p.stderr.String())
	}
	if len(results) != 1 {
		t.Fatalf("want one result, got %+v", results)
	}
	return results[0]
}
