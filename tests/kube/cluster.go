// Package kube gives tests a real Kubernetes API server: Debian's etcd and
// a kube-apiserver built by tools/kube/build, on 127.0.0.1 with ports of
// their own, generated certificates, a service-account key pair, a static
// token file (an admin in system:masters and a reader) and RBAC. There is no
// kubelet and no controller manager: pods stay Pending, namespaces get no
// default service account and the built-in view role stays empty, so Start
// creates what the tests need itself (a reader role, the namespace's
// default service account) along with a few objects.
package kube

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Version is the Kubernetes release tools/kube/build builds.
const Version = "v1.37.2"

// Namespace holds the test's objects.
const Namespace = "ronly-e2e"

// Cluster is one running etcd and kube-apiserver.
type Cluster struct {
	Dir         string // everything the cluster writes
	Server      string // https://127.0.0.1:port
	CAFile      string // the CA that signed the server's certificate
	CAPEM       []byte
	AdminToken  string // system:masters
	ReaderToken string // get, list and watch of everything
	// SAToken is a token of the namespace's default service account
	// (bound to the reader role), as a pod's projected volume holds it.
	SAToken string
	// AdminConfig and ReaderConfig are kubeconfigs with a bearer token.
	AdminConfig, ReaderConfig string
	// Kubectl and APIServer are the binaries tools/kube/build made, and
	// InCluster its client-go program (tools/kube/incluster.go.txt).
	Kubectl, APIServer, InCluster string

	procs []*proc
}

type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
}

// BinDir is where tools/kube/build puts the binaries: $RONLY_KUBE_DIR, or
// $RONLY_KUBE_CACHE/<version>, or /var/cache/ronly-kube/<version>.
func BinDir() string {
	if d := os.Getenv("RONLY_KUBE_DIR"); d != "" {
		return d
	}
	cache := os.Getenv("RONLY_KUBE_CACHE")
	if cache == "" {
		cache = "/var/cache/ronly-kube"
	}
	return filepath.Join(cache, Version)
}

// Missing says what this machine lacks to run a cluster, "" if nothing.
// When the binaries are missing and tools/kube/build is found above the
// working directory, it builds them first (cold: about 20 CPU-minutes).
func Missing() string {
	if os.Geteuid() != 0 {
		return "not root"
	}
	if _, err := exec.LookPath("etcd"); err != nil {
		return "etcd not found: apt-get install etcd-server (tools/install-deps)"
	}
	dir := BinDir()
	if !executable(filepath.Join(dir, "kube-apiserver")) || !executable(filepath.Join(dir, "kubectl")) || !executable(filepath.Join(dir, "incluster")) {
		if script := findBuildScript(); script != "" {
			cmd := exec.Command(script)
			cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
			if err := cmd.Run(); err != nil {
				return fmt.Sprintf("%s: %v", script, err)
			}
		}
	}
	for _, b := range []string{"kube-apiserver", "kubectl", "incluster"} {
		if !executable(filepath.Join(dir, b)) {
			return fmt.Sprintf("%s not in %s: run tools/kube/build", b, dir)
		}
	}
	return ""
}

func executable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

// findBuildScript is tools/kube/build in the working directory or above.
func findBuildScript() string {
	dir, err := os.Getwd()
	if err != nil {
		return ""
	}
	for {
		p := filepath.Join(dir, "tools", "kube", "build")
		if executable(p) {
			return p
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
}

// Start starts etcd and kube-apiserver in dir (which must exist and be
// visible where the tests need the kubeconfigs), waits for /readyz, and
// creates the test's objects. On error, whatever Start did is undone.
func Start(dir string) (_ *Cluster, err error) {
	if reason := Missing(); reason != "" {
		return nil, errors.New(reason)
	}
	c := &Cluster{Dir: dir, Kubectl: filepath.Join(BinDir(), "kubectl"), APIServer: filepath.Join(BinDir(), "kube-apiserver"), InCluster: filepath.Join(BinDir(), "incluster")}
	defer func() {
		if err != nil {
			c.Stop()
		}
	}()
	if err := c.writeCredentials(); err != nil {
		return nil, err
	}
	ports, err := freePorts(3)
	if err != nil {
		return nil, err
	}
	etcdClient := "http://127.0.0.1:" + strconv.Itoa(ports[0])
	etcdPeer := "http://127.0.0.1:" + strconv.Itoa(ports[1])
	if err := c.start("etcd", "etcd", "--name=ronly-test", "--data-dir="+filepath.Join(dir, "etcd"),
		"--listen-client-urls="+etcdClient, "--advertise-client-urls="+etcdClient,
		"--listen-peer-urls="+etcdPeer, "--initial-advertise-peer-urls="+etcdPeer,
		"--initial-cluster=ronly-test="+etcdPeer, "--log-level=warn"); err != nil {
		return nil, err
	}
	c.Server = "https://127.0.0.1:" + strconv.Itoa(ports[2])
	p := func(name string) string { return filepath.Join(dir, name) }
	if err := c.start("kube-apiserver", c.APIServer,
		"--etcd-servers="+etcdClient,
		"--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", "--secure-port="+strconv.Itoa(ports[2]),
		"--tls-cert-file="+p("server.crt"), "--tls-private-key-file="+p("server.key"),
		"--client-ca-file="+p("ca.crt"),
		"--token-auth-file="+p("tokens.csv"),
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-account-key-file="+p("sa.pub"), "--service-account-signing-key-file="+p("sa.key"),
		"--service-cluster-ip-range=10.0.0.0/24",
		"--authorization-mode=RBAC",
		// The kubernetes service's endpoint may not be a loopback
		// address: the reconciler refuses to start with one.
		"--endpoint-reconciler-type=none",
		"--profiling=false",
		"--cert-dir="+p("cert-dir"),
	); err != nil {
		return nil, err
	}
	if err := c.waitReady(2 * time.Minute); err != nil {
		return nil, err
	}
	if err := c.populate(); err != nil {
		return nil, err
	}
	return c, nil
}

// freePorts returns n ports free on 127.0.0.1 now.
func freePorts(n int) ([]int, error) {
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	var ports []int
	for i := 0; i < n; i++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func (c *Cluster) start(name, bin string, args ...string) error {
	logPath := filepath.Join(c.Dir, name+".log")
	lf, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer lf.Close()
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.Dir = c.Dir
	// Its own process group, killed with the test binary (Pdeathsig)
	// rather than left holding ports.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", name, err)
	}
	pr := &proc{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() { cmd.Wait(); close(pr.done) }()
	c.procs = append(c.procs, pr)
	return nil
}

// Stop stops kube-apiserver and etcd; their files stay in Dir.
func (c *Cluster) Stop() {
	for i := len(c.procs) - 1; i >= 0; i-- {
		pr := c.procs[i]
		pid := pr.cmd.Process.Pid
		syscall.Kill(pid, syscall.SIGTERM)
		select {
		case <-pr.done:
		case <-time.After(20 * time.Second):
		}
		syscall.Kill(-pid, syscall.SIGKILL)
		<-pr.done
	}
	c.procs = nil
}

// Pids are the cluster's processes.
func (c *Cluster) Pids() []int {
	var out []int
	for _, pr := range c.procs {
		out = append(out, pr.cmd.Process.Pid)
	}
	return out
}

// Tail is the end of each process's log, for an error message.
func (c *Cluster) Tail() string {
	var b strings.Builder
	for _, pr := range c.procs {
		data, _ := os.ReadFile(pr.log)
		if len(data) > 3000 {
			data = data[len(data)-3000:]
		}
		fmt.Fprintf(&b, "--- %s:\n%s\n", pr.name, data)
	}
	return b.String()
}

// HTTPClient trusts the cluster's CA.
func (c *Cluster) HTTPClient() *http.Client {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(c.CAPEM)
	return &http.Client{
		Timeout:   30 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}},
	}
}

func (c *Cluster) waitReady(timeout time.Duration) error {
	client := c.HTTPClient()
	deadline := time.Now().Add(timeout)
	for {
		for _, pr := range c.procs {
			select {
			case <-pr.done:
				return fmt.Errorf("%s exited:\n%s", pr.name, c.Tail())
			default:
			}
		}
		req, _ := http.NewRequest("GET", c.Server+"/readyz", nil)
		req.Header.Set("Authorization", "Bearer "+c.AdminToken)
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("kube-apiserver not ready after %s:\n%s", timeout, c.Tail())
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// KubectlAs runs the cluster's kubectl with kubeconfig cfg and returns its
// stdout; the error carries stderr.
func (c *Cluster) KubectlAs(cfg string, stdin string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.Kubectl, append([]string{"--kubeconfig", cfg}, args...)...)
	cmd.Env = KubectlEnv()
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("kubectl %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// Admin runs kubectl as the admin.
func (c *Cluster) Admin(args ...string) (string, error) {
	return c.KubectlAs(c.AdminConfig, "", args...)
}

// KubectlEnv is the environment for kubectl: this one without any
// KUBECONFIG or in-cluster variables, and a HOME of no cluster.
func KubectlEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "KUBECONFIG=") || strings.HasPrefix(kv, "KUBERNETES_") {
			continue
		}
		env = append(env, kv)
	}
	return env
}

// Snapshot is every object of the test's namespace, and the namespace
// itself, as "kind/name uid resourceVersion" lines: any change to an
// object changes its resourceVersion, a delete and re-create its uid.
func (c *Cluster) Snapshot() (string, error) {
	tmpl := `{{range .items}}{{.kind}}/{{.metadata.name}} {{.metadata.uid}} {{.metadata.resourceVersion}}{{"\n"}}{{end}}`
	out, err := c.Admin("get", "-n", Namespace, "pods,configmaps,secrets,deployments,services,serviceaccounts,roles,rolebindings",
		"-o", "go-template="+tmpl)
	if err != nil {
		return "", err
	}
	ns, err := c.Admin("get", "namespace", Namespace, "-o", `go-template={{.kind}}/{{.metadata.name}} {{.metadata.uid}} {{.metadata.resourceVersion}}{{"\n"}}`)
	if err != nil {
		return "", err
	}
	return ns + out, nil
}

// writeCredentials writes the CA, the server's certificate, the
// service-account key pair, the token file and the two kubeconfigs.
func (c *Cluster) writeCredentials() error {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "ronly-test-ca"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(7 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	caCert, _ := x509.ParseCertificate(caDER)
	c.CAPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	c.CAFile = filepath.Join(c.Dir, "ca.crt")

	srvKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	srvTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "kube-apiserver"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(7 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("10.0.0.1")},
	}
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, caCert, &srvKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	srvKeyDER, err := x509.MarshalECPrivateKey(srvKey)
	if err != nil {
		return err
	}
	saKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	saKeyDER, err := x509.MarshalECPrivateKey(saKey)
	if err != nil {
		return err
	}
	saPubDER, err := x509.MarshalPKIXPublicKey(&saKey.PublicKey)
	if err != nil {
		return err
	}
	c.AdminToken, c.ReaderToken = randomToken(), randomToken()
	tokens := fmt.Sprintf("%s,ronly-admin,uid-admin,\"system:masters\"\n%s,ronly-reader,uid-reader\n", c.AdminToken, c.ReaderToken)
	c.AdminConfig = filepath.Join(c.Dir, "admin.kubeconfig")
	c.ReaderConfig = filepath.Join(c.Dir, "reader.kubeconfig")
	files := []struct {
		name string
		data []byte
		mode os.FileMode
	}{
		{"ca.crt", c.CAPEM, 0o644},
		{"server.crt", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srvDER}), 0o644},
		{"server.key", pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: srvKeyDER}), 0o600},
		{"sa.key", pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: saKeyDER}), 0o600},
		{"sa.pub", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: saPubDER}), 0o644},
		{"tokens.csv", []byte(tokens), 0o600},
	}
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(c.Dir, f.name), f.data, f.mode); err != nil {
			return err
		}
	}
	return nil
}

// writeKubeconfigs needs Server, so it runs once the port is known.
func (c *Cluster) writeKubeconfigs() error {
	for _, k := range []struct{ path, user, token string }{
		{c.AdminConfig, "ronly-admin", c.AdminToken},
		{c.ReaderConfig, "ronly-reader", c.ReaderToken},
	} {
		if err := os.WriteFile(k.path, []byte(Kubeconfig(c.Server, c.CAFile, k.user, k.token)), 0o600); err != nil {
			return err
		}
	}
	return nil
}

// Kubeconfig is a kubeconfig for server, trusting caFile, with a bearer
// token.
func Kubeconfig(server, caFile, user, token string) string {
	return `apiVersion: v1
kind: Config
clusters:
- name: test
  cluster:
    server: ` + server + `
    certificate-authority: ` + caFile + `
users:
- name: ` + user + `
  user:
    token: ` + token + `
contexts:
- name: test
  context:
    cluster: test
    user: ` + user + `
    namespace: ` + Namespace + `
current-context: test
`
}

func randomToken() string {
	b := make([]byte, 24)
	rand.Read(b)
	return fmt.Sprintf("%x", b)
}

// objects are what the tests read (and try to change). Without a kubelet
// the pods stay Pending; without a controller manager the deployment gets
// no replica set.
const objects = `apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: ronly-test-reader
rules:
- apiGroups: ["*"]
  resources: ["*"]
  verbs: ["get", "list", "watch"]
- nonResourceURLs: ["*"]
  verbs: ["get"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: ronly-test-reader
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: ronly-test-reader
subjects:
- kind: User
  name: ronly-reader
- kind: ServiceAccount
  name: default
  namespace: ` + Namespace + `
---
apiVersion: v1
kind: Namespace
metadata:
  name: ` + Namespace + `
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: default
  namespace: ` + Namespace + `
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  namespace: ` + Namespace + `
data:
  mode: read-only
  level: "3"
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: motd
  namespace: ` + Namespace + `
data:
  text: hello
---
apiVersion: v1
kind: Secret
metadata:
  name: db-password
  namespace: ` + Namespace + `
stringData:
  password: hunter2
---
apiVersion: v1
kind: Pod
metadata:
  name: web-0
  namespace: ` + Namespace + `
  labels:
    app: web
spec:
  containers:
  - name: web
    image: registry.invalid/web:1
---
apiVersion: v1
kind: Pod
metadata:
  name: web-1
  namespace: ` + Namespace + `
  labels:
    app: web
spec:
  containers:
  - name: web
    image: registry.invalid/web:1
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: ` + Namespace + `
spec:
  selector:
    app: web
  ports:
  - port: 80
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: api
  namespace: ` + Namespace + `
spec:
  replicas: 2
  selector:
    matchLabels:
      app: api
  template:
    metadata:
      labels:
        app: api
    spec:
      containers:
      - name: api
        image: registry.invalid/api:1
`

// populate writes the kubeconfigs and creates the test's objects and a
// service-account token.
func (c *Cluster) populate() error {
	if err := c.writeKubeconfigs(); err != nil {
		return err
	}
	// The namespace and its service account come first: the pods'
	// admission looks the account up. Retried: RBAC's bootstrap roles may
	// lag /readyz by a moment.
	var err error
	for i := 0; i < 20; i++ {
		if _, err = c.KubectlAs(c.AdminConfig, objects, "apply", "-f", "-"); err == nil {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	if err != nil {
		return err
	}
	out, err := c.Admin("create", "token", "default", "-n", Namespace, "--duration=24h")
	if err != nil {
		return err
	}
	c.SAToken = strings.TrimSpace(out)
	return nil
}
