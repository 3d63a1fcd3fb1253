package e2e

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"

	"ronly.dev/ronly/go/probe"
)

// TestLandlockOnlyMode runs ronly with --mode landlock-only (no namespaces,
// as where Docker's default seccomp profile refuses them) as root and as a
// user, and checks the host from outside: a write outside the session's
// places is refused, the scratch directory ($TMPDIR) works and is removed
// at the end, the shims' directory cannot be written, a host process of
// the same user cannot be signalled.
func TestLandlockOnlyMode(t *testing.T) {
	b := setup(t)
	for _, u := range []struct {
		name string
		uid  int
	}{{"root", 0}, {"user", nobody}} {
		t.Run(u.name, func(t *testing.T) {
			c := newCanaries(t, u.uid)
			dir := userDir(t, u.uid, "ronly-e2e-nons-")
			canary := filepath.Join(dir, "canary")
			writeFile(t, u.uid, canary, "canary\n", 0o644)
			pid := c.proc.Process.Pid
			script := fmt.Sprintf(`echo "tmpdir=$TMPDIR"
echo "path=$PATH"
shims=$(dirname "$(command -v docker)")
echo "shims=$shims"
{ echo pwned > %[1]s; } 2>/dev/null; echo canary=$?
{ echo new > %[2]s/new; } 2>/dev/null; echo create=$?
{ echo pwned > /tmp/ronly-e2e-nons-%[3]s; } 2>/dev/null; echo hosttmp=$?
touch "$shims/planted" 2>/dev/null; echo shimwrite=$?
echo scratch > "$TMPDIR/file" && cat "$TMPDIR/file" && mkdir "$TMPDIR/d" && mv "$TMPDIR/file" "$TMPDIR/d/" && rm -r "$TMPDIR/d" && echo scratch=ok
kill -0 %[4]d 2>/dev/null; echo kill=$?
echo x > /dev/null && echo devnull=ok
sleep 1000 &
`, canary, dir, c.marker, pid)
			r := b.sh(t, opts{uid: u.uid}, []string{"--mode", "landlock-only", "-v"}, script)
			if r.code != 0 {
				t.Fatalf("ronly --mode landlock-only failed:\n%s", r)
			}
			out := values(r.stdout)
			for k, want := range map[string]string{"canary": "2", "create": "2", "hosttmp": "2", "shimwrite": "1", "scratch": "ok", "kill": "1", "devnull": "ok"} {
				if out[k] != want {
					t.Errorf("%s=%q, want %q:\n%s", k, out[k], want, r)
				}
			}
			if !strings.Contains(r.stderr, "mode=landlock-only") || !strings.Contains(r.stderr, "userns=false") {
				t.Errorf("-v does not name the mode:\n%s", r.stderr)
			}
			// From outside.
			unchanged(t, canary, "canary\n")
			for _, p := range []string{filepath.Join(dir, "new"), "/tmp/ronly-e2e-nons-" + c.marker} {
				if _, err := os.Lstat(p); err == nil {
					os.Remove(p)
					t.Errorf("HOST CHANGED: %s was created from inside", p)
				}
			}
			if !alive(pid) {
				t.Errorf("HOST CHANGED: canary process %d was killed from inside", pid)
			}
			tmp, shims := out["tmpdir"], out["shims"]
			if !filepath.IsAbs(tmp) || !strings.HasPrefix(out["path"], shims+":") || filepath.Dir(tmp) != filepath.Dir(shims) {
				t.Fatalf("want TMPDIR and the shims in one session directory, the shims first on PATH:\n%s", r.stdout)
			}
			if _, err := os.Lstat(filepath.Dir(tmp)); err == nil {
				t.Errorf("the session directory %s is still there after the session", filepath.Dir(tmp))
			}
		})
	}
}

// values reads the script's key=value lines.
func values(s string) map[string]string {
	out := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok {
			out[k] = v
		}
	}
	return out
}

// fakeDockerd stands in for dockerd on a unix socket in a directory of its
// own (named from prefix): it answers every call with OK and records what
// reached it, which seen returns.
func fakeDockerd(t *testing.T, prefix string) (sock string, seen func() []string) {
	sock = filepath.Join(userDir(t, 0, prefix), "docker.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var calls []string
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		calls = append(calls, r.Method+" "+r.URL.Path)
		mu.Unlock()
		w.Header().Set("Api-Version", "1.41")
		w.Write([]byte("OK"))
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return sock, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), calls...)
	}
}

// TestLandlockOnlyDockerGuard: in landlock-only mode the host's Docker
// socket is refused, and the guard answers at a socket of its own, which
// DOCKER_HOST names inside. A fake daemon stands in for dockerd and counts
// what reaches it.
func TestLandlockOnlyDockerGuard(t *testing.T) {
	b := setup(t)
	needTool(t, "curl")
	sock, seen := fakeDockerd(t, "ronly-e2e-nons-docker-")

	script := fmt.Sprintf(`echo "docker_host=$DOCKER_HOST"
guard=${DOCKER_HOST#unix://}
curl -s -o /dev/null -w '%%{http_code}' --unix-socket %[1]s http://d/_ping; echo " real=$?"
echo "ping=$(curl -s --unix-socket "$guard" http://d/_ping)"
echo "kill=$(curl -s -o /dev/null -w '%%{http_code}' -X POST --unix-socket "$guard" http://d/containers/x/kill)"
`, sock)
	r := b.sh(t, opts{env: []string{"DOCKER_HOST=unix://" + sock}}, []string{"--mode", "landlock-only", "-v"}, script)
	if r.code != 0 {
		t.Fatalf("ronly failed:\n%s", r)
	}
	out := values(r.stdout)
	if out["docker_host"] == "" || out["docker_host"] == "unix://"+sock {
		t.Errorf("DOCKER_HOST inside should name the guard, not the host's socket:\n%s", r)
	}
	if !strings.Contains(r.stdout, "000 real=7") {
		t.Errorf("the host's Docker socket answered inside (want curl exit 7, connection refused by the supervisor):\n%s", r)
	}
	if out["ping"] != "OK" {
		t.Errorf("the guard did not answer GET /_ping:\n%s", r)
	}
	if out["kill"] != "403" {
		t.Errorf("the guard let POST /containers/x/kill through (status %q):\n%s", out["kill"], r)
	}
	if !strings.Contains(r.stderr, "docker_guard=true") {
		t.Errorf("-v does not say the guard is on:\n%s", r.stderr)
	}
	if got := seen(); len(got) != 1 || got[0] != "GET /_ping" {
		t.Errorf("the daemon saw %q, want only the guard's GET /_ping", got)
	}
}

// TestLandlockOnlyAutoFallback: under Docker's default seccomp profile
// (no namespaces, no pivot_root), auto mode falls back to landlock-only,
// says so in one line on stderr, and the host stays read-only.
func TestLandlockOnlyAutoFallback(t *testing.T) {
	b := setup(t)
	dir := userDir(t, 0, "ronly-e2e-nons-auto-")
	canary := filepath.Join(dir, "canary")
	writeFile(t, 0, canary, "canary\n", 0o644)
	for _, filter := range []string{"docker-default", "deny-pivot-root"} {
		t.Run(filter, func(t *testing.T) {
			r := underFilter(t, filter, b.ronly, "--", "/bin/sh", "-c", "{ echo pwned > "+canary+"; } 2>/dev/null; echo canary=$?; echo ok > $TMPDIR/f && cat $TMPDIR/f")
			if r.code != 0 || r.stdout != "canary=2\nok\n" {
				t.Errorf("want the write refused and the scratch usable:\n%s", r)
			}
			lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
			if len(lines) != 1 || !strings.Contains(lines[0], "mode landlock-only") {
				t.Errorf("want one line on stderr naming landlock-only mode:\n%s", r)
			}
			unchanged(t, canary, "canary\n")
		})
	}
}

// TestProbeLandlockOnly: `ronly probe --mode landlock-only` lets no hostile
// operation through and every everyday one works, in two configurations
// (none goes without Landlock: nothing else would stand between the
// battery and the host); and under Docker's default seccomp profile, auto
// mode probes in landlock-only mode by itself, as root and as a user.
func TestProbeLandlockOnly(t *testing.T) {
	b := setup(t)
	want := []string{"caps+landlock", "seccomp"}
	runProbe := func(t *testing.T, argv, want []string, mode string) {
		t.Helper()
		rep := runProbe(t, argv, want, mode)
		for _, o := range rep.Operations {
			if o.Kind == probe.Everyday && o.BlockedBy != "" && o.BlockedBy != probe.BlockedByNA || o.Kind == probe.Hostile && o.BlockedBy == probe.BlockedByNone {
				t.Logf("%s %s: %s %s (blocked by %q)", o.Kind, o.Name, o.Result, o.Errno, o.BlockedBy)
			}
		}
	}
	t.Run("forced", func(t *testing.T) {
		runProbe(t, []string{b.ronly, "probe", "--mode", "landlock-only", "--json"}, want, "landlock-only")
	})
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv(envFilter, "docker-default")
	t.Run("auto/root", func(t *testing.T) {
		runProbe(t, []string{exe, "-test.run=^$", "--", b.ronly, "probe", "--json"}, want, "landlock-only")
	})
	t.Run("auto/user", func(t *testing.T) {
		needTool(t, "setpriv")
		setpriv, _ := exec.LookPath("setpriv")
		runProbe(t, []string{exe, "-test.run=^$", "--", setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", b.ronly, "probe", "--json"}, want, "landlock-only")
	})
}

// TestLandlockOnlyMetadata: Landlock has no right for a file's mode, owner,
// times or extended attributes; in landlock-only mode the supervisor makes
// those calls itself, only in the session's places. Checked from outside:
// a host file of the session's own user keeps its mode, times and
// attributes; the same calls work in $TMPDIR.
func TestLandlockOnlyMetadata(t *testing.T) {
	b := setup(t)
	for _, tool := range []string{"setfattr", "chattr", "truncate", "touch", "stat"} {
		needTool(t, tool)
	}
	for _, u := range []struct {
		name string
		uid  int
	}{{"root", 0}, {"user", nobody}} {
		t.Run(u.name, func(t *testing.T) {
			dir := userDir(t, u.uid, "ronly-e2e-nons-meta-")
			canary := filepath.Join(dir, "canary")
			writeFile(t, u.uid, canary, "canary\n", 0o644)
			var before unix.Stat_t
			if err := unix.Stat(canary, &before); err != nil {
				t.Fatal(err)
			}
			script := fmt.Sprintf(`f=%[1]s
chmod 600 $f 2>/dev/null; echo chmod=$?
chown %[2]d:%[2]d $f 2>/dev/null; echo chown=$?
touch -d @978307200 $f 2>/dev/null; echo touch=$?
setfattr -n user.ronly -v x $f 2>/dev/null; echo setfattr=$?
truncate -s 0 $f 2>/dev/null; echo truncate=$?
chattr +d $f 2>/dev/null; echo chattr=$?
s=$TMPDIR/s; echo hi > $s
chmod 600 $s && chown %[2]d:%[2]d $s && truncate -s 1 $s && touch -d @978307200 $s && echo scratch=$(stat -c %%a.%%s.%%Y $s)
`, canary, u.uid)
			r := b.sh(t, opts{uid: u.uid}, []string{"--mode", "landlock-only"}, script)
			if r.code != 0 {
				t.Fatalf("ronly failed:\n%s", r)
			}
			out := values(r.stdout)
			for _, k := range []string{"chmod", "chown", "touch", "setfattr", "truncate", "chattr"} {
				if out[k] == "0" || out[k] == "" {
					t.Errorf("%s of a host file succeeded inside:\n%s", k, r)
				}
			}
			if out["scratch"] != "600.1.978307200" {
				t.Errorf("metadata calls in $TMPDIR: got %q, want 600.1.978307200:\n%s", out["scratch"], r)
			}
			var after unix.Stat_t
			if err := unix.Stat(canary, &after); err != nil {
				t.Fatal(err)
			}
			if after.Mode != before.Mode || after.Uid != before.Uid || after.Size != before.Size || after.Mtim != before.Mtim {
				t.Errorf("HOST CHANGED: the canary's mode, owner, size or times changed: before %+v after %+v", before, after)
			}
			if sz, err := unix.Getxattr(canary, "user.ronly", nil); err == nil {
				t.Errorf("HOST CHANGED: the canary got an attribute user.ronly (%d bytes)", sz)
			}
		})
	}
}

// TestLandlockOnlyIPC: without an IPC namespace the host's System V shared
// memory of the session's own user is in reach, and Landlock does not
// judge it: the seccomp program refuses System V IPC and POSIX message
// queues in landlock-only mode. A segment the test makes (as the user) is
// still there afterwards, seen from outside.
func TestLandlockOnlyIPC(t *testing.T) {
	b := setup(t)
	needTool(t, "ipcrm")
	for _, u := range []struct {
		name string
		uid  int
	}{{"root", 0}, {"user", nobody}} {
		t.Run(u.name, func(t *testing.T) {
			id, err := unix.SysvShmGet(unix.IPC_PRIVATE, 4096, unix.IPC_CREAT|0o600)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { unix.SysvShmCtl(id, unix.IPC_RMID, nil) })
			var ds unix.SysvShmDesc
			if _, err := unix.SysvShmCtl(id, unix.IPC_STAT, &ds); err != nil {
				t.Fatal(err)
			}
			ds.Perm.Uid, ds.Perm.Gid = uint32(u.uid), uint32(u.uid)
			if _, err := unix.SysvShmCtl(id, unix.IPC_SET, &ds); err != nil {
				t.Fatal(err)
			}
			r := b.sh(t, opts{uid: u.uid}, []string{"--mode", "landlock-only"}, fmt.Sprintf("ipcrm -m %d 2>/dev/null; echo ipcrm=$?", id))
			if r.code != 0 || r.stdout == "ipcrm=0\n" {
				t.Errorf("want ipcrm refused:\n%s", r)
			}
			if _, err := unix.SysvShmCtl(id, unix.IPC_STAT, &ds); err != nil {
				t.Errorf("HOST CHANGED: the host's shared memory segment %d is gone (%v)", id, err)
			}
		})
	}
}
