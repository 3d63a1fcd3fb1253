package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"ronly.dev/ronly/go/probe"
)

// Docker's default seccomp profile without CAP_SYS_PTRACE, as far as
// ronly's calls go: envfix_test.go's "docker-default", and pidfd_getfd,
// process_vm_readv and process_vm_writev fail with EPERM. The supervisor
// then makes the session's sockets itself (go/sandbox/sockfd.go) and reads
// the caller's memory through /proc/PID/mem.
func init() {
	const newNS = 0x7E020000 // CLONE_NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET
	const (
		allow  = 10
		eperm  = 11
		enosys = 12
	)
	jeq := func(at int, nr uint32, to int) unix.SockFilter {
		return unix.SockFilter{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: nr, Jt: uint8(to - at - 1)}
	}
	filters["docker-no-ptrace"] = struct {
		prog  []unix.SockFilter
		flags uintptr
	}{[]unix.SockFilter{
		{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: 0}, // nr
		jeq(1, unix.SYS_PIDFD_GETFD, eperm),
		jeq(2, unix.SYS_PROCESS_VM_READV, eperm),
		jeq(3, unix.SYS_PROCESS_VM_WRITEV, eperm),
		jeq(4, unix.SYS_CLONE3, enosys),
		jeq(5, unix.SYS_PIVOT_ROOT, eperm),
		jeq(6, unix.SYS_UNSHARE, 8),
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: unix.SYS_CLONE, Jt: 0, Jf: 2},  // [7]: clone → [8], else allow
		{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: 16},                             // [8] arg0, low half
		{Code: unix.BPF_JMP | unix.BPF_JSET | unix.BPF_K, K: newNS, Jt: 1, Jf: 0},          // [9]
		{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ALLOW},                       // [10]
		{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM)},  // [11]
		{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS)}, // [12]
	}, 0}
}

// sockfdUsers are the users the tests run ronly as: root, and nobody
// through setpriv (after the filter, as a container's user would be).
var sockfdUsers = []struct {
	name string
	uid  int
}{{"root", 0}, {"user", nobody}}

// underNoPtrace starts ronly (args) under the docker-no-ptrace filter as
// uid, with stdin a pipe the caller closes to let the session end.
func underNoPtrace(t *testing.T, uid int, args ...string) (cmd *exec.Cmd, stdin io.WriteCloser, stdout *bufio.Reader, stderr *strings.Builder, cancel func()) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	argv := []string{"-test.run=^$", "--"}
	if uid != 0 {
		needTool(t, "setpriv")
		setpriv, _ := exec.LookPath("setpriv")
		argv = append(argv, setpriv, "--reuid="+strconv.Itoa(uid), "--regid="+strconv.Itoa(uid), "--clear-groups")
	}
	ctx, cancelCtx := context.WithTimeout(context.Background(), hangGuard)
	cmd = exec.CommandContext(ctx, exe, append(argv, args...)...)
	cmd.Env = append(os.Environ(), envFilter+"=docker-no-ptrace")
	if uid != 0 {
		cmd.Env = append(cmd.Env, "HOME=/", "USER=nobody", "LOGNAME=nobody")
	}
	cmd.Dir = "/"
	stderr = &strings.Builder{}
	cmd.Stderr = stderr
	stdin, err = cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	cancel = func() {
		stdin.Close()
		cmd.Wait()
		cancelCtx()
	}
	t.Cleanup(cancel)
	return cmd, stdin, bufio.NewReader(out), stderr, cancel
}

// readUntil reads lines of r until one starts with prefix; it returns
// that line and all read.
func readUntil(t *testing.T, r *bufio.Reader, prefix string) (string, string) {
	t.Helper()
	var all strings.Builder
	for {
		l, err := r.ReadString('\n')
		all.WriteString(l)
		if strings.HasPrefix(l, prefix) {
			return strings.TrimSpace(l), all.String()
		}
		if err != nil {
			return "", all.String()
		}
	}
}

// hostUnixServer listens on path (mode 0777, so that nobody may connect
// too) and reports, per connection, what it read before EOF and when EOF
// came.
type conn struct {
	data string
	eof  time.Time
}

func hostUnixServer(t *testing.T, path string) chan conn {
	t.Helper()
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(path, 0o777)
	t.Cleanup(func() { l.Close() })
	got := make(chan conn, 16)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(hangGuard))
				b, _ := io.ReadAll(c)
				got <- conn{string(b), time.Now()}
			}()
		}
	}()
	return got
}

// TestSocketFDsWithoutPidfdGetfd: where pidfd_getfd is refused (Docker's
// default profile without CAP_SYS_PTRACE), landlock-only mode makes the
// session's sockets in the supervisor, so that connect and send are
// mediated instead of refused. Checked from the host: an --allow-socket
// server gets the session's bytes and sees EOF when the session closes
// (while the session still runs); a server outside the session's places
// sees no connection at all; a UDP server gets a connected socket's send
// and sendmsg and the session gets its answer.
func TestSocketFDsWithoutPidfdGetfd(t *testing.T) {
	b := setup(t)
	for _, u := range sockfdUsers {
		t.Run(u.name, func(t *testing.T) {
			dir := userDir(t, 0, "ronly-e2e-sockfd-")
			os.Chmod(dir, 0o755)
			okPath, denyPath := filepath.Join(dir, "ok.sock"), filepath.Join(dir, "deny.sock")
			okConns, denyConns := hostUnixServer(t, okPath), hostUnixServer(t, denyPath)
			udp, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			if err != nil {
				t.Fatal(err)
			}
			defer udp.Close()
			udpGot := make(chan string, 4)
			go func() {
				b := make([]byte, 64)
				for {
					n, from, err := udp.ReadFromUDP(b)
					if err != nil {
						return
					}
					udpGot <- string(b[:n])
					udp.WriteToUDP([]byte("answer-"+string(b[:n])), from)
				}
			}()
			script := fmt.Sprintf(`
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(%[1]q)
s.sendall(b"hello")
s.sendmsg([b"-again"])
s.close()
print("closed", flush=True)
d = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
try:
    d.connect(%[2]q)
    print("deny=connected", flush=True)
except OSError as e:
    print("deny=%%d" %% e.errno, flush=True)
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.settimeout(5)
u.connect(("127.0.0.1", %[3]d))
u.send(b"q1")
u.sendmsg([b"q2"])
a = sorted([u.recv(64).decode(), u.recv(64).decode()])
print("udp=" + ",".join(a), flush=True)
print("done", flush=True)
sys.stdin.read()
`, okPath, denyPath, udp.LocalAddr().(*net.UDPAddr).Port)
			_, _, stdout, stderr, finish := underNoPtrace(t, u.uid, b.ronly, "--allow-socket", okPath, "--", "/usr/bin/python3", "-c", script)
			line, out := readUntil(t, stdout, "closed")
			if line == "" {
				finish()
				t.Fatalf("the session did not connect and close:\n%s\nstderr:\n%s", out, stderr)
			}
			closed := time.Now()
			select {
			case c := <-okConns:
				if c.data != "hello-again" {
					t.Errorf("the allowed server read %q, want %q", c.data, "hello-again")
				}
				t.Logf("EOF %v after the session closed", c.eof.Sub(closed).Round(time.Millisecond))
			case <-time.After(5 * time.Second):
				t.Errorf("the allowed server saw no EOF within 5s of the session's close (the session still runs)")
			}
			_, more := readUntil(t, stdout, "done")
			out += more
			finish()
			got := values(out)
			if got["deny"] != strconv.Itoa(int(syscall.EACCES)) {
				t.Errorf("connect to a host socket outside the session's places: deny=%q, want EACCES (%d):\n%s\nstderr:\n%s", got["deny"], syscall.EACCES, out, stderr)
			}
			if got["udp"] != "answer-q1,answer-q2" {
				t.Errorf("UDP connect, send and sendmsg: udp=%q, want answer-q1,answer-q2:\n%s\nstderr:\n%s", got["udp"], out, stderr)
			}
			// From outside. The session is over, so a connection the
			// server accepted has seen its EOF: its read ends and it is
			// sent on denyConns at once; a moment covers the scheduling.
			select {
			case c := <-denyConns:
				t.Errorf("HOST REACHED: the server outside the session's places got a connection (read %q)", c.data)
			case <-time.After(300 * time.Millisecond):
			}
			var udpData []string
			for len(udpGot) > 0 {
				udpData = append(udpData, <-udpGot)
			}
			if strings.Join(udpData, ",") != "q1,q2" && strings.Join(udpData, ",") != "q2,q1" {
				t.Errorf("the UDP server got %q, want q1 and q2", udpData)
			}
		})
	}
}

// TestSocketFDsBounded: 2,000 socket()s (UDP connect+send, unix stream
// connects, socketpairs), each closed by the session, leave the
// supervisor's descriptor count bounded, counted from outside in
// /proc/PID/fd while the session still runs.
func TestSocketFDsBounded(t *testing.T) {
	b := setup(t)
	dir := userDir(t, 0, "ronly-e2e-sockfd-n-")
	os.Chmod(dir, 0o755)
	okPath := filepath.Join(dir, "ok.sock")
	okConns := hostUnixServer(t, okPath)
	go func() {
		for range okConns {
		}
	}()
	udp, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	script := fmt.Sprintf(`
import socket, sys
for i in range(700):
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.connect(("127.0.0.1", %[1]d))
    u.send(b"x")
    u.close()
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(%[2]q)
    s.close()
    a, b = socket.socketpair()
    a.sendmsg([b"y"])
    a.close(); b.close()
print("ready", flush=True)
sys.stdin.read()
`, udp.LocalAddr().(*net.UDPAddr).Port, okPath)
	cmd, _, stdout, stderr, finish := underNoPtrace(t, 0, b.ronly, "--allow-socket", okPath, "--", "/usr/bin/python3", "-c", script)
	line, out := readUntil(t, stdout, "ready")
	if line == "" {
		finish()
		t.Fatalf("the loop did not finish:\n%s\nstderr:\n%s", out, stderr)
	}
	// ronly is the process the test binary exec'd into.
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	sockets := 0
	for _, e := range ents {
		if l, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", cmd.Process.Pid, e.Name())); strings.HasPrefix(l, "socket:") {
			sockets++
		}
	}
	finish()
	t.Logf("after 2,800 sockets the supervisor holds %d descriptors, %d of them sockets", len(ents), sockets)
	if len(ents) > 250 {
		t.Errorf("the supervisor holds %d descriptors (%d sockets) after the session made and closed 2,800 sockets", len(ents), sockets)
	}
}

// TestProbeWithoutPidfdGetfd: under Docker's default profile without
// CAP_SYS_PTRACE, `ronly probe` runs in landlock-only mode with every
// everyday operation ok (the socket ones included) and no hostile one
// through, as root and as a user.
func TestProbeWithoutPidfdGetfd(t *testing.T) {
	b := setup(t)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv(envFilter, "docker-no-ptrace")
	want := []string{"caps+landlock", "seccomp"}
	check := func(t *testing.T, rep *probe.Report) {
		for _, o := range rep.Operations {
			if o.Kind == probe.Everyday && o.BlockedBy != "" && o.BlockedBy != probe.BlockedByNA {
				t.Errorf("everyday %s: %s %s (blocked by %q)", o.Name, o.Result, o.Errno, o.BlockedBy)
			}
		}
	}
	t.Run("root", func(t *testing.T) {
		check(t, runProbe(t, []string{exe, "-test.run=^$", "--", b.ronly, "probe", "--json"}, want, "landlock-only"))
	})
	t.Run("user", func(t *testing.T) {
		needTool(t, "setpriv")
		setpriv, _ := exec.LookPath("setpriv")
		check(t, runProbe(t, []string{exe, "-test.run=^$", "--", setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", b.ronly, "probe", "--json"}, want, "landlock-only"))
	})
}

// TestDockerGuardWithoutPidfdGetfd: where pidfd_getfd is refused the
// Docker guard is on in landlock-only mode (the supervisor connects the
// session's sockets to it): a fake daemon counts what reaches it, and sees
// only the guard's GET /_ping; the host's socket is refused inside.
func TestDockerGuardWithoutPidfdGetfd(t *testing.T) {
	b := setup(t)
	needTool(t, "curl")
	sock, seen := fakeDockerd(t, "ronly-e2e-sockfd-docker-")
	t.Setenv("DOCKER_HOST", "unix://"+sock)
	script := fmt.Sprintf(`guard=${DOCKER_HOST#unix://}
curl -s -o /dev/null -w '%%{http_code}' --unix-socket %[1]s http://d/_ping; echo " real=$?"
echo "ping=$(curl -s --unix-socket "$guard" http://d/_ping)"
echo "kill=$(curl -s -o /dev/null -w '%%{http_code}' -X POST --unix-socket "$guard" http://d/containers/x/kill)"
echo done
`, sock)
	_, _, stdout, stderr, finish := underNoPtrace(t, 0, b.ronly, "-v", "--", "/bin/sh", "-c", script)
	_, out := readUntil(t, stdout, "done")
	finish()
	got := values(out)
	if !strings.Contains(out, "000 real=7") {
		t.Errorf("the host's Docker socket answered inside (want curl exit 7):\n%s\nstderr:\n%s", out, stderr)
	}
	if got["ping"] != "OK" || got["kill"] != "403" {
		t.Errorf("want the guard to answer GET /_ping and refuse POST /containers/x/kill (403):\n%s\nstderr:\n%s", out, stderr)
	}
	if !strings.Contains(stderr.String(), "docker_guard=true") {
		t.Errorf("-v does not say the guard is on:\n%s", stderr)
	}
	if got := seen(); len(got) != 1 || got[0] != "GET /_ping" {
		t.Errorf("the daemon saw %q, want only the guard's GET /_ping", got)
	}
}
