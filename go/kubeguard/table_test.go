package kubeguard

import (
	"math/rand"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// TestTableAsBefore: the route table decides every call as the guard's
// hand-written rules did before the table (kept here as beforeAllowed),
// over random paths made of the API's own segments, with and without
// --kube-hide-secrets; classify's labels are parse's, as before.
func TestTableAsBefore(t *testing.T) {
	vocab := []string{"api", "apis", "v1", "apps", "namespaces", "ns", "pods", "web", "log", "status", "scale",
		"exec", "proxy", "watch", "other", "secrets", "finalize", "authorization.k8s.io", "authentication.k8s.io",
		"selfsubjectaccessreviews", "selfsubjectreviews", "version", "healthz", "readyz", "openapi", "v2", "v3", "metrics"}
	rng := rand.New(rand.NewSource(1))
	tables := []*Guard{{}, {HideSecrets: true}}
	for i := 0; i < 20000; i++ {
		segs := make([]string, 1+rng.Intn(8))
		for j := range segs {
			segs[j] = vocab[rng.Intn(len(vocab))]
		}
		path := "/" + strings.Join(segs, "/")
		for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodDelete, http.MethodPut} {
			query := url.Values{}
			if rng.Intn(4) == 0 {
				query.Set("watch", "true")
			}
			r := httptest.NewRequest(m, path+"?"+query.Encode(), nil)
			req := parse(m, path, query)
			want := beforeAllowed(m, path, req)
			for _, g := range tables {
				c := classify(r, path, true, query, nil)
				if c.Verb != req.verb || c.Resource != req.label() || c.Refuse {
					t.Fatalf("%s %s: classified %+v, parse %+v", m, path, c, req)
				}
				rt := g.API().Table.Match(c.Key)
				if got := rt != nil && rt.Allows(m); got != want {
					t.Fatalf("%s %s (key %s, hide %v): allowed %v, before %v", m, path, c.Key, g.HideSecrets, got, want)
				}
			}
		}
	}
}

// beforeAllowed is allowedPath as it was before the route table.
func beforeAllowed(method, path string, r request) bool {
	switch method {
	case http.MethodGet:
		if !r.resourceRequest {
			segs := strings.Split(strings.Trim(path, "/"), "/")
			switch {
			case path == "/api" || path == "/apis":
				return true
			case segs[0] == "api" && len(segs) == 2:
				return true
			case segs[0] == "apis" && len(segs) <= 3:
				return true
			}
			for _, p := range nonResource {
				if path == p || strings.HasPrefix(path, p+"/") {
					return true
				}
			}
			return false
		}
		sub := subresource(r.resource)
		if sub == "" {
			return r.resource != "other"
		}
		return r.name != "" && !r.deeper && readSubresources[sub]
	case http.MethodPost:
		return r.resourceRequest && r.name == "" && reviews[[2]string{r.group, r.resource}] && !strings.Contains(path, "/namespaces/")
	}
	return false
}
