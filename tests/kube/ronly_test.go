package kube_test

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"ronly.dev/ronly/tests/kube"
)

var ronlyFlag = flag.String("ronly", "", "prebuilt ronly binary (default: go build ./go/cmd/ronly)")

var (
	ronlyOnce sync.Once
	ronlyBin  string
	ronlyErr  error
)

func ronlyBinary(t *testing.T) string {
	t.Helper()
	ronlyOnce.Do(func() {
		if *ronlyFlag != "" {
			ronlyBin, ronlyErr = filepath.Abs(*ronlyFlag)
			return
		}
		ronlyBin = filepath.Join(tmp, "ronly")
		out, err := exec.Command("go", "build", "-o", ronlyBin, "ronly.dev/ronly/go/cmd/ronly").CombinedOutput()
		if err != nil {
			ronlyErr = fmt.Errorf("go build ronly: %v: %s", err, out)
		}
	})
	if ronlyErr != nil {
		t.Fatal(ronlyErr)
	}
	return ronlyBin
}

// reads are kubectl commands whose answers inside must match outside's.
// Each runs through the kubectl shim inside (the shim passes reads on).
var reads = [][]string{
	{"get", "pods", "-o", "name"},
	{"get", "configmap", "settings", "-o", "yaml"},
	{"get", "secret", "db-password", "-o", "jsonpath={.data.password}"},
	{"get", "deployment", "api", "-o", "jsonpath={.spec.replicas}"},
	{"describe", "configmap", "settings"},
	{"api-resources", "-o", "name"},
	{"auth", "can-i", "delete", "pods"},
	{"auth", "can-i", "--list"},
	{"auth", "whoami", "-o", "jsonpath={.status.userInfo.username}"},
	{"logs", "web-0"}, // no kubelet: an error, the same one
	{"top", "pods"},   // no metrics server: an error, the same one
}

// session is one ronly run's results.
type session struct {
	out     string
	metrics string // the node_exporter textfile the session merged its counts into
	report  struct {
		Refused map[string]map[string]uint64 `json:"refused"`
	}
}

func runRonly(t *testing.T, args []string, env []string, script string) *session {
	t.Helper()
	ronly := ronlyBinary(t)
	dir := t.TempDir()
	ws := filepath.Join(tmp, "ws-"+strings.ReplaceAll(t.Name(), "/", "-"))
	if err := os.MkdirAll(ws, 0o755); err != nil {
		t.Fatal(err)
	}
	report := filepath.Join(dir, "report.json")
	textfile := filepath.Join(dir, "ronly.prom")
	full := append([]string{"--metrics-textfile", textfile, "--report", report}, args...)
	full = append(full, "--", "/bin/sh", "-c", script)
	cmd := exec.Command(ronly, full...)
	cmd.Env = env
	cmd.Dir = ws
	var stderr strings.Builder
	cmd.Stderr = &stderr
	done := make(chan struct{})
	timer := time.AfterFunc(4*time.Minute, func() { cmd.Process.Kill() })
	out, err := cmd.Output()
	timer.Stop()
	close(done)
	if err != nil {
		t.Fatalf("ronly %s: %v\n%s\nstderr:\n%s", strings.Join(args, " "), err, out, stderr.String())
	}
	s := &session{out: string(out)}
	prom, err := os.ReadFile(textfile)
	if err != nil {
		t.Fatal(err)
	}
	s.metrics = string(prom)
	data, err := os.ReadFile(report)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &s.report); err != nil {
		t.Fatalf("report: %v\n%s", err, data)
	}
	return s
}

// shellQuote quotes args for sh.
func shellQuote(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		q[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return strings.Join(q, " ")
}

// outside runs the cluster's kubectl as the admin, outside, and returns
// what the script inside prints for the same command: stdout and stderr,
// and FAILED when it failed.
func outside(args ...string) string {
	cmd := exec.Command(cluster.Kubectl, append([]string{"--kubeconfig", cluster.AdminConfig}, args...)...)
	cmd.Env = kube.KubectlEnv()
	out, err := cmd.CombinedOutput()
	if err != nil {
		out = append(out, "FAILED\n"...)
	}
	return string(out)
}

// TestInsideRonly runs kubectl inside ronly with the admin's kubeconfig, in
// the debug and the ci profile: reads answer as they do outside, and every
// way of writing fails — the real kubectl by absolute path (past the shim),
// Debian's /usr/bin/kubectl, curl with the admin's token, exec,
// port-forward, proxy — and is counted; the cluster's objects are
// unchanged afterwards, as the admin sees them from outside.
func TestInsideRonly(t *testing.T) {
	needCluster(t)
	for _, c := range []struct {
		name string
		args []string
	}{
		{"debug", []string{"--profile", "debug"}},
		// The ci profile starts from an empty environment: PATH is kept
		// so that the shim finds this kubectl, not Debian's.
		{"ci", []string{"--profile", "ci", "--keepenv", "PATH"}},
		// No namespaces at all: the kubeconfig cannot be hidden there
		// (ronly says so), but the guard is still what KUBECONFIG names.
		{"landlock-only", []string{"--mode", "landlock-only"}},
	} {
		t.Run(c.name, func(t *testing.T) { insideRonly(t, c.args, c.name != "landlock-only") })
	}
}

// insideRonly runs the reads and writes in a session made with args.
// hidden: the admin's kubeconfig reads empty inside, so its token can be
// tried straight against the API server.
func insideRonly(t *testing.T, args []string, hidden bool) {
	kubectl := cluster.Kubectl
	var script strings.Builder
	script.WriteString("exec 2>&1\n")
	// A watch that sees live events: config maps that the test creates
	// from outside, in a namespace of their own, while the session runs.
	script.WriteString("timeout 15 kubectl get configmaps -n ronly-watch -w --watch-only -o name > \"${TMPDIR:-/tmp}/live.txt\" 2>&1 &\n")
	for i, r := range reads {
		fmt.Fprintf(&script, "printf '\\n@@read %d\\n'; kubectl %s || echo FAILED\n", i, shellQuote(r))
	}
	// The watch: the initial list arrives, then the watch is cut.
	script.WriteString("printf '\\n@@watch\\n'; timeout 5 kubectl get pods -w -o name\n")
	writes := []string{
		kubectl + " delete pod web-0",
		kubectl + " delete configmaps --all",
		"printf 'apiVersion: v1\\nkind: ConfigMap\\nmetadata:\\n  name: settings\\ndata:\\n  mode: changed\\n' | " + kubectl + " apply -f -",
		kubectl + " create configmap injected --from-literal=a=b",
		kubectl + " patch configmap settings -p '{\"data\":{\"mode\":\"changed\"}}'",
		"KUBE_EDITOR='sed -i s/read-only/changed/' " + kubectl + " edit configmap settings",
		kubectl + " scale deployment api --replicas=5",
		kubectl + " label pod web-1 touched=yes",
		kubectl + " exec web-0 -- true",
		"timeout 10 " + kubectl + " port-forward pod/web-0 18080:80",
		kubectl + " cp /etc/hostname web-0:/tmp/x",
		kubectl + " create token default",
		kubectl + " --as=system:admin get pods",
		kubectl + " delete pod web-0 --dry-run=server",
		"/usr/bin/kubectl delete pod web-1",
		// The guard's address from the generated kubeconfig, the admin's
		// token from outside: the guard ignores what the client sends.
		`server=$(` + kubectl + ` config view --minify -o jsonpath='{.clusters[0].cluster.server}'); ` +
			`curl -sk -H "Authorization: Bearer ` + cluster.AdminToken + `" -X DELETE "$server/api/v1/namespaces/` + kube.Namespace + `/pods/web-0"; echo`,
		// kubectl proxy serves on a port of its own; a DELETE through it
		// reaches the guard.
		kubectl + " proxy --port=18001 >/dev/null 2>&1 & sleep 2; curl -s -X DELETE http://127.0.0.1:18001/api/v1/namespaces/" + kube.Namespace + "/pods/web-1; echo; kill $!",
		// Raw bytes on the guard's port, past any HTTP client.
		"/usr/bin/python3 -c " + shellQuote([]string{rawDelete}) + ` "${server#https://}"`,
		// A port-forward stream asked for straight (kubectl gives up on
		// the Pending pod before it asks): the guard must refuse it.
		`curl -sk -X POST -H 'Connection: Upgrade' -H 'Upgrade: SPDY/3.1' -H 'X-Stream-Protocol-Version: portforward.k8s.io' ` +
			`"$server/api/v1/namespaces/` + kube.Namespace + `/pods/web-0/portforward?ports=80"; echo`,
	}
	if hidden {
		// The credential the kubeconfig outside names reads empty
		// inside: straight to the API server it is anonymous.
		writes = append(writes, `curl -sk -o /dev/null -w '%{http_code}\n' -H "Authorization: Bearer $(sed -n 's/^ *token: //p' `+cluster.AdminConfig+`)" -X DELETE "`+cluster.Server+`/api/v1/namespaces/`+kube.Namespace+`/pods/web-0"`)
	}
	for i, w := range writes {
		fmt.Fprintf(&script, "printf '\\n@@write %d\\n'; %s; printf '\\n@@rc %%s\\n' $?\n", i, w)
	}
	script.WriteString("wait; printf '\\n@@live\\n'; cat \"${TMPDIR:-/tmp}/live.txt\"\n")
	env := append(kube.KubectlEnv(), "KUBECONFIG="+cluster.AdminConfig, "PATH="+filepath.Dir(kubectl)+":/usr/local/bin:/usr/bin:/bin")
	stop := liveCreates(t, 300*time.Millisecond, func(name string) []string { return []string{"configmap", name} })
	s := runRonly(t, args, env, script.String())
	stop()
	parts := sections(s.out)

	for i, r := range reads {
		want := strings.TrimSpace(outside(r...))
		got := strings.TrimSpace(parts[fmt.Sprintf("read %d", i)])
		if r[0] == "api-resources" {
			got, want = sortedLines(got), sortedLines(want)
		}
		if got != want {
			t.Errorf("kubectl %s: inside:\n%s\noutside:\n%s", strings.Join(r, " "), got, want)
		}
	}
	if w := parts["watch"]; !strings.Contains(w, "pod/web-0") || !strings.Contains(w, "pod/web-1") {
		t.Errorf("kubectl get -w: %q", w)
	}
	if w := parts["live"]; !strings.Contains(w, "configmap/live-") {
		t.Errorf("kubectl get -w --watch-only saw no live event: %q", w)
	}
	for i, w := range writes {
		got := parts[fmt.Sprintf("write %d", i)]
		if strings.Contains(got, "@@rc 0") && !strings.Contains(got, "is blocked (read-only session)") && !anonymousRE.MatchString(got) {
			t.Errorf("write %d succeeded: %s\n%s", i, w, got)
		}
	}
	// The refusals the guard counted: the ones only the guard sees.
	api := s.report.Refused["api"]
	for _, want := range []string{
		// delete --all lists, then deletes one by one; kubectl
		// port-forward gives up on a Pending pod before it connects,
		// the raw request does not.
		"kubernetes delete pods", "kubernetes delete configmaps", "kubernetes patch configmaps",
		"kubernetes create configmaps", "kubernetes patch deployments/scale", "kubernetes connect pods/exec",
		"kubernetes connect pods/portforward",
		"kubernetes create serviceaccounts/token", "kubernetes patch pods",
	} {
		if api[want] == 0 {
			t.Errorf("not counted: %s (api refusals %v)\n%s", want, api, s.out)
		}
	}
	for _, want := range []string{
		`ronly_blocked_api_calls_total{api="kubernetes",resource="pods",verb="delete"} `,
		`ronly_blocked_api_calls_total{api="kubernetes",resource="pods/exec",verb="connect"} `,
	} {
		if !strings.Contains(s.metrics, want) {
			t.Errorf("metrics lack %s:\n%s", want, s.metrics)
		}
	}
	impersonations := 0
	for k, n := range api {
		if strings.HasPrefix(k, "kubernetes impersonate ") {
			impersonations += int(n)
		}
	}
	if impersonations == 0 {
		t.Errorf("kubectl --as: no impersonation counted (api refusals %v)", api)
	}
	for _, msg := range []string{
		"Error from server (Forbidden): ronly: delete pods is blocked (read-only session)",
		`"message":"ronly: delete pods is blocked (read-only session)"`,
	} {
		if !strings.Contains(s.out, msg) {
			t.Errorf("output lacks %q", msg)
		}
	}
	assertUnchanged(t)
}

// liveCreates creates an object in the namespace ronly-watch (outside the
// snapshot) every period until stop is called: what a watch inside sees
// arrive. kind gives kubectl's words for the object named name.
func liveCreates(t *testing.T, every time.Duration, kind func(name string) []string) (stop func()) {
	t.Helper()
	if out, err := cluster.Admin("get", "namespace", "ronly-watch", "-o", "name"); err != nil || out == "" {
		if _, err := cluster.Admin("create", "namespace", "ronly-watch"); err != nil {
			t.Fatal(err)
		}
	}
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		for i := 0; ; i++ {
			select {
			case <-done:
				return
			case <-time.After(every):
			}
			name := fmt.Sprintf("live-%d-%d", time.Now().UnixNano(), i)
			cluster.Admin(append(append([]string{"create"}, kind(name)...), "-n", "ronly-watch")...)
		}
	}()
	return func() { close(done); <-finished }
}

// rawDelete writes a DELETE on a TLS connection to the guard, past any
// HTTP client, and prints the answer.
const rawDelete = `import socket, ssl, sys
host, port = sys.argv[1].rsplit(":", 1)
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
s = ctx.wrap_socket(socket.create_connection((host, int(port)), timeout=10))
s.sendall(b"DELETE /api/v1/namespaces/` + kube.Namespace + `/pods/web-0 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
data = b""
while True:
    b = s.recv(4096)
    if not b:
        break
    data += b
print(data.decode(errors="replace"))
`

// sections splits a script's output at its "@@name" lines.
func sections(out string) map[string]string {
	m := map[string]string{}
	cur := ""
	for _, l := range strings.SplitAfter(out, "\n") {
		if name, ok := strings.CutPrefix(l, "@@"); ok && !strings.HasPrefix(name, "rc ") {
			cur = strings.TrimSpace(name)
			continue
		}
		m[cur] += l
	}
	return m
}

// anonymousRE is the status code of a call the API server refused for
// want of a credential.
var anonymousRE = regexp.MustCompile(`(?m)^40[13]$`)

func sortedLines(s string) string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	sort.Strings(l)
	return strings.Join(l, "\n")
}

// TestInCluster runs a client-go program that uses the in-cluster
// configuration, unchanged, inside ronly on a host that looks like a pod: a
// service-account volume at /run/secrets/kubernetes.io/serviceaccount and
// KUBERNETES_SERVICE_HOST/PORT naming the API server. Inside, the token
// reads as a placeholder, ca.crt is the guard's CA and the variables name
// the guard: the program lists pods, and its delete and create fail with
// ronly's refusal and are counted.
func TestInCluster(t *testing.T) {
	needCluster(t)
	const dir = "/run/secrets/kubernetes.io/serviceaccount"
	if _, err := os.Stat("/run/secrets"); err == nil {
		t.Fatal("/run/secrets exists on this host: the test would change it")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll("/run/secrets") })
	for name, data := range map[string]string{"token": cluster.SAToken, "ca.crt": string(cluster.CAPEM), "namespace": kube.Namespace} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	host, port, _ := strings.Cut(strings.TrimPrefix(cluster.Server, "https://"), ":")
	// No ~/.kube: the pod's account is the credential. Not under /tmp,
	// which the ci profile replaces before it makes HOME a tmpfs.
	home := filepath.Join(tmp, "incluster-home")
	if err := os.MkdirAll(home, 0o755); err != nil {
		t.Fatal(err)
	}
	env := append(kube.KubectlEnv(), "HOME="+home, "KUBERNETES_SERVICE_HOST="+host, "KUBERNETES_SERVICE_PORT="+port,
		"PATH="+filepath.Dir(cluster.Kubectl)+":/usr/local/bin:/usr/bin:/bin")
	for _, profile := range []string{"debug", "ci"} {
		t.Run(profile, func(t *testing.T) {
			args := []string{"--profile", profile}
			if profile == "ci" {
				args = append(args, "--keepenv", "PATH")
			}
			s := runRonly(t, args, env, `exec 2>&1
echo "token=$(cat `+dir+`/token)"
`+cluster.InCluster+`
kubectl get pods -o name
`)
			for _, want := range []string{
				"pod: web-0\npod: web-1\n",
				"delete: ronly: delete pods is blocked (read-only session)\n",
				"create: ronly: create configmaps is blocked (read-only session)\n",
				"pod/web-0\npod/web-1\n",
			} {
				if !strings.Contains(s.out, want) {
					t.Errorf("output lacks %q:\n%s", want, s.out)
				}
			}
			if strings.Contains(s.out, cluster.SAToken) || strings.Contains(s.out, "token=\n") {
				t.Errorf("the token inside is not the placeholder:\n%s", s.out)
			}
			api := s.report.Refused["api"]
			if api["kubernetes delete pods"] != 1 || api["kubernetes create configmaps"] != 1 {
				t.Errorf("counted %v", api)
			}
		})
	}
	assertUnchanged(t)
}
