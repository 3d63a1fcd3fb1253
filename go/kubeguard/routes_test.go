package kubeguard

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestDecide runs requests through the guard's handler with an upstream
// that records what reaches it: allowed ones arrive with the guard's own
// credential, refused ones never arrive and answer a 403 Status naming the
// verb and resource.
func TestDecide(t *testing.T) {
	var reached []string
	up := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer upstream-token" {
			t.Errorf("%s %s reached upstream with Authorization %q", r.Method, r.URL, r.Header.Get("Authorization"))
		}
		for k := range r.Header {
			if strings.HasPrefix(k, "Impersonate") {
				t.Errorf("%s reached upstream", k)
			}
		}
		reached = append(reached, r.Method+" "+r.URL.RequestURI())
		w.Write([]byte(`{}`))
	}))
	defer up.Close()
	u := upstreamFor(t, up)
	var refused []string
	g := &Guard{Upstream: u, Refused: func(verb, res string) { refused = append(refused, verb+" "+res) }}
	h := &handler{g: g, tr: up.Client().Transport}

	for _, c := range []struct {
		method, target string
		header         map[string]string
		refused        string // "" when allowed
	}{
		{"GET", "/version", nil, ""},
		{"GET", "/readyz/etcd", nil, ""},
		{"GET", "/api", nil, ""},
		{"GET", "/api/v1", nil, ""},
		{"GET", "/apis/apps/v1", nil, ""},
		{"GET", "/openapi/v3/apis/apps/v1?hash=abc", nil, ""},
		{"GET", "/api/v1/namespaces/ns/pods", nil, ""},
		{"GET", "/api/v1/namespaces/ns/pods?watch=true&resourceVersion=1", nil, ""},
		{"GET", "/api/v1/watch/namespaces/ns/pods", nil, ""},
		{"GET", "/api/v1/namespaces/ns/pods/web-0", nil, ""},
		{"GET", "/api/v1/namespaces/ns/pods/web-0/log?follow=true", nil, ""},
		{"GET", "/apis/apps/v1/namespaces/ns/deployments/api/scale", nil, ""},
		{"GET", "/api/v1/namespaces/ns", nil, ""},
		{"GET", "/api/v1/namespaces/ns/status", nil, ""},
		{"GET", "/api/v1/nodes", nil, ""},
		{"GET", "/api/v1/namespaces/ns/secrets/db", nil, ""},
		{"POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", nil, ""},
		{"POST", "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews", nil, ""},
		{"POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews", nil, ""},

		{"DELETE", "/api/v1/namespaces/ns/pods/web-0", nil, "delete pods"},
		{"DELETE", "/api/v1/namespaces/ns/pods", nil, "deletecollection pods"},
		{"POST", "/api/v1/namespaces/ns/configmaps", nil, "create configmaps"},
		{"PUT", "/api/v1/namespaces/ns/configmaps/x", nil, "update configmaps"},
		{"PATCH", "/apis/apps/v1/namespaces/ns/deployments/api/scale", nil, "patch deployments/scale"},
		{"POST", "/api/v1/namespaces/ns/pods/web-0/exec?command=sh", nil, "connect pods/exec"},
		{"GET", "/api/v1/namespaces/ns/pods/web-0/exec?command=sh", nil, "connect pods/exec"},
		{"GET", "/api/v1/namespaces/ns/pods/web-0/attach", nil, "connect pods/attach"},
		{"GET", "/api/v1/namespaces/ns/pods/web-0/portforward", nil, "connect pods/portforward"},
		{"GET", "/api/v1/namespaces/ns/pods/web-0/proxy", nil, "connect pods/proxy"},
		{"GET", "/api/v1/namespaces/ns/services/web/proxy/x", nil, "connect services/proxy"},
		{"GET", "/api/v1/nodes/n1/proxy/run/ns/pod/c", nil, "connect nodes/proxy"},
		{"GET", "/api/v1/namespaces/ns/pods/web-0/ephemeralcontainers", nil, "get pods/ephemeralcontainers"},
		{"GET", "/api/v1/namespaces/ns/pods/web-0/log/x", nil, "get pods/log"},
		{"POST", "/api/v1/namespaces/ns/serviceaccounts/default/token", nil, "create serviceaccounts/token"},
		{"POST", "/apis/authorization.k8s.io/v1/namespaces/ns/localsubjectaccessreviews", nil, "create localsubjectaccessreviews"},
		{"POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", nil, "create subjectaccessreviews"},
		{"POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews?dryRun=All", nil, "create selfsubjectaccessreviews"},
		{"DELETE", "/api/v1/namespaces/ns/pods/web-0?dryRun=All", nil, "delete pods"},
		{"GET", "/api/v1/namespaces/ns/pods", map[string]string{"Impersonate-User": "admin"}, "impersonate pods"},
		{"GET", "/api/v1/namespaces/ns/pods", map[string]string{"Impersonate-Extra-Scopes": "x"}, "impersonate pods"},
		{"GET", "/api/v1/namespaces/ns/pods", map[string]string{"Upgrade": "websocket", "Connection": "Upgrade"}, "list pods"},
		{"GET", "/api/v1/namespaces/ns/pods/%2e%2e/x", nil, "get other"},
		{"GET", "/api/v1/namespaces/ns/pods/../../../nodes/n1/proxy", nil, "get other"},
		{"GET", "/api//v1/pods", nil, "get other"},
		{"GET", "/metrics", nil, "get nonresource"},
		{"GET", "/logs/kube-apiserver.log", nil, "get nonresource"},
		{"GET", "/debug/pprof/", nil, "get other"},
		{"HEAD", "/version", nil, "head nonresource"},
		{"OPTIONS", "/api/v1/pods", nil, "options pods"},
		{"BREW", "/api/v1/pods", nil, "other pods"},
		{"GET", "/api/v1/namespaces/ns/Pods_X", nil, ""}, // a read the API server answers 404
	} {
		reached, refused = nil, nil
		req := httptest.NewRequest(c.method, c.target, strings.NewReader(""))
		if c.method == "POST" {
			req = httptest.NewRequest(c.method, c.target, strings.NewReader(`{"kind":"SelfSubjectAccessReview"}`))
		}
		req.Header.Set("Authorization", "Bearer from-the-client")
		for k, v := range c.header {
			req.Header.Set(k, v)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if c.refused == "" {
			if w.Code != 200 || len(reached) != 1 || len(refused) != 0 {
				t.Errorf("%s %s: code %d, reached %q, refused %q; want it forwarded", c.method, c.target, w.Code, reached, refused)
			}
			continue
		}
		if w.Code != 403 || len(reached) != 0 || len(refused) != 1 || refused[0] != c.refused {
			t.Errorf("%s %s: code %d, reached %q, refused %q; want refused as %q", c.method, c.target, w.Code, reached, refused, c.refused)
			continue
		}
		want := `"message":"ronly: ` + c.refused + ` is blocked (read-only session)","reason":"Forbidden","code":403`
		if !strings.Contains(w.Body.String(), want) || !strings.Contains(w.Body.String(), `"kind":"Status"`) {
			t.Errorf("%s %s: body %s", c.method, c.target, w.Body.String())
		}
	}
}

func upstreamFor(t *testing.T, srv *httptest.Server) *Upstream {
	t.Helper()
	dir := t.TempDir()
	cfg := dir + "/config"
	if err := writeFile(cfg, `apiVersion: v1
kind: Config
clusters:
- name: c
  cluster:
    server: `+srv.URL+`
    insecure-skip-tls-verify: true
users:
- name: u
  user:
    token: upstream-token
contexts:
- name: x
  context: {cluster: c, user: u, namespace: ns}
current-context: x
`); err != nil {
		t.Fatal(err)
	}
	u, err := FromKubeconfig([]string{cfg})
	if err != nil {
		t.Fatal(err)
	}
	if u.Namespace != "ns" {
		t.Errorf("namespace %q", u.Namespace)
	}
	return u
}
