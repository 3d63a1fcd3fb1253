// Package kubeguard serves, in place of a Kubernetes API server and the
// credentials for it, an HTTPS endpoint that forwards only read-only calls
// to the real API server, authenticated with the real credentials, which
// only the guard holds.
//
// The guard is the boundary (the kubectl shim is a courtesy). It is an
// apiguard API: the route table, how a call is named and the Status shape
// of its errors are here (routes.go); the checks every call passes, the
// refusal and the forwarding are apiguard's. It decides on the request's own
// path (never a cleaned or decoded variant of it), and sends an allowed
// call upstream as a fresh request: the same method, the exact path it
// decided on, the query re-encoded, a few harmless headers, and its own
// Authorization. Whatever credential the client sent (an in-cluster client
// sends the token file's contents, which read empty inside ronly) is
// ignored. Everything else gets a Kubernetes Status with code 403 whose
// message names ronly, is reported once through Refused and never reaches
// the API server. What passes is listed in routes.go.
package kubeguard

import (
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"

	"ronly.dev/ronly/go/apiguard"
)

// Guard forwards read-only Kubernetes API calls to Upstream.
type Guard struct {
	Upstream *Upstream
	// Refused is called for each refused call with bounded labels: the
	// Kubernetes verb (get, list, create, delete, connect, impersonate...)
	// and the resource ("pods", "pods/exec", "nonresource", "other").
	Refused func(verb, resource string)
	// HideSecrets: reads of secrets (get, list, watch, in every
	// representation the guard lets through) answer with each value of a
	// Secret's data and stringData empty, its keys kept (secrets.go).
	HideSecrets bool

	once sync.Once
	api  *apiguard.API
}

// maxReviewBody bounds the body of an allowed review (a few hundred bytes
// in practice).
const maxReviewBody = 64 << 10

// Serve accepts connections on ln until ln is closed; it returns nil then.
// ln is the guard's TLS listener (Listen). Connections still open when ln is
// closed (a watch, a `logs -f`) are closed before Serve returns.
func (g *Guard) Serve(ln net.Listener) error {
	if g.Upstream == nil || g.Upstream.Server == nil {
		return errors.New("kubeguard: no upstream API server")
	}
	tr := g.Upstream.transport()
	defer tr.CloseIdleConnections()
	return apiguard.Serve(ln, &handler{g: g, tr: tr})
}

type handler struct {
	g  *Guard
	tr http.RoundTripper
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	(&apiguard.Handler{API: h.g.API(), Transport: h.tr, Refused: h.g.Refused}).ServeHTTP(w, r)
}

// API is the Kubernetes API as the guard serves it.
func (g *Guard) API() *apiguard.API {
	g.once.Do(func() {
		up := g.Upstream
		g.api = &apiguard.API{
			Server:         "the Kubernetes API server",
			MaxPath:        2048,
			Table:          table(g.HideSecrets),
			Classify:       classify,
			NewRequest:     up.newRequest,
			ForwardHeaders: forwardHeaders,
			Authorize:      up.authorize,
			WriteError:     writeStatus,
		}
	})
	return g.api
}

// forwardHeaders are the only request headers sent upstream. Notably absent:
// Authorization (the guard sets its own), Impersonate-* (refused before),
// Connection, Upgrade, X-Stream-Protocol-Version.
var forwardHeaders = []string{"Accept", "User-Agent", "Content-Type", "Kubectl-Command", "Kubectl-Session", "Audit-Id"}

// newRequest is the upstream request: the API server's URL with the path
// decided on.
func (u *Upstream) newRequest(r *http.Request, method, path string, query url.Values, body io.Reader) (*http.Request, error) {
	out := *u.Server
	out.Path = strings.TrimSuffix(out.Path, "/") + path
	out.RawPath = ""
	out.RawQuery = query.Encode()
	return http.NewRequestWithContext(r.Context(), method, out.String(), body)
}

// classify names a call as the API server would (parse), refusing outright
// an unplain path or query, impersonation (verb "impersonate") and dryRun
// (a dry-run write is still a write request, and admission webhooks see
// it).
func classify(r *http.Request, path string, plain bool, query url.Values, qerr error) apiguard.Call {
	req := request{verb: strings.ToLower(boundedMethod(r.Method)), resource: "other", resourceRequest: true}
	if plain && qerr == nil {
		req = parse(r.Method, path, query)
	}
	c := apiguard.Call{Key: routeKey(path, req), Verb: req.verb, Resource: req.label()}
	switch {
	case !plain || qerr != nil:
		c.Refuse = true
	case impersonates(r):
		c.Verb = "impersonate"
		c.Refuse = true
	case query.Has("dryRun"):
		c.Refuse = true
	}
	return c
}

// impersonates says whether r carries an impersonation header.
func impersonates(r *http.Request) bool {
	for k := range r.Header {
		if strings.HasPrefix(strings.ToLower(k), "impersonate-") {
			return true
		}
	}
	return false
}

// status is a Kubernetes meta/v1 Status: kubectl prints its message as
// `Error from server (Forbidden): <message>`.
type status struct {
	Kind       string   `json:"kind"`
	APIVersion string   `json:"apiVersion"`
	Metadata   struct{} `json:"metadata"`
	Status     string   `json:"status"`
	Message    string   `json:"message"`
	Reason     string   `json:"reason"`
	Code       int      `json:"code"`
}

// writeStatus is the Kubernetes shape of the guard's errors and refusals.
func writeStatus(w http.ResponseWriter, code int, reason, msg string) {
	body, _ := json.Marshal(status{Kind: "Status", APIVersion: "v1", Status: "Failure", Message: msg, Reason: reason, Code: code})
	body = append(body, '\n')
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_, _ = w.Write(body)
}

// boundedMethod is the request's method, or "OTHER" for one that is not a
// standard HTTP method: the refusal label must be bounded.
func boundedMethod(m string) string { return apiguard.BoundedMethod(m) }
