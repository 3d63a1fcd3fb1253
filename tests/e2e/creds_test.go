package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Kubernetes credentials read empty inside (go/sandbox/creds.go): a
// service-account token volume laid out as kubelet does, mounted as a
// tmpfs of the test's own; kubeconfigs from $HOME, $KUBECONFIG (one through
// a symlink), --kube-config and /etc/kubernetes; the key and token files
// they name. ca.crt, namespace and a client certificate stay readable. The
// host's files and mount table are checked from outside afterwards.

// credFixture is the test's credentials on the host.
type credFixture struct {
	base, home, sa, saRoot string
	kubeconfigs            []string          // KUBECONFIG
	explicit               string            // --kube-config
	etcConf                string            // /etc/kubernetes/…conf, "" when the directory existed
	secrets                []string          // paths that must read empty inside (as a client names them)
	shown                  map[string]string // paths that must read as on the host
	contents               map[string]string // every file made, with its content, to check afterwards
	marker                 string            // in every secret's content
}

func (f *credFixture) write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, 0, path, content, 0o600)
	f.contents[path] = content
}

func newCredFixture(t *testing.T) *credFixture {
	t.Helper()
	marker := "SECRET-" + randomMarker(t)
	base := userDir(t, 0, "ronly-e2e-creds-")
	f := &credFixture{base: base, home: filepath.Join(base, "home"), marker: marker,
		shown: map[string]string{}, contents: map[string]string{}}

	// ~/.kube/config with a relative client key, and a certificate that
	// holds no key (left readable).
	kube := filepath.Join(f.home, ".kube")
	f.write(t, filepath.Join(kube, "keys", "alice.key"), "-----BEGIN EC PRIVATE KEY-----\n"+marker+"\n")
	f.write(t, filepath.Join(kube, "alice.crt"), "-----BEGIN CERTIFICATE-----\nalice\n")
	f.write(t, filepath.Join(kube, "config"), "apiVersion: v1\nkind: Config\nusers:\n- name: alice\n  user:\n"+
		"    client-key: keys/alice.key\n    client-certificate: alice.crt\n# "+marker+"\n")
	f.secrets = append(f.secrets, filepath.Join(kube, "config"), filepath.Join(kube, "keys", "alice.key"))
	f.shown[filepath.Join(kube, "alice.crt")] = "-----BEGIN CERTIFICATE-----\nalice\n"

	// $KUBECONFIG: a token file, and a JSON kubeconfig reached by a symlink.
	f.write(t, filepath.Join(base, "bot.token"), marker)
	f.write(t, filepath.Join(base, "kc1.yaml"), "users:\n- name: bot\n  user:\n    tokenFile: "+filepath.Join(base, "bot.token")+"\n")
	f.write(t, filepath.Join(base, "kc2.json"), `{"users":[{"name":"x","user":{"token":"`+marker+`"}}]}`)
	if err := os.Symlink(filepath.Join(base, "kc2.json"), filepath.Join(base, "kc2-link")); err != nil {
		t.Fatal(err)
	}
	f.kubeconfigs = []string{filepath.Join(base, "kc1.yaml"), filepath.Join(base, "kc2-link")}
	f.secrets = append(f.secrets, filepath.Join(base, "kc1.yaml"), filepath.Join(base, "bot.token"),
		filepath.Join(base, "kc2.json"), filepath.Join(base, "kc2-link"))

	// --kube-config, naming a key file.
	f.explicit = filepath.Join(base, "explicit.conf")
	f.write(t, filepath.Join(base, "explicit.key"), "-----BEGIN RSA PRIVATE KEY-----\n"+marker+"\n")
	f.write(t, f.explicit, "users:\n- name: e\n  user:\n    client-key: "+filepath.Join(base, "explicit.key")+"\n")
	f.secrets = append(f.secrets, f.explicit, filepath.Join(base, "explicit.key"))

	// /etc/kubernetes/*.conf, only where the directory is the test's own.
	if _, err := os.Lstat("/etc/kubernetes"); os.IsNotExist(err) {
		if err := os.Mkdir("/etc/kubernetes", 0o755); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll("/etc/kubernetes") })
		f.etcConf = "/etc/kubernetes/ronly-e2e.conf"
		f.write(t, f.etcConf, "users:\n- name: admin\n  user:\n    token: "+marker+"\n")
		f.secrets = append(f.secrets, f.etcConf)
		// A control plane's keys: each *.key below pki reads empty.
		f.write(t, "/etc/kubernetes/pki/ca.key", "-----BEGIN RSA PRIVATE KEY-----\n"+marker+"\n")
		f.write(t, "/etc/kubernetes/pki/etcd/peer.key", "-----BEGIN EC PRIVATE KEY-----\n"+marker+"\n")
		f.write(t, "/etc/kubernetes/pki/ca.crt", "-----BEGIN CERTIFICATE-----\nkubernetes-ca\n")
		f.secrets = append(f.secrets, "/etc/kubernetes/pki/ca.key", "/etc/kubernetes/pki/etcd/peer.key")
		f.shown["/etc/kubernetes/pki/ca.crt"] = "-----BEGIN CERTIFICATE-----\nkubernetes-ca\n"
	} else {
		keyTreeUntested(t, "/etc/kubernetes")
	}

	// kubelet's pki: its client key through the rotating symlink.
	if _, err := os.Lstat("/var/lib/kubelet"); os.IsNotExist(err) {
		if err := os.Mkdir("/var/lib/kubelet", 0o755); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll("/var/lib/kubelet") })
		pki := "/var/lib/kubelet/pki"
		f.write(t, pki+"/kubelet-client-2026-12-04.pem", "-----BEGIN CERTIFICATE-----\n-----BEGIN EC PRIVATE KEY-----\n"+marker+"\n")
		if err := os.Symlink(pki+"/kubelet-client-2026-12-04.pem", pki+"/kubelet-client-current.pem"); err != nil {
			t.Fatal(err)
		}
		f.write(t, pki+"/kubelet.key", "-----BEGIN RSA PRIVATE KEY-----\n"+marker+"\n")
		f.write(t, pki+"/kubelet.crt", "-----BEGIN CERTIFICATE-----\nkubelet\n")
		f.secrets = append(f.secrets, pki+"/kubelet-client-current.pem", pki+"/kubelet-client-2026-12-04.pem", pki+"/kubelet.key")
		f.shown[pki+"/kubelet.crt"] = "-----BEGIN CERTIFICATE-----\nkubelet\n"
	} else {
		keyTreeUntested(t, "/var/lib/kubelet")
	}

	// A token volume: a tmpfs at …/serviceaccount, kubelet's layout.
	saRoot, err := os.MkdirTemp("/run", "ronly-e2e-sa-")
	if err != nil {
		t.Fatal(err)
	}
	f.saRoot = saRoot
	f.sa = filepath.Join(saRoot, "kubernetes.io", "serviceaccount")
	if err := os.MkdirAll(f.sa, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", f.sa, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "size=1m,mode=0755"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(f.sa, 0); err != nil {
			t.Errorf("unmount %s: %v", f.sa, err)
		}
		os.RemoveAll(saRoot)
	})
	ts := filepath.Join(f.sa, "..2026_12_04_21_00_00.1")
	f.write(t, filepath.Join(ts, "token"), "eyJhbGciOiJSUzI1NiJ9."+marker)
	f.write(t, filepath.Join(ts, "ca.crt"), "-----BEGIN CERTIFICATE-----\ncluster-ca\n")
	f.write(t, filepath.Join(ts, "namespace"), "ronly-e2e")
	if err := os.Symlink(filepath.Base(ts), filepath.Join(f.sa, "..data")); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"token", "ca.crt", "namespace"} {
		if err := os.Symlink(filepath.Join("..data", n), filepath.Join(f.sa, n)); err != nil {
			t.Fatal(err)
		}
	}
	f.secrets = append(f.secrets, filepath.Join(f.sa, "token"))
	f.shown[filepath.Join(f.sa, "ca.crt")] = "-----BEGIN CERTIFICATE-----\ncluster-ca\n"
	f.shown[filepath.Join(f.sa, "namespace")] = "ronly-e2e"
	return f
}

// env is what ronly is started with: HOME and KUBECONFIG of the fixture's.
func (f *credFixture) env() []string {
	return []string{"HOME=" + f.home, "KUBECONFIG=" + strings.Join(f.kubeconfigs, ":")}
}

// script prints, for each secret, its size (wc -c: a missing file prints
// nothing), and for each shown file its content, between markers.
func (f *credFixture) script() string {
	var b strings.Builder
	for _, p := range f.secrets {
		fmt.Fprintf(&b, "printf 'size %s '; wc -c < %s; cat %s;\n", p, p, p)
	}
	for p := range f.shown {
		fmt.Fprintf(&b, "printf 'show %s <'; cat %s; echo '>';\n", p, p)
	}
	fmt.Fprintf(&b, "printf 'ls <'; ls -A %s | tr '\\n' ' '; echo '>'\n", f.sa)
	return b.String()
}

// checkInside checks what the script printed inside.
func (f *credFixture) checkInside(t *testing.T, r result) {
	t.Helper()
	if r.code != 0 {
		t.Fatalf("session failed:\n%s", r)
	}
	if strings.Contains(r.stdout, f.marker) {
		t.Errorf("a secret was readable inside:\n%s", r.stdout)
	}
	for _, p := range f.secrets {
		if !strings.Contains(r.stdout, "size "+p+" 0\n") {
			t.Errorf("%s: not an empty file inside:\n%s", p, r)
		}
	}
	for p, want := range f.shown {
		if !strings.Contains(r.stdout, "show "+p+" <"+want+">") {
			t.Errorf("%s: not shown as on the host (%q):\n%s", p, want, r.stdout)
		}
	}
	if !strings.Contains(r.stdout, "ls <ca.crt namespace token >") {
		t.Errorf("the token directory inside should hold ca.crt, namespace and token only:\n%s", r.stdout)
	}
}

// checkHost checks from outside that every file is as made and the test's
// mounts are as they were.
func (f *credFixture) checkHost(t *testing.T, mountsBefore []string) {
	t.Helper()
	for p, want := range f.contents {
		if b, err := os.ReadFile(p); err != nil || string(b) != want {
			t.Errorf("%s changed on the host: %q, %v", p, b, err)
		}
		if fi, err := os.Lstat(p); err != nil || fi.Mode().Perm() != 0o600 || !fi.Mode().IsRegular() {
			t.Errorf("%s: mode changed on the host: %v, %v", p, fi, err)
		}
	}
	for _, l := range newEntries(mountsBefore, mountLines(t)) {
		if strings.Contains(l, f.base) || strings.Contains(l, f.saRoot) || strings.Contains(l, "serviceaccount") ||
			strings.Contains(l, "/etc/kubernetes") || strings.Contains(l, "/var/lib/kubelet") {
			t.Errorf("a mount left on the host: %s", l)
		}
	}
}

func TestCredsHidden(t *testing.T) {
	b := setup(t)
	f := newCredFixture(t)
	before := mountLines(t)
	ws := userDir(t, 0, "ronly-e2e-creds-ws-")
	for _, m := range []struct {
		name  string
		flags []string
	}{
		{"userns", nil},
		{"rootless", []string{"--rootless"}},
		{"privileged", []string{"--privileged"}},
		// The ci profile's HOME is an empty tmpfs, so ~/.kube is out
		// of sight there; the rest is hidden as in debug.
		{"ci", []string{"--profile", "ci", "--workspace", ws}},
	} {
		t.Run(m.name, func(t *testing.T) {
			flags := append(append([]string{}, m.flags...), "--kube-config", f.explicit, "-v")
			g := *f
			if m.name == "ci" {
				g.secrets, g.shown = nil, map[string]string{}
				for _, p := range f.secrets {
					if !strings.HasPrefix(p, f.home+"/") {
						g.secrets = append(g.secrets, p)
					}
				}
				for p, c := range f.shown {
					if !strings.HasPrefix(p, f.home+"/") {
						g.shown[p] = c
					}
				}
			}
			r := b.sh(t, opts{env: f.env()}, flags, g.script())
			g.checkInside(t, r)
			if !strings.Contains(r.stderr, "credentials that read empty inside: ") || !strings.Contains(r.stderr, f.sa) {
				t.Errorf("-v does not list the token directory:\n%s", r.stderr)
			}
		})
	}
	f.checkHost(t, before)
}

// TestCredsReport: the report lists what was hidden, by resolved path.
func TestCredsReport(t *testing.T) {
	b := setup(t)
	f := newCredFixture(t)
	rep := filepath.Join(userDir(t, 0, "ronly-e2e-creds-rep-"), "report.json")
	r := b.run(t, opts{env: f.env()}, "--kube-config", f.explicit, "--report", rep, "--", "true")
	if r.code != 0 {
		t.Fatalf("session failed:\n%s", r)
	}
	raw, err := os.ReadFile(rep)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Credentials struct {
			Hidden []string `json:"hidden"`
		} `json:"credentials"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	hidden := map[string]bool{}
	for _, p := range doc.Credentials.Hidden {
		hidden[p] = true
	}
	for _, p := range []string{f.sa, filepath.Join(f.base, "kc2.json"), filepath.Join(f.home, ".kube", "keys", "alice.key"), f.explicit} {
		if !hidden[p] {
			t.Errorf("report: %s not in credentials.hidden %q", p, doc.Credentials.Hidden)
		}
	}
	if hidden[filepath.Join(f.base, "kc2-link")] || hidden[filepath.Join(f.home, ".kube", "alice.crt")] {
		t.Errorf("report: a symlink or a certificate listed: %q", doc.Credentials.Hidden)
	}
}

// TestCredsTokenRotation: kubelet rotates a projected token by writing a
// new ..TIMESTAMP directory, swapping ..data and removing the old one. A
// bind over the old token file would fall away with it (the kernel
// detaches mounts on a removed file in every namespace); the cover over
// the directory does not, so the new token stays out of reach too.
func TestCredsTokenRotation(t *testing.T) {
	b := setup(t)
	f := newCredFixture(t)
	syncDir := userDir(t, 0, "ronly-e2e-creds-sync-")
	ready, goOn := filepath.Join(syncDir, "ready"), filepath.Join(syncDir, "go")
	script := fmt.Sprintf("cat %[1]s/token; echo '|'; touch %[2]s; i=0; while [ ! -e %[3]s ] && [ $i -lt 400 ]; do sleep 0.05; i=$((i+1)); done; "+
		"cat %[1]s/token %[1]s/..data/token 2>/dev/null; echo '|'; ls -A %[1]s | tr '\\n' ' '", f.sa, ready, goOn)
	done := make(chan result, 1)
	go func() { done <- b.sh(t, opts{env: f.env()}, []string{"--rw", syncDir}, script) }()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := os.Stat(ready); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the session never got ready: %v", <-done)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Rotate as kubelet's atomic writer does.
	old, _ := os.Readlink(filepath.Join(f.sa, "..data"))
	ts := filepath.Join(f.sa, "..2026_12_04_22_00_00.2")
	rotated := "eyJhbGciOiJSUzI1NiJ9.ROTATED-" + f.marker
	if err := os.Mkdir(ts, 0o755); err != nil {
		t.Fatal(err)
	}
	for n, c := range map[string]string{"token": rotated, "ca.crt": "-----BEGIN CERTIFICATE-----\ncluster-ca\n", "namespace": "ronly-e2e"} {
		writeFile(t, 0, filepath.Join(ts, n), c, 0o600)
	}
	if err := os.Symlink(filepath.Base(ts), filepath.Join(f.sa, "..data_tmp")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(f.sa, "..data_tmp"), filepath.Join(f.sa, "..data")); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(f.sa, old)); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(f.sa, "token")); err != nil || string(b) != rotated {
		t.Fatalf("the rotation did not take on the host: %q, %v", b, err)
	}
	writeFile(t, 0, goOn, "", 0o644)
	r := <-done
	if r.code != 0 {
		t.Fatalf("session failed:\n%s", r)
	}
	if strings.Contains(r.stdout, f.marker) {
		t.Errorf("a token was readable inside, before or after the rotation:\n%s", r.stdout)
	}
	if !strings.HasSuffix(strings.TrimSpace(r.stdout), "ca.crt namespace token") {
		t.Errorf("the token directory inside changed:\n%s", r.stdout)
	}
}

// TestCredsLandlockOnly: without a mount namespace nothing can cover a
// file, and ronly says so on stderr, naming the files left readable.
func TestCredsLandlockOnly(t *testing.T) {
	b := setup(t)
	f := newCredFixture(t)
	rep := filepath.Join(userDir(t, 0, "ronly-e2e-creds-rep-"), "report.json")
	r := b.run(t, opts{env: f.env()}, "--mode", "landlock-only", "--kube-config", f.explicit, "--report", rep, "--", "true")
	if r.code != 0 {
		t.Fatalf("session failed:\n%s", r)
	}
	var doc struct {
		Credentials struct {
			Hidden   []string `json:"hidden"`
			Unhidden []string `json:"unhidden"`
		} `json:"credentials"`
	}
	if raw, err := os.ReadFile(rep); err != nil || json.Unmarshal(raw, &doc) != nil {
		t.Fatalf("report: %v\n%s", err, raw)
	}
	if len(doc.Credentials.Hidden) != 0 || !strings.Contains(strings.Join(doc.Credentials.Unhidden, " "), f.sa) {
		t.Errorf("report: credentials %+v, want the token directory unhidden and nothing hidden", doc.Credentials)
	}
	var line string
	for _, l := range strings.Split(r.stderr, "\n") {
		if strings.Contains(l, "cannot hide credentials") {
			line = l
		}
	}
	if line == "" {
		t.Fatalf("no warning that credentials stay readable:\n%s", r)
	}
	for _, p := range []string{f.sa, f.explicit, filepath.Join(f.base, "kc2.json"), filepath.Join(f.base, "bot.token")} {
		if !strings.Contains(line, p) {
			t.Errorf("the warning does not name %s: %s", p, line)
		}
	}
}

// TestKubeConfigFlagBad: a --kube-config that is not a file is one line,
// exit 125, and nothing runs.
func TestKubeConfigFlagBad(t *testing.T) {
	b := setup(t)
	dir := userDir(t, 0, "ronly-e2e-kc-bad-")
	ran := filepath.Join(dir, "ran")
	for _, bad := range []string{filepath.Join(dir, "missing"), dir} {
		r := b.run(t, opts{}, "--kube-config", bad, "--rw", dir, "--", "touch", ran)
		oneLine(t, r, "--kube-config", bad)
		if _, err := os.Stat(ran); err == nil {
			t.Errorf("--kube-config %s: the command ran", bad)
		}
	}
}

// keyTreeUntested says that dir, a real node's, is left alone, so the
// claims about the keys below it go untested here: a failure under CI,
// whose machines are no Kubernetes node, so that the claims never go
// untested there unseen.
func keyTreeUntested(t *testing.T, dir string) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf("%s exists on this CI machine: the tests do not touch a node's real keys, so its claims would go untested", dir)
	}
	t.Logf("%s exists: not adding files there, its claims untested", dir)
}
