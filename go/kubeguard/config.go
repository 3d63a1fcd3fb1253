package kubeguard

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"go.yaml.in/yaml/v3"
)

// Upstream is the real API server and the credential the guard presents to
// it.
type Upstream struct {
	Server *url.URL
	TLS    *tls.Config // CA, client certificate, or InsecureSkipVerify as the kubeconfig says
	// Namespace is the current context's namespace ("" for default), which
	// the generated kubeconfig keeps.
	Namespace string
	// Source says where the credential came from, for -v: a kubeconfig's
	// path and context, or "in-cluster".
	Source string

	token     string
	tokenFile string // re-read: kubelet rotates projected tokens
	user      string // basic auth
	password  string

	mu        sync.Mutex
	fileToken string
	readAt    time.Time
}

// tokenReread is how long a token file's contents are used before it is
// read again (client-go's in-cluster config re-reads it every minute).
const tokenReread = time.Minute

func (u *Upstream) transport() *http.Transport {
	return &http.Transport{
		TLSClientConfig:   u.TLS.Clone(),
		ForceAttemptHTTP2: true, // many watches share a connection
		// Asking for gzip would make the transport buffer and decode
		// what should stream through.
		DisableCompression:  true,
		MaxIdleConnsPerHost: 8,
		IdleConnTimeout:     90 * time.Second,
		TLSHandshakeTimeout: 10 * time.Second,
		Proxy:               nil, // never an HTTPS_PROXY of the environment
	}
}

// authorize sets r's Authorization as the credential says.
func (u *Upstream) authorize(r *http.Request) error {
	switch {
	case u.tokenFile != "":
		tok, err := u.readToken()
		if err != nil {
			return err
		}
		r.Header.Set("Authorization", "Bearer "+tok)
	case u.token != "":
		r.Header.Set("Authorization", "Bearer "+u.token)
	case u.user != "":
		r.SetBasicAuth(u.user, u.password)
	}
	return nil
}

func (u *Upstream) readToken() (string, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.fileToken != "" && time.Since(u.readAt) < tokenReread {
		return u.fileToken, nil
	}
	b, err := os.ReadFile(u.tokenFile)
	if err != nil {
		if u.fileToken != "" {
			return u.fileToken, nil // rotating: the last one still works a while
		}
		return "", err
	}
	u.fileToken, u.readAt = strings.TrimSpace(string(b)), time.Now()
	return u.fileToken, nil
}

// The in-cluster configuration's places, as client-go reads them.
const (
	ServiceAccountDir = "/var/run/secrets/kubernetes.io/serviceaccount"
)

// InCluster is the pod's own service account, when ronly runs in a pod
// (KUBERNETES_SERVICE_HOST and _PORT set, a token file present); nil, nil
// when it does not.
func InCluster(env func(string) string) (*Upstream, error) {
	host, port := env("KUBERNETES_SERVICE_HOST"), env("KUBERNETES_SERVICE_PORT")
	if host == "" || port == "" {
		return nil, nil
	}
	tokenFile := filepath.Join(ServiceAccountDir, "token")
	if _, err := os.Stat(tokenFile); err != nil {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if pem, err := os.ReadFile(filepath.Join(ServiceAccountDir, "ca.crt")); err == nil {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("in-cluster: %s/ca.crt holds no certificate", ServiceAccountDir)
		}
		cfg.RootCAs = pool
	}
	u := &Upstream{Server: &url.URL{Scheme: "https", Host: net.JoinHostPort(host, port)}, TLS: cfg, tokenFile: tokenFile, Source: "in-cluster"}
	if ns, err := os.ReadFile(filepath.Join(ServiceAccountDir, "namespace")); err == nil {
		u.Namespace = strings.TrimSpace(string(ns))
	}
	return u, nil
}

// kubeconfig is the part of a kubeconfig file the guard reads.
type kubeconfig struct {
	CurrentContext string `yaml:"current-context"`
	Clusters       []struct {
		Name    string `yaml:"name"`
		Cluster struct {
			Server                   string `yaml:"server"`
			CertificateAuthority     string `yaml:"certificate-authority"`
			CertificateAuthorityData string `yaml:"certificate-authority-data"`
			InsecureSkipTLSVerify    bool   `yaml:"insecure-skip-tls-verify"`
			TLSServerName            string `yaml:"tls-server-name"`
			ProxyURL                 string `yaml:"proxy-url"`
		} `yaml:"cluster"`
	} `yaml:"clusters"`
	Users []struct {
		Name string   `yaml:"name"`
		User authInfo `yaml:"user"`
	} `yaml:"users"`
	Contexts []struct {
		Name    string `yaml:"name"`
		Context struct {
			Cluster   string `yaml:"cluster"`
			User      string `yaml:"user"`
			Namespace string `yaml:"namespace"`
		} `yaml:"context"`
	} `yaml:"contexts"`
}

type authInfo struct {
	ClientCertificate     string    `yaml:"client-certificate"`
	ClientCertificateData string    `yaml:"client-certificate-data"`
	ClientKey             string    `yaml:"client-key"`
	ClientKeyData         string    `yaml:"client-key-data"`
	Token                 string    `yaml:"token"`
	TokenFile             string    `yaml:"tokenFile"`
	Username              string    `yaml:"username"`
	Password              string    `yaml:"password"`
	Exec                  yaml.Node `yaml:"exec"`
	AuthProvider          yaml.Node `yaml:"auth-provider"`
	As                    string    `yaml:"as"`
}

// maxKubeconfig bounds one kubeconfig file.
const maxKubeconfig = 4 << 20

// FromKubeconfig reads the kubeconfig files as kubectl merges them
// ($KUBECONFIG's list: the first file that sets a name or the current
// context wins) and returns the current context's server and credential.
// Relative paths in a file are relative to its directory. An exec plugin
// or auth provider is an error: the guard does not run programs of a
// kubeconfig's choosing.
func FromKubeconfig(paths []string) (*Upstream, error) {
	type cluster struct {
		dir string
		c   *kubeconfig
		i   int
	}
	clusters := map[string]cluster{}
	users := map[string]cluster{}
	contexts := map[string]cluster{}
	current := ""
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			return nil, err
		}
		data, err := io.ReadAll(io.LimitReader(f, maxKubeconfig))
		f.Close()
		if err != nil {
			return nil, err
		}
		kc := new(kubeconfig)
		if err := yaml.Unmarshal(data, kc); err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		dir := filepath.Dir(p)
		for i, c := range kc.Clusters {
			if _, ok := clusters[c.Name]; !ok {
				clusters[c.Name] = cluster{dir, kc, i}
			}
		}
		for i, u := range kc.Users {
			if _, ok := users[u.Name]; !ok {
				users[u.Name] = cluster{dir, kc, i}
			}
		}
		for i, c := range kc.Contexts {
			if _, ok := contexts[c.Name]; !ok {
				contexts[c.Name] = cluster{dir, kc, i}
			}
		}
		if current == "" {
			current = kc.CurrentContext
		}
	}
	if current == "" {
		return nil, errors.New("no current-context")
	}
	ctx, ok := contexts[current]
	if !ok {
		return nil, fmt.Errorf("context %q is not defined", current)
	}
	cc := ctx.c.Contexts[ctx.i].Context
	cl, ok := clusters[cc.Cluster]
	if !ok {
		return nil, fmt.Errorf("context %q: cluster %q is not defined", current, cc.Cluster)
	}
	c := cl.c.Clusters[cl.i].Cluster
	server, err := url.Parse(c.Server)
	if err != nil || (server.Scheme != "https" && server.Scheme != "http") || server.Host == "" {
		return nil, fmt.Errorf("cluster %q: server %q is not an http(s) URL", cc.Cluster, c.Server)
	}
	if c.ProxyURL != "" {
		return nil, fmt.Errorf("cluster %q: proxy-url is not supported", cc.Cluster)
	}
	u := &Upstream{Server: server, Namespace: cc.Namespace, Source: "context " + current}
	u.TLS = &tls.Config{MinVersion: tls.VersionTLS12, ServerName: c.TLSServerName, InsecureSkipVerify: c.InsecureSkipTLSVerify}
	caPEM, err := fileOrData(cl.dir, c.CertificateAuthority, c.CertificateAuthorityData)
	if err != nil {
		return nil, fmt.Errorf("cluster %q: certificate-authority: %w", cc.Cluster, err)
	}
	if caPEM != nil {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(caPEM) {
			return nil, fmt.Errorf("cluster %q: certificate-authority holds no certificate", cc.Cluster)
		}
		u.TLS.RootCAs = pool
	}
	if cc.User == "" {
		return u, nil
	}
	us, ok := users[cc.User]
	if !ok {
		return nil, fmt.Errorf("context %q: user %q is not defined", current, cc.User)
	}
	a := us.c.Users[us.i].User
	switch {
	case !a.Exec.IsZero():
		return nil, fmt.Errorf("user %q: an exec credential plugin is not supported", cc.User)
	case !a.AuthProvider.IsZero():
		return nil, fmt.Errorf("user %q: an auth-provider is not supported", cc.User)
	case a.As != "":
		return nil, fmt.Errorf("user %q: impersonation (as) is not supported", cc.User)
	}
	cert, err := fileOrData(us.dir, a.ClientCertificate, a.ClientCertificateData)
	if err != nil {
		return nil, fmt.Errorf("user %q: client-certificate: %w", cc.User, err)
	}
	key, err := fileOrData(us.dir, a.ClientKey, a.ClientKeyData)
	if err != nil {
		return nil, fmt.Errorf("user %q: client-key: %w", cc.User, err)
	}
	if cert != nil || key != nil {
		pair, err := tls.X509KeyPair(cert, key)
		if err != nil {
			return nil, fmt.Errorf("user %q: client certificate: %w", cc.User, err)
		}
		u.TLS.Certificates = []tls.Certificate{pair}
	}
	switch {
	case a.Token != "":
		u.token = a.Token
	case a.TokenFile != "":
		u.tokenFile = resolve(us.dir, a.TokenFile)
		if _, err := u.readToken(); err != nil {
			return nil, fmt.Errorf("user %q: tokenFile: %w", cc.User, err)
		}
	case a.Username != "":
		u.user, u.password = a.Username, a.Password
	}
	return u, nil
}

func resolve(dir, p string) string {
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(dir, p)
}

// fileOrData is a kubeconfig's X-data (base64) or the file X names; nil
// when neither is set.
func fileOrData(dir, file, data string) ([]byte, error) {
	if data != "" {
		return base64.StdEncoding.DecodeString(strings.TrimSpace(data))
	}
	if file == "" {
		return nil, nil
	}
	return os.ReadFile(resolve(dir, file))
}

// Serving is the guard's own TLS identity: a CA made for one session, and a
// certificate for 127.0.0.1 it signed. The CA's key is dropped once the
// certificate is made.
type Serving struct {
	CAPEM []byte
	cert  tls.Certificate
}

// NewServing makes a CA and a server certificate for the IP addresses.
func NewServing(ips ...net.IP) (*Serving, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "ronly session Kubernetes guard CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(10 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "ronly Kubernetes guard"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(10 * 365 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  ips,
		DNSNames:     []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	return &Serving{
		CAPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		cert:  tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key},
	}, nil
}

// Listener wraps ln in TLS with the guard's certificate, HTTP/1.1 only.
func (s *Serving) Listener(ln net.Listener) net.Listener {
	return tls.NewListener(ln, &tls.Config{
		Certificates: []tls.Certificate{s.cert},
		MinVersion:   tls.VersionTLS12,
		NextProtos:   []string{"http/1.1"},
	})
}

// Placeholder is the token of the kubeconfig the session gets, and of the
// in-cluster token file inside: no credential (the guard authenticates,
// and ignores what a client sends), but not nothing either. With no
// credential at all kubectl prompts for a user name and password, and
// client-go's in-cluster config refuses an empty token file.
const Placeholder = "ronly-read-only-session-no-credential"

// Kubeconfig is the kubeconfig the session gets: the guard as the server,
// trusted through its CA, the namespace of the context it stands for, and
// the placeholder token.
func Kubeconfig(server string, caPEM []byte, namespace string) []byte {
	ns := ""
	if namespace != "" {
		ns = "\n    namespace: " + quote(namespace)
	}
	return []byte(`apiVersion: v1
kind: Config
clusters:
- name: ronly
  cluster:
    server: ` + quote(server) + `
    certificate-authority-data: ` + base64.StdEncoding.EncodeToString(caPEM) + `
users:
- name: ronly
  user:
    token: ` + Placeholder + `
contexts:
- name: ronly
  context:
    cluster: ronly
    user: ronly` + ns + `
current-context: ronly
`)
}

// quote is s as a YAML double-quoted scalar: JSON's quoting is YAML's.
func quote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
