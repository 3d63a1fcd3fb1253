package sandbox

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"ronly.dev/ronly/go/kubeguard"
	"ronly.dev/ronly/go/policy"
	cinit "ronly.dev/ronly/init"
)

// The Kubernetes guard. The credentials a session could use against the
// cluster are hidden inside (creds.go); the supervisor keeps them and
// serves the API read-only in their place (go/kubeguard): a TLS port on the
// host's 127.0.0.1, a kubeconfig with no secret in it that names the port
// ($KUBECONFIG inside), and KUBERNETES_SERVICE_HOST/PORT pointing there for
// in-cluster clients, whose ca.crt inside is the guard's CA.
//
// Why a loopback TCP port and not a unix socket: kubectl and client-go
// reach a server only by URL (no unix sockets), and in-cluster clients only
// by host and port over HTTPS. Why the host's loopback: the session shares
// the host's network namespace unless --no-network (then the guard is off:
// nothing inside reaches the cluster anyway), and a listener of the
// supervisor's cannot be put in a user namespace's network namespace by an
// unprivileged supervisor.
//
// A port on the host's loopback is reachable by every process of the host,
// and the guard answers with the supervisor's credentials. So it serves only
// connections the session made: every connect of the session is the
// supervisor's to make (mediate_sock.go), and when one goes to the guard's
// address the supervisor notes the socket's local address; the guard
// accepts a connection only from a noted address, once. Anything else is
// closed unanswered. Without a seccomp listener (a nested sandbox) nothing
// is noted and the guard serves no one.

// kubeAdmitWait bounds how long an accepted connection waits for its
// connect to be noted: a blocking connect returns (and is noted) only after
// the handshake, which is when the guard may already have accepted it.
const kubeAdmitWait = 3 * time.Second

// kubeAdmitTTL is how long a noted address stays admissible: a connect
// that never reached the guard must not leave its port admissible for a
// host process that binds it later.
const kubeAdmitTTL = 10 * time.Second

type kubeGuard struct {
	addr   netip.AddrPort // the guard's, on the host's loopback
	ln     net.Listener
	dir    string // the session's kubeconfig and the guard's CA
	caFile string
	// tokenFile is the placeholder token in-cluster clients read inside.
	tokenFile string
	config    string // the kubeconfig inside
	source    string // where the credential came from

	mu       sync.Mutex
	cond     *sync.Cond
	admitted map[netip.AddrPort]time.Time
}

// kubeUpstream finds the credentials kubectl would use outside:
// --kube-config, else $KUBECONFIG, else ~/.kube/config, else the pod's
// service account. nil when there are none.
func kubeUpstream(p *policy.Policy, env func(string) string) (*kubeguard.Upstream, error) {
	var paths []string
	switch {
	case len(p.KubeConfig) > 0:
		paths = p.KubeConfig
	case env("KUBECONFIG") != "":
		for _, f := range filepath.SplitList(env("KUBECONFIG")) {
			if f != "" {
				paths = append(paths, f)
			}
		}
	case env("HOME") != "":
		paths = []string{filepath.Join(env("HOME"), ".kube", "config")}
	}
	var found []string
	for _, f := range paths {
		if _, err := os.Stat(f); err == nil {
			found = append(found, f)
		}
	}
	if len(found) > 0 {
		u, err := kubeguard.FromKubeconfig(found)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", strings.Join(found, ":"), err)
		}
		u.Source = strings.Join(found, ":") + " (" + u.Source + ")"
		return u, nil
	}
	return kubeguard.InCluster(env)
}

// startKubeGuard returns nil when the session has no cluster credentials,
// or has its own network namespace.
func startKubeGuard(p *policy.Policy, refused func(Refusal), warn func(string)) (*kubeGuard, error) {
	if p.NoNetwork {
		return nil, nil
	}
	up, err := kubeUpstream(p, os.Getenv)
	if err != nil {
		// The credentials are still hidden (creds.go); only the read-only
		// API is missing inside.
		warn(fmt.Sprintf("the Kubernetes guard is off: %v; kubectl inside has no cluster", err))
		return nil, nil
	}
	if up == nil {
		return nil, nil
	}
	serving, err := kubeguard.NewServing(net.IPv4(127, 0, 0, 1))
	if err != nil {
		return nil, fmt.Errorf("kubernetes guard: %w", err)
	}
	raw, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("kubernetes guard: %w", err)
	}
	addr := raw.Addr().(*net.TCPAddr).AddrPort()
	// Visible inside (the host's files are, read-only; /tmp is not): the
	// kubeconfig and the CA hold no secret.
	base := "/var/tmp"
	if os.Geteuid() == 0 {
		if err := os.MkdirAll("/run/ronly", 0o755); err == nil {
			base = "/run/ronly"
		}
	}
	dir, err := os.MkdirTemp(base, "kube-")
	if err == nil {
		err = os.Chmod(dir, 0o755)
	}
	if err != nil {
		raw.Close()
		return nil, fmt.Errorf("kubernetes guard: %w", err)
	}
	k := &kubeGuard{addr: addr, dir: dir, caFile: filepath.Join(dir, "ca.crt"), config: filepath.Join(dir, "config"), tokenFile: filepath.Join(dir, "token"),
		source: up.Source, admitted: map[netip.AddrPort]time.Time{}}
	k.cond = sync.NewCond(&k.mu)
	server := "https://" + addr.String()
	for _, f := range []struct {
		path string
		data []byte
	}{
		{k.caFile, serving.CAPEM},
		{k.tokenFile, []byte(kubeguard.Placeholder)},
		{k.config, kubeguard.Kubeconfig(server, serving.CAPEM, up.Namespace)},
	} {
		if err := os.WriteFile(f.path, f.data, 0o644); err != nil {
			raw.Close()
			os.RemoveAll(dir)
			return nil, fmt.Errorf("kubernetes guard: %w", err)
		}
	}
	k.ln = serving.Listener(&admitListener{Listener: raw, k: k})
	g := &kubeguard.Guard{Upstream: up, HideSecrets: p.KubeHideSecrets, Refused: func(verb, resource string) {
		refused(Refusal{Time: time.Now(), Kind: RefusedAPI, What: "kubernetes " + verb + " " + resource,
			Reason: "the Kubernetes API is read-only in a ronly session"})
	}}
	go g.Serve(k.ln)
	return k, nil
}

// env is what the command's environment gets.
func (k *kubeGuard) env() []string {
	return []string{
		"KUBECONFIG=" + k.config,
		"KUBERNETES_SERVICE_HOST=" + k.addr.Addr().String(),
		"KUBERNETES_SERVICE_PORT=" + strconv.Itoa(int(k.addr.Port())),
	}
}

// showInCluster makes the pod's service-account directory inside serve
// in-cluster clients through the guard: mounts are the records creds.go
// planned, which show the host's ca.crt and an empty token. ca.crt becomes
// the guard's CA, so that clients trust the guard, and token a placeholder:
// client-go refuses to start with an empty token file ("read empty token
// from file"), and the guard ignores whatever credential a client sends.
func (k *kubeGuard) showInCluster(mounts []cinit.Mount) {
	want, err := filepath.EvalSymlinks(kubeguard.ServiceAccountDir)
	if err != nil {
		return
	}
	for i := range mounts {
		m := &mounts[i]
		if m.Kind != cinit.MountShow {
			continue
		}
		if dir, err := filepath.EvalSymlinks(filepath.Dir(m.Path)); err != nil || dir != want {
			continue
		}
		switch filepath.Base(m.Path) {
		case "ca.crt":
			m.Source = k.caFile
		case "token":
			m.Source = k.tokenFile
		}
	}
}

func (k *kubeGuard) Close() {
	if k == nil {
		return
	}
	k.ln.Close()
	os.RemoveAll(k.dir)
}

// noteConnect is called after the supervisor made a connect of the
// session's on sock to sa: when sa is the guard's address, the socket's
// local address becomes admissible.
func (k *kubeGuard) noteConnect(sock int, sa []byte) {
	if k == nil || !k.isGuard(sa) {
		return
	}
	local, err := unix.Getsockname(sock)
	if err != nil {
		return
	}
	var ap netip.AddrPort
	switch a := local.(type) {
	case *unix.SockaddrInet4:
		ap = netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(a.Port))
	case *unix.SockaddrInet6:
		ap = netip.AddrPortFrom(netip.AddrFrom16(a.Addr).Unmap(), uint16(a.Port))
	default:
		return
	}
	k.mu.Lock()
	now := time.Now()
	for a, t := range k.admitted {
		if now.Sub(t) > kubeAdmitTTL {
			delete(k.admitted, a)
		}
	}
	k.admitted[ap] = now
	k.mu.Unlock()
	k.cond.Broadcast()
}

// isGuard says whether the socket address sa (as the caller passed it) is
// the guard's: 127.0.0.1:port, or its IPv4-mapped IPv6 form.
func (k *kubeGuard) isGuard(sa []byte) bool {
	if len(sa) < 4 {
		return false
	}
	var ip netip.Addr
	switch binary.NativeEndian.Uint16(sa) {
	case unix.AF_INET:
		if len(sa) < 8 {
			return false
		}
		ip = netip.AddrFrom4([4]byte(sa[4:8]))
	case unix.AF_INET6:
		if len(sa) < 24 {
			return false
		}
		ip = netip.AddrFrom16([16]byte(sa[8:24])).Unmap()
	default:
		return false
	}
	return netip.AddrPortFrom(ip, binary.BigEndian.Uint16(sa[2:4])) == k.addr
}

// admit waits for the connection from remote to be noted, and takes it.
func (k *kubeGuard) admit(remote netip.AddrPort) bool {
	deadline := time.Now().Add(kubeAdmitWait)
	timer := time.AfterFunc(kubeAdmitWait, k.cond.Broadcast)
	defer timer.Stop()
	k.mu.Lock()
	defer k.mu.Unlock()
	for {
		if t, ok := k.admitted[remote]; ok {
			delete(k.admitted, remote)
			return time.Since(t) <= kubeAdmitTTL
		}
		if !time.Now().Before(deadline) {
			return false
		}
		k.cond.Wait()
	}
}

// admitListener hands the TLS layer only the connections the session made.
// The wait for a connection's note happens on a goroutine of its own, so
// that one connection from elsewhere does not hold up the session's.
type admitListener struct {
	net.Listener
	k *kubeGuard

	once sync.Once
	ch   chan net.Conn
	err  chan error
}

func (l *admitListener) Accept() (net.Conn, error) {
	l.once.Do(func() {
		l.ch, l.err = make(chan net.Conn), make(chan error, 1)
		go l.loop()
	})
	select {
	case c := <-l.ch:
		return c, nil
	case err := <-l.err:
		l.err <- err // every later Accept sees it too
		return nil, err
	}
}

func (l *admitListener) loop() {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			l.err <- err
			return
		}
		go func() {
			remote := c.RemoteAddr().(*net.TCPAddr).AddrPort()
			remote = netip.AddrPortFrom(remote.Addr().Unmap(), remote.Port())
			if !l.k.admit(remote) {
				c.Close() // not the session's
				return
			}
			select {
			case l.ch <- c:
			case err := <-l.err:
				l.err <- err
				c.Close()
			}
		}()
	}
}
