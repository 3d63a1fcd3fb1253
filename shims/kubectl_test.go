package shims

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// apiServer is a stand-in for a Kubernetes API server: discovery, one
// namespace's pods, and a record of every request.
type apiServer struct {
	mu   sync.Mutex
	reqs []string // "GET /api/v1/namespaces/x/pods"
}

func (s *apiServer) take() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.reqs
	s.reqs = nil
	return r
}

const podTable = `{"kind":"Table","apiVersion":"meta.k8s.io/v1","metadata":{},
 "columnDefinitions":[{"name":"Name","type":"string","format":"name","description":"","priority":0},
  {"name":"Status","type":"string","format":"","description":"","priority":0}],
 "rows":[{"cells":["web-1","Running"],"object":{"kind":"PartialObjectMetadata","apiVersion":"meta.k8s.io/v1",
  "metadata":{"name":"web-1","namespace":"x"}}}]}`

const podList = `{"kind":"PodList","apiVersion":"v1","metadata":{},
 "items":[{"metadata":{"name":"web-1","namespace":"x"},"spec":{"containers":[{"name":"c","image":"i"}]},
  "status":{"phase":"Running"}}]}`

func (s *apiServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.reqs = append(s.reqs, r.Method+" "+r.URL.Path)
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	if r.Method != http.MethodGet {
		w.WriteHeader(http.StatusMethodNotAllowed)
		fmt.Fprint(w, `{"kind":"Status","apiVersion":"v1","status":"Failure","code":405}`)
		return
	}
	switch r.URL.Path {
	case "/version":
		fmt.Fprint(w, `{"major":"1","minor":"32","gitVersion":"v1.32.4","platform":"linux/amd64"}`)
	case "/api":
		fmt.Fprint(w, `{"kind":"APIVersions","versions":["v1"],"serverAddressByClientCIDRs":[{"clientCIDR":"0.0.0.0/0","serverAddress":"127.0.0.1"}]}`)
	case "/apis":
		fmt.Fprint(w, `{"kind":"APIGroupList","apiVersion":"v1","groups":[]}`)
	case "/api/v1":
		fmt.Fprint(w, `{"kind":"APIResourceList","groupVersion":"v1","resources":[
 {"name":"pods","singularName":"pod","namespaced":true,"kind":"Pod","verbs":["create","delete","get","list","patch","update","watch"],"shortNames":["po"]},
 {"name":"pods/exec","singularName":"","namespaced":true,"kind":"PodExecOptions","verbs":["create","get"]}]}`)
	case "/api/v1/namespaces/x/pods":
		if strings.Contains(r.Header.Get("Accept"), "as=Table") {
			fmt.Fprint(w, podTable)
		} else {
			fmt.Fprint(w, podList)
		}
	default:
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprint(w, `{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"NotFound","code":404}`)
	}
}

// realKubectl finds the kubectl client (Debian: kubernetes-client, or
// Google's kubectl package); under CI=true its absence fails the test.
func realKubectl(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("kubectl"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("kubectl is missing (apt-get install kubernetes-client): %v", err)
		}
		t.Skipf("kubectl is missing (apt-get install kubernetes-client): %v", err)
	}
}

// TestKubectlThroughShim runs the real kubectl through the shim against a
// stand-in API server: reads reach it with GET only; what would change
// the cluster never reaches it at all.
func TestKubectlThroughShim(t *testing.T) {
	realKubectl(t)
	api := &apiServer{}
	srv := httptest.NewServer(api)
	defer srv.Close()

	dir := t.TempDir()
	kubeconfig := filepath.Join(dir, "config")
	write(t, kubeconfig, `apiVersion: v1
kind: Config
clusters:
- name: c
  cluster:
    server: `+srv.URL+`
contexts:
- name: ctx
  context:
    cluster: c
    user: u
    namespace: x
current-context: ctx
users:
- name: u
  user:
    token: t0ken
`)
	manifest := filepath.Join(dir, "pod.yaml")
	write(t, manifest, "apiVersion: v1\nkind: Pod\nmetadata:\n  name: evil\n  namespace: x\nspec:\n  containers:\n  - name: c\n    image: i\n")

	shims := shimDir(t, "kubectl")
	path := shims + ":" + os.Getenv("PATH")
	env := []string{"KUBECONFIG=" + kubeconfig}
	kubectl := func(args ...string) shimRun {
		t.Helper()
		return runShimCmd(t, shims, path, env, "kubectl", args...)
	}

	// Reads reach the server, with GET only.
	for _, args := range [][]string{
		{"get", "pods"},
		{"-n", "x", "get", "pods"},
		{"--context=ctx", "get", "pods", "-o", "name"},
		{"--namespace", "x", "--request-timeout", "5s", "get", "pods", "-o", "json"},
	} {
		res := kubectl(args...)
		reqs := api.take()
		if res.code != 0 || !strings.Contains(res.stdout, "web-1") || len(res.reports) != 0 {
			t.Errorf("kubectl %q: %+v", args, res)
		}
		t.Logf("kubectl %q: %q", args, reqs)
		sawPods := false
		for _, r := range reqs {
			if !strings.HasPrefix(r, "GET ") {
				t.Errorf("kubectl %q: %s reached the server", args, r)
			}
			sawPods = sawPods || r == "GET /api/v1/namespaces/x/pods"
		}
		if !sawPods {
			t.Errorf("kubectl %q: never listed the pods: %q", args, reqs)
		}
	}

	// Changes never reach it: no request at all.
	for _, c := range []struct {
		args  []string
		label string
	}{
		{[]string{"delete", "pod", "web-1"}, "delete"},
		{[]string{"-n", "x", "delete", "pod", "web-1", "--now"}, "delete"},
		{[]string{"apply", "-f", manifest}, "apply"},
		{[]string{"create", "-f", manifest}, "create"},
		{[]string{"exec", "web-1", "--", "sh", "-c", "id"}, "exec"},
		{[]string{"--context", "ctx", "exec", "-it", "web-1", "--", "sh"}, "exec"},
		{[]string{"edit", "pod", "web-1"}, "edit"},
		{[]string{"--", "delete", "pod", "web-1"}, "other"},
		{[]string{"", "delete", "pod", "web-1"}, "other"},
		{[]string{"-", "delete", "pod", "web-1"}, "other"},
		{[]string{"--kuberc", "/dev/null", "delete", "pod", "web-1"}, "other"},
		{[]string{"--namespace", "get", "delete", "pod", "web-1"}, "delete"},
		{[]string{"config", "set-context", "ctx", "--namespace=y"}, "config set-context"},
	} {
		res := kubectl(c.args...)
		want := fmt.Sprintf(`{"kind":"command","tool":"kubectl","subcommand":%q}`, c.label)
		if res.code != 1 || !strings.HasSuffix(res.stderr, "is blocked (read-only session)\n") ||
			len(res.reports) != 1 || res.reports[0] != want {
			t.Errorf("kubectl %q: %+v", c.args, res)
		}
		if reqs := api.take(); len(reqs) != 0 {
			t.Errorf("kubectl %q reached the server: %q", c.args, reqs)
		}
	}

	// The same commands straight to the real kubectl do reach it (the
	// stand-in is good enough to tell).
	// (Not through ronly's own shim when the test itself runs in ronly.)
	real, _ := LookPath("kubectl", os.Getenv("PATH"))
	cmd := exec.Command(real, "delete", "pod", "web-1")
	cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig, "HOME="+t.TempDir())
	cmd.Run()
	sawDelete := false
	for _, r := range api.take() {
		sawDelete = sawDelete || r == "DELETE /api/v1/namespaces/x/pods/web-1"
	}
	if !sawDelete {
		t.Error("the stand-in never saw kubectl delete without the shim")
	}
}
