package kube_test

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"ronly.dev/ronly/go/kubeguard"
)

// guardFor serves a Guard in this process whose upstream is the kubeconfig
// upstreamConfig, and returns a kubeconfig for it (no credential in it) and
// the refusals it reports.
func guardFor(t *testing.T, upstreamConfig string) (string, *refusals) {
	t.Helper()
	up, err := kubeguard.FromKubeconfig([]string{upstreamConfig})
	if err != nil {
		t.Fatal(err)
	}
	serving, err := kubeguard.NewServing(net.IPv4(127, 0, 0, 1))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ref := &refusals{}
	g := &kubeguard.Guard{Upstream: up, Refused: ref.add}
	done := make(chan error, 1)
	go func() { done <- g.Serve(serving.Listener(ln)) }()
	t.Cleanup(func() {
		ln.Close()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	cfg := filepath.Join(t.TempDir(), "config")
	if err := os.WriteFile(cfg, kubeguard.Kubeconfig("https://"+ln.Addr().String(), serving.CAPEM, up.Namespace), 0o600); err != nil {
		t.Fatal(err)
	}
	return cfg, ref
}

type refusals struct {
	mu  sync.Mutex
	got []string
}

func (r *refusals) add(verb, resource string) {
	r.mu.Lock()
	r.got = append(r.got, verb+" "+resource)
	r.mu.Unlock()
}

func (r *refusals) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	g := r.got
	r.got = nil
	return g
}

// TestGuardDirect runs kubectl against the guard itself (no sandbox), with
// the admin's credential upstream: reads answer as the API server does,
// and each write is refused with kubectl's "Error from server (Forbidden)"
// line naming ronly, reported once, and never reaches the API server.
func TestGuardDirect(t *testing.T) {
	needCluster(t)
	cfg, ref := guardFor(t, cluster.AdminConfig)
	for _, r := range reads {
		want, werr := cluster.Admin(r...)
		got, gerr := cluster.KubectlAs(cfg, "", r...)
		if (werr == nil) != (gerr == nil) {
			t.Errorf("kubectl %s: through the guard %v, direct %v", strings.Join(r, " "), gerr, werr)
			continue
		}
		if r[0] == "api-resources" {
			got, want = sortedLines(got), sortedLines(want)
		}
		if werr == nil && got != want {
			t.Errorf("kubectl %s: through the guard:\n%s\ndirect:\n%s", strings.Join(r, " "), got, want)
		}
	}
	if got := ref.take(); len(got) != 0 {
		t.Errorf("reads refused: %q", got)
	}
	for _, c := range []struct {
		args    []string
		refused string
	}{
		{[]string{"delete", "pod", "web-0"}, "delete pods"},
		{[]string{"create", "configmap", "x", "--from-literal=a=b"}, "create configmaps"},
		{[]string{"scale", "deployment", "api", "--replicas=3"}, "patch deployments/scale"},
		{[]string{"exec", "web-0", "--", "true"}, "connect pods/exec"},
		{[]string{"create", "token", "default"}, "create serviceaccounts/token"},
		{[]string{"--as=ronly-reader", "get", "pods"}, "impersonate pods"},
	} {
		_, err := cluster.KubectlAs(cfg, "", c.args...)
		// kubectl words some failures its own way ("failed to create
		// configmap: ...", "unable to upgrade connection: ..."); delete
		// prints the Status as it came.
		want := "ronly: " + c.refused + " is blocked (read-only session)"
		if c.args[0] == "delete" {
			want = "Error from server (Forbidden): " + want
		}
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("kubectl %s: %v; want %q", strings.Join(c.args, " "), err, want)
		}
		if got := ref.take(); len(got) == 0 || got[len(got)-1] != c.refused {
			t.Errorf("kubectl %s: reported %q, want %q last", strings.Join(c.args, " "), got, c.refused)
		}
	}
	assertUnchanged(t)
}
