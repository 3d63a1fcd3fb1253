// Package dockerguard serves, in place of the Docker daemon's socket, a
// socket that forwards only read-only Docker Engine API calls to the real
// daemon.
//
// The guard is the boundary (the docker shim is a courtesy). It is an
// apiguard API: the route table, how a call is named and the JSON shape of
// its errors are here (routes.go); the checks every call passes, the
// refusal and the forwarding are apiguard's. It decides on the request's
// own path (never a cleaned or decoded variant of it), and sends an allowed
// call upstream as a fresh request: same method (GET or HEAD), the exact
// path it decided on, the query re-encoded, no body and only a few harmless
// headers. Everything else gets 403 with a Docker-style JSON error, is
// reported once through Refused and never reaches the daemon.
//
// What passes: GET and HEAD, HTTP/1.x, no body, no Upgrade, a path made only
// of plain characters (letters, digits, "._-:@" and single "/" between
// non-empty segments other than "." and ".."), optionally under a /vX.Y
// version prefix, that is one of the routes in routes.go that let GET and
// HEAD through.
package dockerguard

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"

	"ronly.dev/ronly/go/apiguard"
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
	// The Docker Engine API as the guard serves it.
	api := &apiguard.API{
		Server:         "the Docker daemon",
		MaxPath:        maxPath,
		Table:          routes(),
		Classify:       classify,
		LabelByRoute:   true,
		NewRequest:     newRequest,
		ForwardHeaders: forwardHeaders,
		WriteError:     writeError,
	}
	return apiguard.Serve(ln, &apiguard.Handler{API: api, Transport: tr, Refused: g.Refused})
}

// forwardHeaders are the only request headers sent upstream (the Docker CLI
// sends little else on the allowed routes). Notably absent: Host (set to a
// constant), Connection, Upgrade, X-Registry-Auth, X-Registry-Config.
var forwardHeaders = []string{"User-Agent", "Accept"}

// classify names a call by its method and its route: the route table is
// read with the path less its version prefix.
func classify(r *http.Request, path string, plain bool, _ url.Values, _ error) apiguard.Call {
	c := apiguard.Call{Verb: boundedMethod(r.Method)}
	if plain {
		c.Key = routeKey(path)
	}
	return c
}

func newRequest(r *http.Request, method, path string, query url.Values, _ io.Reader) (*http.Request, error) {
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
	return out.WithContext(r.Context()), nil
}

// writeError is the Docker shape of the guard's errors and refusals:
// {"message": ...}.
func writeError(w http.ResponseWriter, code int, _, msg string) {
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
func boundedMethod(m string) string { return apiguard.BoundedMethod(m) }
