// Package kubeguard serves, in place of a Kubernetes API server and the
// credentials for it, an HTTPS endpoint that forwards only read-only calls
// to the real API server, authenticated with the real credentials, which
// only the guard holds.
//
// The guard is the boundary (the kubectl shim is a courtesy). It parses each
// request with net/http's server, decides on the request's own path (never a
// cleaned or decoded variant of it), and sends an allowed call upstream as a
// fresh request: the same method, the exact path it decided on, the query
// re-encoded, a few harmless headers, and its own Authorization. Whatever
// credential the client sent (an in-cluster client sends the token file's
// contents, which read empty inside ronly) is ignored. Everything else gets
// a Kubernetes Status with code 403 whose message names ronly, is reported
// once through Refused and never reaches the API server. What passes is
// listed in routes.go.
package kubeguard

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Guard forwards read-only Kubernetes API calls to Upstream.
type Guard struct {
	Upstream *Upstream
	// Refused is called for each refused call with bounded labels: the
	// Kubernetes verb (get, list, create, delete, connect, impersonate...)
	// and the resource ("pods", "pods/exec", "nonresource", "other").
	Refused func(verb, resource string)
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
	var protos http.Protocols
	protos.SetHTTP1(true) // no HTTP/2: one parser, one framing
	srv := &http.Server{
		Handler:           &handler{g: g, tr: tr},
		Protocols:         &protos,
		ReadHeaderTimeout: 30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          log.New(io.Discard, "", 0), // a library prints nothing
	}
	err := srv.Serve(ln)
	srv.Close()
	if errors.Is(err, net.ErrClosed) || errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

type handler struct {
	g  *Guard
	tr http.RoundTripper
}

// forwardHeaders are the only request headers sent upstream. Notably absent:
// Authorization (the guard sets its own), Impersonate-* (refused before),
// Connection, Upgrade, X-Stream-Protocol-Version.
var forwardHeaders = []string{"Accept", "User-Agent", "Content-Type", "Kubectl-Command", "Kubectl-Session", "Audit-Id"}

// hopHeaders are response headers that belong to one hop and are not copied
// back to the client.
var hopHeaders = map[string]bool{
	"Connection":          true,
	"Keep-Alive":          true,
	"Proxy-Authenticate":  true,
	"Proxy-Authorization": true,
	"Proxy-Connection":    true,
	"Te":                  true,
	"Trailer":             true,
	"Transfer-Encoding":   true,
	"Upgrade":             true,
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path, plain := plainPath(r)
	query, qerr := url.ParseQuery(r.URL.RawQuery)
	req := request{verb: strings.ToLower(boundedMethod(r.Method)), resource: "other", resourceRequest: true}
	if plain && qerr == nil {
		req = parse(r.Method, path, query)
	}
	switch {
	case !plain || qerr != nil:
		h.refuse(w, req)
		return
	case impersonates(r):
		req.verb = "impersonate"
		h.refuse(w, req)
		return
	case !allowedRequest(r) || query.Has("dryRun") || !allowedPath(r.Method, path, req):
		h.refuse(w, req)
		return
	}
	body := io.Reader(http.NoBody)
	if r.Method == http.MethodPost {
		b, err := io.ReadAll(io.LimitReader(r.Body, maxReviewBody+1))
		if err != nil || len(b) > maxReviewBody {
			h.refuse(w, req)
			return
		}
		body = bytes.NewReader(b)
	} else if r.ContentLength != 0 || len(r.TransferEncoding) > 0 {
		h.refuse(w, req) // a GET with a body: nothing the API server reads
		return
	}
	u := *h.g.Upstream.Server
	u.Path = strings.TrimSuffix(u.Path, "/") + path
	u.RawPath = ""
	u.RawQuery = query.Encode()
	out, err := http.NewRequestWithContext(r.Context(), r.Method, u.String(), body)
	if err != nil {
		h.refuse(w, req)
		return
	}
	for _, k := range forwardHeaders {
		if v := r.Header.Values(k); len(v) > 0 {
			out.Header[k] = append([]string(nil), v...)
		}
	}
	if _, ok := out.Header["User-Agent"]; !ok {
		out.Header.Set("User-Agent", "") // no Go default
	}
	if err := h.g.Upstream.authorize(out); err != nil {
		writeStatus(w, http.StatusBadGateway, "InternalError", "ronly: no credential for the Kubernetes API server: "+err.Error())
		return
	}
	resp, err := h.tr.RoundTrip(out)
	if err != nil {
		if r.Context().Err() == nil {
			writeStatus(w, http.StatusBadGateway, "ServiceUnavailable", "ronly: the Kubernetes API server cannot be reached")
		}
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusSwitchingProtocols {
		writeStatus(w, http.StatusBadGateway, "InternalError", "ronly: the Kubernetes API server switched protocols")
		return
	}
	for k, v := range resp.Header {
		if !hopHeaders[k] {
			w.Header()[k] = v
		}
	}
	w.WriteHeader(resp.StatusCode)
	rc := http.NewResponseController(w)
	_ = rc.Flush() // headers now: watches and `logs -f` wait on them
	buf := make([]byte, 32<<10)
	for {
		n, rerr := resp.Body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return
			}
			if rc.Flush() != nil {
				return
			}
		}
		if rerr != nil {
			// io.EOF: done. Anything else while the client is still
			// there: the upstream stream broke; abort the connection so
			// that the client sees a truncated body, not a complete one.
			if rerr != io.EOF && r.Context().Err() == nil {
				panic(http.ErrAbortHandler)
			}
			return
		}
	}
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

// allowedRequest holds the requirements on everything but method and path:
// HTTP/1.x, no protocol switch.
func allowedRequest(r *http.Request) bool {
	if r.ProtoMajor != 1 {
		return false
	}
	if r.Header.Get("Upgrade") != "" {
		return false
	}
	for _, v := range r.Header.Values("Connection") {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), "upgrade") {
				return false
			}
		}
	}
	return true
}

// refusedBodyGrace bounds how long the rest of a refused call's body is read.
const refusedBodyGrace = 5 * time.Second

func (h *handler) refuse(w http.ResponseWriter, req request) {
	res := req.label()
	if f := h.g.Refused; f != nil {
		f(req.verb, res)
	}
	// Serve nothing more on this connection; a body that never ends is
	// given a few seconds (net/http reads some of it so that the client
	// reads the 403, not a broken pipe).
	w.Header().Set("Connection", "close")
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(refusedBodyGrace))
	writeStatus(w, http.StatusForbidden, "Forbidden", "ronly: "+req.verb+" "+res+" is blocked (read-only session)")
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
func boundedMethod(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut,
		http.MethodPatch, http.MethodDelete, http.MethodOptions,
		http.MethodConnect, http.MethodTrace:
		return m
	}
	return "OTHER"
}
