package kubeguard

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeFile(path, data string) error { return os.WriteFile(path, []byte(data), 0o600) }

// TestKubeconfigMerge: $KUBECONFIG's files merge as kubectl merges them,
// relative paths are the file's, and a plugin is refused.
func TestKubeconfigMerge(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "b"), 0o700); err != nil {
		t.Fatal(err)
	}
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b", "config")
	writeFile(a, "current-context: one\ncontexts:\n- name: one\n  context: {cluster: c, user: u}\n")
	writeFile(b, `current-context: two
clusters:
- name: c
  cluster: {server: "https://10.1.2.3:6443", insecure-skip-tls-verify: true}
users:
- name: u
  user: {tokenFile: tok}
- name: p
  user:
    exec: {command: aws, apiVersion: client.authentication.k8s.io/v1}
contexts:
- name: one
  context: {cluster: nope, user: nope}
- name: plug
  context: {cluster: c, user: p}
`)
	writeFile(filepath.Join(dir, "b", "tok"), "sekret\n")
	u, err := FromKubeconfig([]string{filepath.Join(dir, "missing"), a, b})
	if err != nil {
		t.Fatal(err)
	}
	if u.Server.Host != "10.1.2.3:6443" || u.tokenFile != filepath.Join(dir, "b", "tok") || u.Source != "context one" {
		t.Errorf("got server %s, token file %q, source %q", u.Server, u.tokenFile, u.Source)
	}
	if tok, err := u.readToken(); err != nil || tok != "sekret" {
		t.Errorf("token %q, %v", tok, err)
	}
	writeFile(a, "current-context: plug\n")
	if _, err := FromKubeconfig([]string{a, b}); err == nil || !strings.Contains(err.Error(), "exec credential plugin") {
		t.Errorf("exec plugin: %v", err)
	}
}

// TestGeneratedKubeconfig: the session's kubeconfig holds no credential,
// only the placeholder token.
func TestGeneratedKubeconfig(t *testing.T) {
	s, err := NewServing()
	if err != nil {
		t.Fatal(err)
	}
	kc := string(Kubeconfig("https://127.0.0.1:1234", s.CAPEM, "team: a"))
	if strings.Count(kc, "token") != 1 || !strings.Contains(kc, "token: "+Placeholder+"\n") {
		t.Errorf("generated kubeconfig's token is not the placeholder:\n%s", kc)
	}
	for _, bad := range []string{"client-key", "exec", "auth-provider", "password", "username"} {
		if strings.Contains(kc, bad) {
			t.Errorf("generated kubeconfig mentions %s:\n%s", bad, kc)
		}
	}
	p := filepath.Join(t.TempDir(), "kc")
	writeFile(p, kc)
	u, err := FromKubeconfig([]string{p})
	if err != nil {
		t.Fatal(err)
	}
	if u.Namespace != "team: a" || u.Server.String() != "https://127.0.0.1:1234" || u.TLS.RootCAs == nil {
		t.Errorf("read back: %+v", u)
	}
}
