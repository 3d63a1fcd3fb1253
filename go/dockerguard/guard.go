// Package dockerguard serves, in place of the Docker daemon's socket, a
// socket that forwards only read-only Docker Engine API calls to the real
// daemon.
//
// The guard is the boundary (the docker shim is a courtesy). It parses each
// request with net/http's server, decides on the request's own path (never a
// cleaned or decoded variant of it), and sends an allowed call upstream as a
// fresh request: same method (GET or HEAD), the exact path it decided on, the
// query re-encoded, no body and only a few harmless headers. Everything else
// gets 403 with a Docker-style JSON error, is reported once through Refused
// and never reaches the daemon.
//
// What passes: GET and HEAD, HTTP/1.x, no body, no Upgrade, a path made only
// of plain characters (letters, digits, "._-:@" and single "/" between
// non-empty segments other than "." and ".."), optionally under a /vX.Y
// version prefix, that is one of the routes in allowed below.
package dockerguard

import (
	"context"
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

// Guard forwards read-only Docker Engine API calls to the daemon at Upstream.
type Guard struct {
	Upstream string                     // the real daemon's unix socket path
	Refused  func(method, route string) // called for each refused call; route is a bounded template like "/containers/{id}/kill"
}

// Serve accepts connections on ln until ln is closed; it returns nil then.
// Connections still open when ln is closed (a `docker events` stream, say)
// are closed before Serve returns.
func (g *Guard) Serve(ln net.Listener) error {
	if g.Upstream == "" {
		return errors.New("dockerguard: no upstream socket")
	}
	upstream := g.Upstream
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", upstream)
		},
		// The daemon does not compress; asking for gzip would only make
		// the transport buffer and decode what should stream through.
		DisableCompression:  true,
		MaxIdleConnsPerHost: 8,
		IdleConnTimeout:     90 * time.Second,
	}
	defer tr.CloseIdleConnections()
	var protos http.Protocols
	protos.SetHTTP1(true) // no h2c: one parser, one framing
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
	tr *http.Transport
}

// forwardHeaders are the only request headers sent upstream (the Docker CLI
// sends little else on the allowed routes). Notably absent: Host (set to a
// constant), Connection, Upgrade, X-Registry-Auth, X-Registry-Config.
var forwardHeaders = []string{"User-Agent", "Accept"}

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
	method := boundedMethod(r.Method)
	path, ok := plainPath(r)
	route := "other"
	if ok {
		route = routeLabel(path)
	}
	if !ok || !allowedRequest(r) || !isAllowed(method, path) {
		h.refuse(w, method, route)
		return
	}
	query, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		h.refuse(w, method, route)
		return
	}
	out := &http.Request{
		Method:     method,
		URL:        &url.URL{Scheme: "http", Host: "docker", Path: path, RawQuery: query.Encode()},
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     make(http.Header),
		Body:       http.NoBody,
		Host:       "docker",
	}
	out = out.WithContext(r.Context())
	for _, k := range forwardHeaders {
		if v := r.Header.Values(k); len(v) > 0 {
			out.Header[k] = append([]string(nil), v...)
		}
	}
	if _, ok := out.Header["User-Agent"]; !ok {
		out.Header.Set("User-Agent", "") // no Go default
	}
	resp, err := h.tr.RoundTrip(out)
	if err != nil {
		if r.Context().Err() == nil {
			writeError(w, http.StatusBadGateway, "ronly: the Docker daemon cannot be reached")
		}
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusSwitchingProtocols {
		// Never asked for; never passed on.
		writeError(w, http.StatusBadGateway, "ronly: the Docker daemon switched protocols")
		return
	}
	for k, v := range resp.Header {
		if !hopHeaders[k] {
			w.Header()[k] = v
		}
	}
	w.WriteHeader(resp.StatusCode)
	if method == http.MethodHead {
		return
	}
	rc := http.NewResponseController(w)
	_ = rc.Flush() // headers now: `docker logs -f` and events wait on them
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

// allowedRequest holds the requirements on everything but method and path:
// HTTP/1.x, no body, no protocol switch.
func allowedRequest(r *http.Request) bool {
	if r.ProtoMajor != 1 {
		return false
	}
	if r.ContentLength != 0 || len(r.TransferEncoding) > 0 {
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

func (h *handler) refuse(w http.ResponseWriter, method, route string) {
	if f := h.g.Refused; f != nil {
		f(method, route)
	}
	// Serve nothing more on this connection. net/http still reads up to
	// 256 KiB of the refused call's body before closing (so that a client
	// still sending it reads the 403, not a broken pipe); a body that never
	// ends is given a few seconds.
	w.Header().Set("Connection", "close")
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(refusedBodyGrace))
	writeError(w, http.StatusForbidden, "ronly: "+method+" "+route+" is blocked (read-only session)")
}

func writeError(w http.ResponseWriter, code int, msg string) {
	body, _ := json.Marshal(struct {
		Message string `json:"message"`
	}{msg})
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
