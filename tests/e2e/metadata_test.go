package e2e

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"

	"golang.org/x/sys/unix"

	"ronly.dev/ronly/go/probe"
)

// Cloud instance metadata (go/sandbox/metadata.go), tested without leaving
// the machine: the test takes a network namespace of its own whose
// loopback holds 169.254.169.254 and fd00:ec2::254, serves HTTP on them and
// on 127.0.0.1, and runs ronly there. The servers count what reaches them:
// the sandbox's connects and datagrams to the metadata addresses must not.

// ownNetns moves the test's goroutine, locked to its thread, into a new
// network namespace with lo up and the metadata addresses on it. Sockets
// the test opens and programs it starts from now on are in it; the thread
// is never unlocked, so the Go runtime ends it with the test (and starts
// new threads from a clean one meanwhile).
func ownNetns(t *testing.T) {
	t.Helper()
	runtime.LockOSThread()
	if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
		t.Fatalf("unshare(CLONE_NEWNET): %v", err)
	}
	needTool(t, "ip")
	for _, args := range [][]string{
		{"link", "set", "lo", "up"},
		{"addr", "add", "169.254.169.254/32", "dev", "lo"},
		{"-6", "addr", "add", "fd00:ec2::254/128", "dev", "lo", "nodad"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// countingServer is an HTTP server that counts the TCP connections it
// accepted (a refused connect never reaches accept) and the requests.
type countingServer struct {
	conns, requests atomic.Int64
	addr            string
}

func serveHTTP(t *testing.T, addr, body string) *countingServer {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen %s: %v", addr, err)
	}
	s := &countingServer{addr: l.Addr().String()}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			s.requests.Add(1)
			fmt.Fprint(w, body)
		}),
		ConnState: func(_ net.Conn, st http.ConnState) {
			if st == http.StateNew {
				s.conns.Add(1)
			}
		},
	}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return s
}

// countUDP counts the datagrams that reach addr.
func countUDP(t *testing.T, addr string) *atomic.Int64 {
	t.Helper()
	c, err := net.ListenPacket("udp", addr)
	if err != nil {
		t.Fatalf("listen udp %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	var n atomic.Int64
	go func() {
		b := make([]byte, 64)
		for {
			if _, _, err := c.ReadFrom(b); err != nil {
				return
			}
			n.Add(1)
		}
	}()
	return &n
}

// metadataOps are the probe's operations on the metadata addresses.
var metadataOps = []string{
	"connect 169.254.169.254:80 (cloud metadata)",
	"connect [::ffff:169.254.169.254]:80 (cloud metadata, IPv4-mapped)",
	"connect [fd00:ec2::254]:80 (cloud metadata, IPv6)",
	"sendto UDP 169.254.169.254:9 (cloud metadata)",
	"sendmsg UDP 169.254.169.254:9 (cloud metadata)",
}

func TestMetadataRefused(t *testing.T) {
	b := setup(t)
	needTool(t, "curl")
	ownNetns(t)
	v4 := serveHTTP(t, "169.254.169.254:80", "credentials")
	v6 := serveHTTP(t, "[fd00:ec2::254]:80", "credentials")
	local := serveHTTP(t, "127.0.0.1:0", "local-ok")
	udp := countUDP(t, fmt.Sprintf("169.254.169.254:%d", probe.MetadataUDPPort))
	// Outside the sandbox, in this namespace, the servers answer: what
	// the sandbox gets below is the sandbox's doing.
	if out, err := exec.Command("curl", "-s", "-m", "5", "http://169.254.169.254/").Output(); err != nil || string(out) != "credentials" {
		t.Fatalf("curl outside the sandbox: %q, %v", out, err)
	}
	base := v4.conns.Load()

	script := fmt.Sprintf(`curl -s -m 5 -o /dev/null http://169.254.169.254/latest/meta-data/; echo "metadata=$?"
curl -s -m 5 -g -o /dev/null 'http://[fd00:ec2::254]/'; echo "metadata6=$?"
/usr/bin/python3 -c 'import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for send in (lambda a: s.sendto(b"x", a), lambda a: s.sendmsg([b"x"], [], 0, a)):
    try: send(("169.254.169.254", %d)); print("udp=sent")
    except PermissionError: print("udp=EACCES")'
echo "local=$(curl -s -m 5 http://%s/)"`, probe.MetadataUDPPort, local.addr)
	tg := probe.Targets{File: "/nonexistent", Dir: "/nonexistent", Socket: "/nonexistent", Pid: os.Getpid(), Abstract: "none", Marker: "metadata"}
	js, err := json.Marshal(tg)
	if err != nil {
		t.Fatal(err)
	}
	modes := []struct {
		name  string
		uid   int
		flags []string
	}{
		{"root", 0, nil},
		{"privileged", 0, []string{"--privileged"}},
		{"rootless as root", 0, []string{"--rootless"}},
		{"unprivileged user", nobody, nil},
		{"ci profile", 0, []string{"--profile", "ci"}},
	}
	for _, m := range modes {
		dir := userDir(t, m.uid, "ronly-e2e-metadata-")
		audit := filepath.Join(dir, "audit.log")
		flags := append([]string{"--audit-log", audit, "--no-metrics"}, m.flags...)
		o := opts{uid: m.uid, dir: dir}
		if m.name == "ci profile" {
			flags = append(flags, "--workspace", dir)
		}
		localBefore := local.requests.Load()
		r := b.sh(t, o, flags, script)
		if r.code != 0 || !strings.Contains(r.stdout, "metadata=7\n") || !strings.Contains(r.stdout, "metadata6=7\n") {
			t.Errorf("%s: curl of the metadata addresses did not fail to connect (7):\n%s", m.name, r)
		}
		// ci without --no-network keeps the host's network: so it must
		// refuse the metadata addresses itself.
		if strings.Count(r.stdout, "udp=EACCES\n") != 2 {
			t.Errorf("%s: sendto and sendmsg to 169.254.169.254 were not refused with EACCES:\n%s", m.name, r)
		}
		if !strings.Contains(r.stdout, "local=local-ok") || local.requests.Load() != localBefore+1 {
			t.Errorf("%s: the server on %s did not answer the sandbox:\n%s", m.name, local.addr, r)
		}
		// Curl's two connects and Python's two sends are refused, then
		// the probe's operations (not in the ci profile, whose own /proc
		// makes the probe think it is not in a sandbox).
		want := []string{"connect 169.254.169.254:80", "connect [fd00:ec2::254]:80", "sendto 169.254.169.254:9", "sendmsg 169.254.169.254:9"}
		ops := metadataOps
		if m.name == "ci profile" {
			ops = nil
		} else {
			want = append(want, "connect 169.254.169.254:80", "connect [::ffff:169.254.169.254]:80", "connect [fd00:ec2::254]:80",
				"sendto 169.254.169.254:9", "sendmsg 169.254.169.254:9")
		}
		for _, op := range ops {
			rr := b.run(t, o, append(append([]string{}, flags...), "--", b.probe, "-only", op, "-targets", string(js))...)
			rs, err := probe.ReadJSON(strings.NewReader(rr.stdout))
			if err != nil || len(rs) != 1 {
				t.Fatalf("%s: probe output: %v\n%s", m.name, err, rr)
			}
			if rs[0].Errno != "EACCES" {
				t.Errorf("%s: %s: %+v, want EACCES", m.name, op, rs[0])
			}
		}
		if n := v4.conns.Load() - base; n != 0 {
			t.Errorf("%s: the server on 169.254.169.254 accepted %d connections from the sandbox", m.name, n)
		}
		if n := v6.conns.Load(); n != 0 {
			t.Errorf("%s: the server on fd00:ec2::254 accepted %d connections from the sandbox", m.name, n)
		}
		if n := udp.Load(); n != 0 {
			t.Errorf("%s: %d datagrams reached 169.254.169.254:%d", m.name, n, probe.MetadataUDPPort)
		}
		// Each refusal is audited, with the address.
		var got []string
		for _, l := range readAudit(t, audit) {
			if strings.Contains(l.Reason, "metadata") {
				got = append(got, l.What+" "+l.Path)
				if l.Kind != "syscall" || l.Errno != "EACCES" {
					t.Errorf("%s: audit line %+v", m.name, l)
				}
			}
		}
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("%s: metadata refusals audited:\n%s\nwant:\n%s", m.name, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	}
}

// TestMetadataCounted: the report counts the refused connects.
func TestMetadataCounted(t *testing.T) {
	b := setup(t)
	needTool(t, "curl")
	ownNetns(t)
	v4 := serveHTTP(t, "169.254.169.254:80", "credentials")
	dir := userDir(t, 0, "ronly-e2e-metadata-")
	rep := filepath.Join(dir, "report.json")
	r := b.sh(t, opts{}, []string{"--report", rep, "--no-metrics"}, `for i in 1 2 3; do curl -s -m 5 http://169.254.169.254/; done; true`)
	if r.code != 0 {
		t.Fatalf("%s", r)
	}
	var doc struct {
		Refused map[string]map[string]uint64 `json:"refused"`
	}
	b2, err := os.ReadFile(rep)
	if err != nil || json.Unmarshal(b2, &doc) != nil {
		t.Fatalf("report: %v\n%s", err, b2)
	}
	if n := doc.Refused["syscall"]["connect"]; n != 3 {
		t.Errorf("the report counts %d refused connects, want 3:\n%s", n, b2)
	}
	if n := v4.conns.Load(); n != 0 {
		t.Errorf("the server accepted %d connections", n)
	}
}

// TestAllowMetadata: --allow-metadata lets the sandbox reach it, in both
// kinds of user namespace.
func TestAllowMetadata(t *testing.T) {
	b := setup(t)
	needTool(t, "curl")
	ownNetns(t)
	v4 := serveHTTP(t, "169.254.169.254:80", "credentials")
	v6 := serveHTTP(t, "[fd00:ec2::254]:80", "credentials")
	udp := countUDP(t, fmt.Sprintf("169.254.169.254:%d", probe.MetadataUDPPort))
	for _, u := range users {
		dir := userDir(t, u.uid, "ronly-e2e-metadata-")
		flags := append([]string{"--allow-metadata", "--no-metrics"}, u.flags...)
		r := b.sh(t, opts{uid: u.uid, dir: dir}, flags, `curl -s -m 5 http://169.254.169.254/; echo; curl -s -m 5 -g 'http://[fd00:ec2::254]/'; echo
/usr/bin/python3 -c 'import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"x", ("169.254.169.254", `+fmt.Sprint(probe.MetadataUDPPort)+`))'`)
		if r.code != 0 || r.stdout != "credentials\ncredentials\n" {
			t.Errorf("%s: with --allow-metadata:\n%s", u.name, r)
		}
	}
	if v4.requests.Load() != int64(len(users)) || v6.requests.Load() != int64(len(users)) {
		t.Errorf("requests that reached the servers: %d on 169.254.169.254, %d on fd00:ec2::254; want %d each", v4.requests.Load(), v6.requests.Load(), len(users))
	}
	// A datagram on lo is queued before sendto returns.
	if n := udp.Load(); n != int64(len(users)) {
		t.Errorf("%d datagrams reached 169.254.169.254, want %d", n, len(users))
	}
}

// TestMetadataNested: without a seccomp listener of its own (nested in
// another supervised sandbox) ronly cannot refuse the metadata addresses:
// it says so, and the warning is true.
func TestMetadataNested(t *testing.T) {
	b := setup(t)
	needTool(t, "curl")
	ownNetns(t)
	v4 := serveHTTP(t, "169.254.169.254:80", "credentials")
	r := underFilter(t, "listener", b.ronly, "--no-metrics", "--", "curl", "-s", "-m", "5", "http://169.254.169.254/")
	if r.code != 0 || r.stdout != "credentials" {
		t.Fatalf("nested: %s", r)
	}
	if !strings.Contains(r.stderr, "metadata service (169.254.169.254, fd00:ec2::254) is NOT refused") {
		t.Errorf("ronly did not warn that the metadata service is reachable:\n%s", r)
	}
	if v4.requests.Load() != 1 {
		t.Errorf("the server saw %d requests, want 1", v4.requests.Load())
	}
	// --no-network: no route to it, so no warning.
	r = underFilter(t, "listener", b.ronly, "--no-metrics", "--no-network", "--", "/bin/true")
	if strings.Contains(r.stderr, "metadata") {
		t.Errorf("a warning about metadata with --no-network:\n%s", r)
	}
}
