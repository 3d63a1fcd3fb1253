package kubeguard

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

const applied = `{"apiVersion":"v1","kind":"Secret","metadata":{"name":"db","namespace":"ns"},"stringData":{"password":"hunter2"}}`

// secretJSON is a Secret as the API server sends it: data base64, and the
// applied copy in its annotation.
var secretJSON = `{"kind":"Secret","apiVersion":"v1","metadata":{"name":"db","namespace":"ns","annotations":{"kubectl.kubernetes.io/last-applied-configuration":` +
	strconvQuote(applied) + `}},"data":{"password":"aHVudGVyMg==","user":"YWRtaW4="},"type":"Opaque"}`

func strconvQuote(s string) string { b, _ := json.Marshal(s); return string(b) }

// TestHideSecrets: with HideSecrets, every shape a secrets read can come
// back in (one Secret, a list, a watch stream, a Table with whole objects)
// reaches the client with the keys and no value; a protobuf Accept is
// asked upstream as JSON, and an answer that is not JSON is not served.
// Without it, the same read passes the values on; other resources are
// untouched either way.
func TestHideSecrets(t *testing.T) {
	var accept string
	answers := map[string]string{
		"/api/v1/namespaces/ns/secrets/db":    secretJSON,
		"/api/v1/namespaces/ns/secrets":       `{"kind":"SecretList","apiVersion":"v1","metadata":{},"items":[` + secretJSON + `]}`,
		"/api/v1/secrets":                     `{"kind":"Table","apiVersion":"meta.k8s.io/v1","metadata":{},"rows":[{"cells":["db"],"object":` + secretJSON + `}]}`,
		"/api/v1/watch/namespaces/ns/secrets": `{"type":"ADDED","object":` + secretJSON + "}\n" + `{"type":"MODIFIED","object":` + secretJSON + "}\n",
		"/api/v1/namespaces/ns/configmaps/x":  `{"kind":"ConfigMap","apiVersion":"v1","metadata":{"name":"x"},"data":{"password":"hunter2"}}`,
	}
	up := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		accept = r.Header.Get("Accept")
		if r.URL.Path == "/api/v1/namespaces/ns/secrets/proto" {
			w.Header().Set("Content-Type", "application/vnd.kubernetes.protobuf")
			w.Write([]byte("k8s\x00 hunter2"))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(answers[r.URL.Path]))
	}))
	defer up.Close()
	u := upstreamFor(t, up)
	get := func(hide bool, path, accept string) (int, string) {
		var refused []string
		g := &Guard{Upstream: u, HideSecrets: hide, Refused: func(v, r string) { refused = append(refused, v+" "+r) }}
		h := &handler{g: g, tr: up.Client().Transport}
		req := httptest.NewRequest("GET", path, nil)
		if accept != "" {
			req.Header.Set("Accept", accept)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if len(refused) != 0 {
			t.Errorf("GET %s: refused %q (a redaction is no refusal)", path, refused)
		}
		return w.Code, w.Body.String()
	}
	for path := range answers {
		if strings.Contains(path, "configmaps") {
			continue
		}
		code, body := get(true, path, "")
		if code != 200 || strings.Contains(body, "aHVudGVyMg") || strings.Contains(body, "hunter2") || strings.Contains(body, "YWRtaW4") {
			t.Errorf("hidden: GET %s: %d %s", path, code, body)
		}
		if !strings.Contains(body, `"password":""`) || !strings.Contains(body, `"user":""`) || !strings.Contains(body, `\"password\":\"\"`) {
			t.Errorf("hidden: GET %s lost the keys: %s", path, body)
		}
		if _, body := get(false, path, ""); !strings.Contains(body, "aHVudGVyMg==") || !strings.Contains(body, "hunter2") {
			t.Errorf("not hidden: GET %s: %s", path, body)
		}
	}
	// A watch: one event a line, each whole.
	_, body := get(true, "/api/v1/watch/namespaces/ns/secrets", "")
	lines := strings.Split(strings.TrimSpace(body), "\n")
	if len(lines) != 2 {
		t.Errorf("watch: %d events: %s", len(lines), body)
	}
	for _, l := range lines {
		var ev struct {
			Type   string
			Object struct{ Data map[string]string }
		}
		if err := json.Unmarshal([]byte(l), &ev); err != nil || ev.Type == "" || len(ev.Object.Data) != 2 {
			t.Errorf("watch event %q: %v", l, err)
		}
	}
	if _, body := get(true, "/api/v1/namespaces/ns/configmaps/x", ""); !strings.Contains(body, "hunter2") {
		t.Errorf("a config map was changed: %s", body)
	}
	get(true, "/api/v1/namespaces/ns/secrets/db", "application/vnd.kubernetes.protobuf,application/json")
	if accept != "application/json" {
		t.Errorf("upstream asked with Accept %q", accept)
	}
	get(true, "/api/v1/namespaces/ns/secrets", "application/json;as=Table;v=v1;g=meta.k8s.io,application/cbor,application/json")
	if accept != "application/json;as=Table;v=v1;g=meta.k8s.io,application/json" {
		t.Errorf("upstream asked with Accept %q", accept)
	}
	if code, body := get(true, "/api/v1/namespaces/ns/secrets/proto", ""); code != http.StatusBadGateway || strings.Contains(body, "hunter2") {
		t.Errorf("protobuf answer: %d %s", code, body)
	}
	if _, body := get(false, "/api/v1/namespaces/ns/secrets/proto", "application/vnd.kubernetes.protobuf"); !strings.Contains(body, "hunter2") || accept != "application/vnd.kubernetes.protobuf" {
		t.Errorf("not hidden: protobuf answer %q asked with %q", body, accept)
	}
}

// BenchmarkHideSecretsWatch: one watch event of a Secret (with its
// last-applied annotation) through the guard, redacted, per op.
func BenchmarkHideSecretsWatch(b *testing.B) {
	event := []byte(`{"type":"MODIFIED","object":` + secretJSON + "}\n")
	for _, hide := range []bool{false, true} {
		b.Run(map[bool]string{false: "plain", true: "hidden"}[hide], func(b *testing.B) {
			up := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				for i := 0; i < b.N; i++ {
					w.Write(event)
				}
			}))
			defer up.Close()
			srv, _ := url.Parse(up.URL)
			u := &Upstream{Server: srv, token: "upstream-token"}
			h := &handler{g: &Guard{Upstream: u, HideSecrets: hide}, tr: up.Client().Transport}
			b.ResetTimer()
			w := httptest.NewRecorder()
			h.ServeHTTP(w, httptest.NewRequest("GET", "/api/v1/namespaces/ns/secrets?watch=1", nil))
			if hide && strings.Contains(w.Body.String(), "aHVudGVyMg") {
				b.Fatal("not redacted")
			}
		})
	}
}
