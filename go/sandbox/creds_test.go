package sandbox

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"ronly.dev/ronly/go/mountinfo"
	cinit "ronly.dev/ronly/init"
)

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// kubeletTokenDir lays dir out as kubelet's atomic writer does: the files
// in a ..TIMESTAMP directory, ..data a symlink to it, each name a symlink
// through ..data.
func kubeletTokenDir(t *testing.T, dir string) {
	t.Helper()
	ts := filepath.Join(dir, "..2026_12_04_21_00_00.123")
	write(t, filepath.Join(ts, "token"), "eyJhbGciOi.secret")
	write(t, filepath.Join(ts, "ca.crt"), "-----BEGIN CERTIFICATE-----\n")
	write(t, filepath.Join(ts, "namespace"), "default")
	must(t, os.Symlink(filepath.Base(ts), filepath.Join(dir, "..data")))
	for _, n := range []string{"token", "ca.crt", "namespace"} {
		must(t, os.Symlink(filepath.Join("..data", n), filepath.Join(dir, n)))
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestPlanCreds(t *testing.T) {
	root := t.TempDir()
	root, _ = filepath.EvalSymlinks(root)
	home := filepath.Join(root, "home")
	write(t, filepath.Join(home, ".kube", "alice.key"), "-----BEGIN EC PRIVATE KEY-----\n")
	write(t, filepath.Join(home, ".kube", "alice.crt"), "-----BEGIN CERTIFICATE-----\n")
	write(t, filepath.Join(root, "tok"), "abc")
	write(t, filepath.Join(root, "both.pem"), "-----BEGIN CERTIFICATE-----\n-----BEGIN RSA PRIVATE KEY-----\n")
	write(t, filepath.Join(home, ".kube", "config"), `apiVersion: v1
kind: Config
users:
- name: alice
  user:
    client-key: alice.key
    client-certificate: alice.crt
- name: bot
  user:
    tokenFile: `+filepath.Join(root, "tok")+`
- name: node
  user:
    client-certificate: `+filepath.Join(root, "both.pem")+`
- name: eks
  user:
    exec:
      command: aws
`)
	// A second kubeconfig by a symlink, in JSON.
	write(t, filepath.Join(root, "real.json"), `{"users":[{"name":"x","user":{"token":"inline"}}]}`)
	must(t, os.Symlink(filepath.Join(root, "real.json"), filepath.Join(root, "link.json")))
	write(t, filepath.Join(root, "explicit.yaml"), "users: []\n")
	// Under a tmpfs of the session's: out of sight, nothing to mount.
	write(t, filepath.Join(root, "scratch", "kc"), "users: []\n")

	sa := filepath.Join(root, "run", "secrets", "kubernetes.io", "serviceaccount")
	kubeletTokenDir(t, sa)
	node := filepath.Join(root, "pods", "u1", "volumes", "kubernetes.io~projected", "kube-api-access-x")
	kubeletTokenDir(t, node)
	// A projected volume without a token is left alone.
	write(t, filepath.Join(root, "pods", "u2", "volumes", "kubernetes.io~projected", "cm", "app.conf"), "x")

	env := map[string]string{"HOME": home, "KUBECONFIG": filepath.Join(root, "link.json") + ":" + filepath.Join(root, "scratch", "kc")}
	ms := []mountinfo.Mount{{Point: sa}, {Point: node}, {Point: filepath.Join(root, "pods", "u2", "volumes", "kubernetes.io~projected", "cm")}}
	covered := func(p string) bool { return strings.HasPrefix(p, filepath.Join(root, "scratch")) }
	plan := planCreds([]string{filepath.Join(root, "explicit.yaml")}, func(k string) string { return env[k] }, ms, covered)

	kinds := map[string]cinit.MountKind{}
	for _, m := range plan.mounts {
		kinds[m.Path] = m.Kind
	}
	for _, f := range []string{"home/.kube/config", "home/.kube/alice.key", "tok", "both.pem", "real.json", "explicit.yaml"} {
		if kinds[filepath.Join(root, f)] != cinit.MountHide {
			t.Errorf("%s: not hidden (%v)", f, kinds)
		}
	}
	for _, f := range []string{"home/.kube/alice.crt", "link.json", "scratch/kc"} {
		if _, ok := kinds[filepath.Join(root, f)]; ok {
			t.Errorf("%s: has a record, want none", f)
		}
	}
	for _, d := range []string{sa, node} {
		if kinds[d] != cinit.MountHideDir {
			t.Errorf("%s: not covered", d)
		}
	}
	if _, ok := kinds[filepath.Join(root, "pods", "u2", "volumes", "kubernetes.io~projected", "cm")]; ok {
		t.Errorf("a projected volume without a token was covered")
	}
	// The records of sa: the cover, then its names, in order, each in it.
	var shown []string
	for i, m := range plan.mounts {
		if m.Path != sa {
			continue
		}
		for _, n := range plan.mounts[i+1:] {
			if n.Kind != cinit.MountShow {
				break
			}
			shown = append(shown, filepath.Base(n.Path)+"="+n.Source)
		}
	}
	ts := filepath.Join(sa, "..2026_12_04_21_00_00.123")
	want := "ca.crt=" + filepath.Join(ts, "ca.crt") + " namespace=" + filepath.Join(ts, "namespace") + " token="
	if strings.Join(shown, " ") != want {
		t.Errorf("shown in %s:\n got %s\nwant %s", sa, strings.Join(shown, " "), want)
	}
	// Files before directories.
	dirSeen := false
	for _, m := range plan.mounts {
		dirSeen = dirSeen || m.Kind == cinit.MountHideDir
		if dirSeen && m.Kind == cinit.MountHide {
			t.Errorf("%s: a file after a directory", m.Path)
		}
	}
	if len(plan.Notes) != 1 || !strings.Contains(plan.Notes[0], `"aws"`) {
		t.Errorf("notes: %q, want the exec plugin", plan.Notes)
	}
	if _, err := (&cinit.Config{Mounts: plan.mounts}).MarshalBinary(); err != nil {
		t.Errorf("records: %v", err)
	}
}

// TestTokenDirCandidates: which mount points lead to a token directory.
func TestTokenDirCandidates(t *testing.T) {
	ms := []mountinfo.Mount{
		{Point: "/"}, {Point: "/proc"}, {Point: "/home"},
		{Point: "/var/run/secrets/kubernetes.io/serviceaccount"},
		{Point: "/x/secrets"},
		{Point: "/run/secrets/kubernetes.io/serviceaccount/token"},
		{Point: "/var/lib/kubelet/pods/u/volumes/kubernetes.io~projected/kube-api-access-1"},
		{Point: "/var/run/secrets/azure/tokens"},
	}
	got := map[string]bool{}
	for _, c := range tokenDirCandidates(ms) {
		got[c] = true
	}
	for _, w := range []string{
		"/var/run/secrets/kubernetes.io/serviceaccount", "/run/secrets/kubernetes.io/serviceaccount",
		"/run/secrets/eks.amazonaws.com/serviceaccount", "/x/secrets/kubernetes.io/serviceaccount",
		"/var/lib/kubelet/pods/u/volumes/kubernetes.io~projected/kube-api-access-1", "/var/run/secrets/azure/tokens",
	} {
		if !got[w] {
			t.Errorf("%s: not a candidate", w)
		}
	}
	for _, n := range []string{"/", "/proc", "/home", "/home/kubernetes.io/serviceaccount"} {
		if got[n] {
			t.Errorf("%s: a candidate", n)
		}
	}
	// A start reads only the mounts tokenMount keeps: the same candidates.
	kept := slices.DeleteFunc(slices.Clone(ms), func(m mountinfo.Mount) bool { return !tokenMount(&m) })
	if len(kept) != 5 || !slices.Equal(tokenDirCandidates(kept), tokenDirCandidates(ms)) {
		t.Errorf("from the mounts tokenMount keeps (%v): %q, want %q", kept, tokenDirCandidates(kept), tokenDirCandidates(ms))
	}
}

// TestCredBudget: past the budget a token directory is covered with
// nothing shown in it, never left out.
func TestCredBudget(t *testing.T) {
	root := t.TempDir()
	var ms []mountinfo.Mount
	for i := 0; i < maxCredRecords/2; i++ {
		d := filepath.Join(root, "p", string(rune('a'+i%26))+strings.Repeat("x", i/26), "serviceaccount")
		kubeletTokenDir(t, d)
		ms = append(ms, mountinfo.Mount{Point: d})
	}
	plan := planCreds(nil, func(string) string { return "" }, ms, func(string) bool { return false })
	dirs := 0
	for _, m := range plan.mounts {
		if m.Kind == cinit.MountHideDir {
			dirs++
		}
	}
	if dirs != len(ms) || len(plan.mounts) > maxCredRecords+len(ms) {
		t.Errorf("%d directories covered of %d, %d records", dirs, len(ms), len(plan.mounts))
	}
}

// TestKeyTrees: a control plane's keys read empty, its certificates and
// public keys do not; kubelet's pki directory is covered with only its
// certificates shown.
func TestKeyTrees(t *testing.T) {
	root := t.TempDir()
	pki := filepath.Join(root, "etc-pki")
	write(t, filepath.Join(pki, "ca.key"), "-----BEGIN RSA PRIVATE KEY-----\n")
	write(t, filepath.Join(pki, "ca.crt"), "-----BEGIN CERTIFICATE-----\n")
	write(t, filepath.Join(pki, "sa.pub"), "-----BEGIN PUBLIC KEY-----\n")
	write(t, filepath.Join(pki, "etcd", "peer.key"), "x")
	write(t, filepath.Join(pki, "etcd", "bundle.pem"), "-----BEGIN CERTIFICATE-----\n-----BEGIN PRIVATE KEY-----\n")
	kubelet := filepath.Join(root, "kubelet-pki")
	write(t, filepath.Join(kubelet, "kubelet.crt"), "-----BEGIN CERTIFICATE-----\n")
	write(t, filepath.Join(kubelet, "kubelet.key"), "-----BEGIN RSA PRIVATE KEY-----\n")
	write(t, filepath.Join(kubelet, "kubelet-client-2026.pem"), "-----BEGIN CERTIFICATE-----\n-----BEGIN EC PRIVATE KEY-----\n")
	must(t, os.Symlink(filepath.Join(kubelet, "kubelet-client-2026.pem"), filepath.Join(kubelet, "kubelet-client-current.pem")))

	s := &credScan{covered: func(string) bool { return false }, seen: map[string]bool{}, keyTrees: []string{pki}, keyDirs: []string{kubelet}}
	plan := scanCreds(s, nil, func(string) string { return "" }, nil)
	got := map[string]string{}
	for _, m := range plan.mounts {
		got[m.Path] = fmt.Sprintf("%d:%s", m.Kind, m.Source)
	}
	hide := fmt.Sprintf("%d:", cinit.MountHide)
	for _, f := range []string{"ca.key", "etcd/peer.key", "etcd/bundle.pem"} {
		if got[filepath.Join(pki, f)] != hide {
			t.Errorf("%s: not hidden: %v", f, got)
		}
	}
	for _, f := range []string{"ca.crt", "sa.pub"} {
		if _, ok := got[filepath.Join(pki, f)]; ok {
			t.Errorf("%s: hidden", f)
		}
	}
	show := func(name, src string) string { return fmt.Sprintf("%d:%s", cinit.MountShow, src) }
	if got[kubelet] != fmt.Sprintf("%d:", cinit.MountHideDir) {
		t.Errorf("%s: not covered: %v", kubelet, got)
	}
	for name, src := range map[string]string{"kubelet.crt": filepath.Join(kubelet, "kubelet.crt"), "kubelet.key": "",
		"kubelet-client-2026.pem": "", "kubelet-client-current.pem": ""} {
		if got[filepath.Join(kubelet, name)] != show(name, src) {
			t.Errorf("%s: %q, want %q", name, got[filepath.Join(kubelet, name)], show(name, src))
		}
	}
}
