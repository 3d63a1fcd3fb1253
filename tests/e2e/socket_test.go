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
	"runtime"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

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

// TestSocketOutsideRun: an API socket outside /run (a daemon's socket
// under /var/lib, /srv, /opt) is as unreachable as one under /run, whether
// it was bound before the session started, re-created during it, or bound
// only after the start; its listener sees no connection.
func TestSocketOutsideRun(t *testing.T) {
	b := setup(t)
	cases := []struct {
		name    string
		atStart bool // bound before ronly starts
		late    bool // (re-)bound after the start
	}{
		{"bound at start", true, false},
		{"re-created after start", true, true},
		{"bound after start", false, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := newCanaries(t, 0)
			dir := sockDir(t)
			path := filepath.Join(dir, "api.sock")
			var ls []*net.UnixListener
			if tc.atStart {
				l := listenUnix(t, path)
				defer l.Close()
				ls = append(ls, l)
			}
			tg := c.targets()
			tg.Socket = path
			s := startPaused(t, b, tg, "connect hidden unix socket under /run")
			if tc.late {
				for _, l := range ls {
					l.Close()
				}
				os.Remove(path)
				l := listenUnix(t, path)
				defer l.Close()
				ls = append(ls, l)
			}
			res := s.resume(t)
			if !res.Pass {
				t.Errorf("SANDBOX BUG: a socket outside /run %s is reachable from inside: %q got errno %q", tc.name, res.Name, res.Errno)
			}
			for _, l := range ls {
				if n := drain(l); n > 0 {
					t.Errorf("HOST REACHED: %d connection(s) accepted on %s", n, path)
				}
			}
		})
	}
}

// TestManySocketsOutsideRun: hundreds of host sockets outside /run cost the
// session nothing at start (nothing is planned per socket) and none of them
// answers inside.
func TestManySocketsOutsideRun(t *testing.T) {
	b := setup(t)
	c := newCanaries(t, 0)
	dir := sockDir(t)
	var ls []*net.UnixListener
	for d := 0; d < 130; d++ {
		sub := filepath.Join(dir, fmt.Sprint(d))
		if err := os.Mkdir(sub, 0o755); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 4; i++ {
			l := listenUnix(t, filepath.Join(sub, fmt.Sprintf("%d.sock", i)))
			defer l.Close()
			ls = append(ls, l)
		}
	}
	tg := c.targets()
	tg.Socket = filepath.Join(dir, "77", "2.sock")
	res, r := b.probeOp(t, nil, tg, "connect hidden unix socket under /run")
	if r.code != 0 || !res.Pass {
		t.Errorf("want exit 0 and the socket refused, got %+v\n%s", res, r)
	}
	for _, l := range ls {
		if n := drain(l); n > 0 {
			t.Errorf("HOST REACHED: %d connection(s) accepted on %s", n, l.Addr())
		}
	}
}

// TestSocketOtherMountNamespace: a socket bound by a process in another
// mount namespace (a `docker run --network host` daemon's) is named in
// /proc/net/unix by a path of that namespace, not the host's; it must be
// unreachable all the same, by its path on the host.
func TestSocketOtherMountNamespace(t *testing.T) {
	b := setup(t)
	c := newCanaries(t, 0)
	dir := sockDir(t)
	place := sockDir(t) // where the daemon sees dir mounted
	l := listenInNamespace(t, dir, place, "api.sock")
	defer l.Close()
	tg := c.targets()
	tg.Socket = filepath.Join(dir, "api.sock")
	res, r := b.probeOp(t, nil, tg, "connect hidden unix socket under /run")
	if r.code != 0 || !res.Pass {
		t.Errorf("SANDBOX BUG: a socket bound in another mount namespace is reachable: %+v\n%s", res, r)
	}
	if n := drain(l); n > 0 {
		t.Errorf("HOST REACHED: %d connection(s) accepted on %s", n, tg.Socket)
	}
}

// TestSocketHardLink: a host socket reached through a hard link in another
// directory is refused like the socket itself.
func TestSocketHardLink(t *testing.T) {
	b := setup(t)
	c := newCanaries(t, 0)
	dir := sockDir(t)
	path := filepath.Join(dir, "api.sock")
	l := listenUnix(t, path)
	defer l.Close()
	if err := os.Mkdir(filepath.Join(dir, "other"), 0o755); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "other", "innocent")
	if err := os.Link(path, link); err != nil {
		t.Fatal(err)
	}
	tg := c.targets()
	tg.Socket = link
	res, r := b.probeOp(t, nil, tg, "connect hidden unix socket under /run")
	if r.code != 0 || !res.Pass {
		t.Errorf("SANDBOX BUG: a hard link to a host socket is reachable: %+v\n%s", res, r)
	}
	if n := drain(l); n > 0 {
		t.Errorf("HOST REACHED: %d connection(s) accepted on %s", n, path)
	}
}

// TestAllowSocket: --allow-socket lets exactly the socket it names through
// (by any name), and no other socket beside it.
func TestAllowSocket(t *testing.T) {
	b := setup(t)
	c := newCanaries(t, 0)
	dir := sockDir(t)
	allowed, other := filepath.Join(dir, "allowed.sock"), filepath.Join(dir, "other.sock")
	la, lo := listenUnix(t, allowed), listenUnix(t, other)
	defer la.Close()
	defer lo.Close()
	tg := c.targets()
	tg.Socket = allowed
	res, r := b.probeOp(t, []string{"--allow-socket", allowed}, tg, "connect hidden unix socket under /run")
	if r.code != 0 || res.Pass || res.Errno != "" {
		t.Errorf("the allowed socket was not reachable: %+v\n%s", res, r)
	}
	if n := drain(la); n != 1 {
		t.Errorf("the allowed socket's listener saw %d connections, want 1", n)
	}
	tg.Socket = other
	res, r = b.probeOp(t, []string{"--allow-socket", allowed}, tg, "connect hidden unix socket under /run")
	if r.code != 0 || !res.Pass {
		t.Errorf("SANDBOX BUG: a socket beside the allowed one is reachable: %+v\n%s", res, r)
	}
	if n := drain(lo); n > 0 {
		t.Errorf("HOST REACHED: %d connection(s) accepted on %s", n, other)
	}
	// Bad values: one line naming the flag, exit 125, nothing runs.
	for _, bad := range []string{"relative.sock", filepath.Join(dir, "missing.sock"), c.File} {
		r := b.run(t, opts{}, "--allow-socket", bad, "--", "/bin/true")
		if r.code != 125 || !strings.Contains(r.stderr, "--allow-socket") || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
			t.Errorf("--allow-socket %s: want exit 125 and one line naming the flag:\n%s", bad, r)
		}
	}
}

// TestHostMountsUnderRun: mounts the host keeps under /run (a login's
// /run/user/<uid>, `ip netns add`'s /run/netns, a pod's service account
// token, /run/lock) neither stop ronly nor become writable, and a socket in
// them is refused.
func TestHostMountsUnderRun(t *testing.T) {
	b := setup(t)
	const uid = 4242
	cases := []struct {
		name  string
		mount func(t *testing.T) (dir string) // makes the mount, undone at cleanup; the directory to look at
	}{
		{"tmpfs at /run/user/<uid>", func(t *testing.T) string {
			return tmpfsAt(t, fmt.Sprintf("/run/user/%d", uid))
		}},
		{"ip netns add", func(t *testing.T) string {
			needTool(t, "ip")
			name := "ronly-e2e-" + strconv.Itoa(os.Getpid())
			if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
				t.Fatalf("ip netns add: %v\n%s", err, out)
			}
			t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
			return "/run/netns"
		}},
		{"service account token bound at /run/secrets", func(t *testing.T) string {
			dir := "/run/secrets/kubernetes.io/serviceaccount"
			if _, err := os.Stat("/run/secrets"); err == nil {
				t.Fatalf("/run/secrets exists on this host: the test would change it")
			}
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.RemoveAll("/run/secrets") })
			src := filepath.Join(sockDir(t), "token")
			if err := os.WriteFile(src, []byte("token"), 0o644); err != nil {
				t.Fatal(err)
			}
			tok := filepath.Join(dir, "token")
			if err := os.WriteFile(tok, nil, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := unix.Mount(src, tok, "", unix.MS_BIND, ""); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { unix.Unmount(tok, unix.MNT_DETACH) })
			return dir
		}},
		{"tmpfs at /run/lock", func(t *testing.T) string { return tmpfsAt(t, "/run/lock") }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := tc.mount(t)
			c := newCanaries(t, 0)
			// A socket in the mount, when it is a directory of its own.
			sock := filepath.Join(dir, "ronly-e2e-"+c.marker+".sock")
			l := listenUnix(t, sock)
			defer l.Close()
			t.Cleanup(func() { os.Remove(sock) })
			before, _ := os.ReadDir(dir)
			r := b.sh(t, opts{}, nil, fmt.Sprintf(`ls %[1]s >/dev/null && echo listed; touch %[1]s/ronly-e2e-new 2>&1; mkdir %[1]s/ronly-e2e-dir 2>&1; true`, dir))
			if r.code != 0 || !strings.Contains(r.stdout, "listed") {
				t.Fatalf("ronly did not run with the mount present:\n%s", r)
			}
			if strings.Count(r.stdout, "Read-only file system") != 2 {
				t.Errorf("writes in %s did not fail with EROFS:\n%s", dir, r)
			}
			if after, _ := os.ReadDir(dir); len(after) != len(before) {
				t.Errorf("HOST CHANGED: %s had %d entries, now %d", dir, len(before), len(after))
			}
			tg := c.targets()
			tg.Socket = sock
			res, r := b.probeOp(t, nil, tg, "connect hidden unix socket under /run")
			if r.code != 0 || !res.Pass {
				t.Errorf("SANDBOX BUG: a socket under %s is reachable: %+v\n%s", dir, res, r)
			}
			if n := drain(l); n > 0 {
				t.Errorf("HOST REACHED: %d connection(s) accepted on %s", n, sock)
			}
		})
	}
}

// tmpfsAt mounts a tmpfs at dir (made if missing), undone at cleanup. A
// directory that already holds a mount is not touched: the test fails.
func tmpfsAt(t *testing.T, dir string) string {
	t.Helper()
	made := false
	if _, err := os.Stat(dir); os.IsNotExist(err) {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		made = true
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "size=1m,mode=0755"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
		if made {
			os.Remove(dir)
		}
	})
	return dir
}

// sockDir is a fresh directory under /var/tmp, removed at cleanup.
func sockDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("/var/tmp", "ronly-e2e-sock-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	return dir
}

// listenInNamespace listens on name in dir from a thread in a mount
// namespace of its own where dir is mounted at place: the kernel names the
// socket place/name in /proc/net/unix, a path that is an empty directory
// on the host. The namespace goes with the thread.
func listenInNamespace(t *testing.T, dir, place, name string) *net.UnixListener {
	t.Helper()
	type res struct {
		l   *net.UnixListener
		err error
	}
	ch := make(chan res)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		err := unix.Unshare(unix.CLONE_NEWNS)
		if err == nil {
			err = unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, "")
		}
		if err == nil {
			err = unix.Mount(dir, place, "", unix.MS_BIND, "")
		}
		if err != nil {
			ch <- res{nil, err}
			return
		}
		l, err := net.ListenUnix("unix", &net.UnixAddr{Name: filepath.Join(place, name), Net: "unix"})
		if err == nil {
			l.SetUnlinkOnClose(false)
			os.Chmod(filepath.Join(place, name), 0o777)
		}
		ch <- res{l, err}
	}()
	r := <-ch
	if r.err != nil {
		t.Fatalf("listen in a mount namespace of its own: %v", r.err)
	}
	if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
		t.Fatalf("the socket is not visible on the host: %v", err)
	}
	return r.l
}

// probeOp runs probe operation op inside ronly with flags and returns its
// result and the run.
func (b bins) probeOp(t *testing.T, flags []string, tg probe.Targets, op string) (probe.Result, result) {
	t.Helper()
	js, err := json.Marshal(tg)
	if err != nil {
		t.Fatal(err)
	}
	r := b.run(t, opts{}, append(append([]string{}, flags...), "--", b.probe, "-only", op, "-targets", string(js))...)
	rs, err := probe.ReadJSON(strings.NewReader(r.stdout))
	if err != nil || len(rs) != 1 {
		t.Fatalf("probe output: %v\n%s", err, r)
	}
	return rs[0], r
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
	stdin, stdout, stderr := startPiped(t, cmd)
	p := &paused{cmd: cmd, stdin: stdin, out: bufio.NewReader(stdout), stderr: stderr}
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

// TestNestedNoSocketMediation: under a seccomp listener of an outer sandbox
// ronly gets none of its own, so nothing mediates connect: it must say so
// on stderr without -v, and the report must say socket_mediation and
// docker_guard false. What it says is true: a host socket answers.
func TestNestedNoSocketMediation(t *testing.T) {
	b := setup(t)
	c := newCanaries(t, 0)
	dir := sockDir(t)
	path := filepath.Join(dir, "api.sock")
	l := listenUnix(t, path)
	defer l.Close()
	tg := c.targets()
	tg.Socket = path
	js, err := json.Marshal(tg)
	if err != nil {
		t.Fatal(err)
	}
	rep := filepath.Join(dir, "report.json")
	r := underFilter(t, "listener", b.ronly, "--report", rep, "--", b.probe, "-only", "connect hidden unix socket under /run", "-targets", string(js))
	if r.code != 0 {
		t.Fatalf("%s", r)
	}
	if !strings.Contains(r.stderr, "unix sockets are NOT mediated") {
		t.Errorf("ronly did not warn that sockets are not mediated:\n%s", r)
	}
	var doc struct {
		Layers struct {
			SocketMediation *bool `json:"socket_mediation"`
			DockerGuard     *bool `json:"docker_guard"`
		} `json:"layers"`
	}
	b2, err := os.ReadFile(rep)
	if err != nil || json.Unmarshal(b2, &doc) != nil || doc.Layers.SocketMediation == nil || doc.Layers.DockerGuard == nil {
		t.Fatalf("report: %v\n%s", err, b2)
	}
	if *doc.Layers.SocketMediation || *doc.Layers.DockerGuard {
		t.Errorf("the report claims socket mediation or a Docker guard that was not in force:\n%s", b2)
	}
	if n := drain(l); n != 1 {
		t.Errorf("the host socket saw %d connections: the warning should match what happened (1)", n)
	}
}

// TestReportSocketMediation: a normal session reports the mediation it had.
func TestReportSocketMediation(t *testing.T) {
	b := setup(t)
	rep := filepath.Join(sockDir(t), "report.json")
	r := b.run(t, opts{}, "--report", rep, "--", "/bin/true")
	if r.code != 0 {
		t.Fatalf("%s", r)
	}
	var doc struct {
		Layers struct {
			SocketMediation bool `json:"socket_mediation"`
		} `json:"layers"`
	}
	b2, err := os.ReadFile(rep)
	if err != nil || json.Unmarshal(b2, &doc) != nil {
		t.Fatalf("report: %v\n%s", err, b2)
	}
	if !doc.Layers.SocketMediation {
		t.Errorf("the report says socket_mediation false in a plain session:\n%s", b2)
	}
	if strings.Contains(r.stderr, "NOT mediated") {
		t.Errorf("a warning about mediation in a plain session:\n%s", r)
	}
}
