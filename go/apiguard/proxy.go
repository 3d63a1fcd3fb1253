package apiguard

import (
	"bytes"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// API is what sets one guarded API apart from another: its route table,
// how it names a call, how it builds the upstream request, and the shape of
// its errors. Everything else (the checks every call passes, the refusal,
// the forwarding and streaming) is Handler's.
type API struct {
	// Server names the upstream in error messages ("the Docker daemon").
	Server  string
	MaxPath int // the longest path PlainPath lets through
	Table   *Table
	// Classify names a call: the key its route is looked up by, and the
	// labels a refusal is counted and worded with. plain says whether path
	// passed PlainPath; qerr is the query's parse error. A Call with
	// Refuse set is refused whatever its route.
	Classify func(r *http.Request, path string, plain bool, query url.Values, qerr error) Call
	// LabelByRoute: the resource label is the matched route's Label
	// ("other" when none matched), not Classify's.
	LabelByRoute bool
	// NewRequest builds the upstream request for an allowed call: the
	// method and path decided on, the query re-encoded. An error refuses
	// the call.
	NewRequest func(r *http.Request, method, path string, query url.Values, body io.Reader) (*http.Request, error)
	// ForwardHeaders are the only request headers sent upstream.
	ForwardHeaders []string
	// Authorize, when set, puts the guard's own credential on an upstream
	// request; an error answers 502 (NoCredential).
	Authorize func(out *http.Request) error
	// WriteError writes an error in the API's shape: code, a reason (the
	// Kubernetes Status reason; Docker's shape has none) and a message.
	WriteError func(w http.ResponseWriter, code int, reason, msg string)
}

// Call is what Classify made of a request.
type Call struct {
	Key      string // the path the route table is read with; "" matches no route
	Verb     string // bounded label: the HTTP method (Docker) or Kubernetes' verb
	Resource string // bounded label: the route (Docker) or Kubernetes' resource
	Refuse   bool   // refused before any route is looked at
}

// The reasons a guard answers 502, each worded by the API's WriteError.
const (
	ReasonUnreachable = "ServiceUnavailable"
	ReasonInternal    = "InternalError"
)

// Handler serves one API: each call passes the checks every API shares
// (HTTP/1.x, no protocol switch, a plain path, an allowed route and
// method, a body only where the route takes one), is refused in the API's
// shape and reported once through Refused, or is sent upstream as a fresh
// request through Transport, its answer streamed back.
type Handler struct {
	API       *API
	Transport http.RoundTripper
	// Refused is called once for each refused call, with its labels.
	Refused func(verb, resource string)
}

// hopHeaders are response headers that belong to one hop and are not
// copied back to the client.
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

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a := h.API
	path, plain := PlainPath(r, a.MaxPath)
	query, qerr := url.ParseQuery(r.URL.RawQuery)
	c := a.Classify(r, path, plain, query, qerr)
	route := a.Table.Match(c.Key)
	if a.LabelByRoute {
		c.Resource = "other"
		if route != nil {
			c.Resource = route.Label()
		}
	}
	if c.Refuse || !plain || qerr != nil || !sameProtocol(r) || route == nil || !route.Allows(r.Method) {
		h.refuse(w, c)
		return
	}
	body := io.Reader(http.NoBody)
	hasBody := r.ContentLength != 0 || len(r.TransferEncoding) > 0
	switch {
	case !hasBody:
	case r.Method == http.MethodGet || r.Method == http.MethodHead || route.MaxBody == 0:
		h.refuse(w, c) // a body the route does not take
		return
	default:
		b, err := io.ReadAll(io.LimitReader(r.Body, route.MaxBody+1))
		if err != nil || int64(len(b)) > route.MaxBody {
			h.refuse(w, c)
			return
		}
		body = bytes.NewReader(b)
	}
	out, err := a.NewRequest(r, r.Method, path, query, body)
	if err != nil {
		h.refuse(w, c)
		return
	}
	for _, k := range a.ForwardHeaders {
		if v := r.Header.Values(k); len(v) > 0 {
			out.Header[k] = append([]string(nil), v...)
		}
	}
	if _, ok := out.Header["User-Agent"]; !ok {
		out.Header.Set("User-Agent", "") // no Go default
	}
	if route.Hook != nil {
		route.Hook.Request(out)
	}
	if a.Authorize != nil {
		if err := a.Authorize(out); err != nil {
			a.WriteError(w, http.StatusBadGateway, ReasonInternal, "ronly: no credential for "+a.Server+": "+err.Error())
			return
		}
	}
	resp, err := h.Transport.RoundTrip(out)
	if err != nil {
		if r.Context().Err() == nil {
			a.WriteError(w, http.StatusBadGateway, ReasonUnreachable, "ronly: "+a.Server+" cannot be reached")
		}
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusSwitchingProtocols {
		// Never asked for; never passed on.
		a.WriteError(w, http.StatusBadGateway, ReasonInternal, "ronly: "+a.Server+" switched protocols")
		return
	}
	src := io.Reader(resp.Body)
	if route.Hook != nil && r.Method != http.MethodHead {
		if src, err = route.Hook.Response(resp); err != nil {
			a.WriteError(w, http.StatusBadGateway, ReasonInternal, "ronly: "+err.Error())
			return
		}
		resp.Header.Del("Content-Length") // the hook's body has its own
	}
	for k, v := range resp.Header {
		if !hopHeaders[k] {
			w.Header()[k] = v
		}
	}
	w.WriteHeader(resp.StatusCode)
	if r.Method == http.MethodHead {
		return
	}
	rc := http.NewResponseController(w)
	_ = rc.Flush() // headers now: watches, `logs -f` and events wait on them
	buf := make([]byte, 32<<10)
	for {
		n, rerr := src.Read(buf)
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
			// there: the upstream stream broke (or a hook found it
			// unservable); abort the connection so that the client sees
			// a truncated body, not a complete one.
			if rerr != io.EOF && r.Context().Err() == nil {
				panic(http.ErrAbortHandler)
			}
			return
		}
	}
}

// sameProtocol holds the requirements on everything but method, path and
// body: HTTP/1.x, no protocol switch.
func sameProtocol(r *http.Request) bool {
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

func (h *Handler) refuse(w http.ResponseWriter, c Call) {
	if f := h.Refused; f != nil {
		f(c.Verb, c.Resource)
	}
	// Serve nothing more on this connection. net/http still reads up to
	// 256 KiB of the refused call's body before closing (so that a client
	// still sending it reads the 403, not a broken pipe); a body that never
	// ends is given a few seconds.
	w.Header().Set("Connection", "close")
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(refusedBodyGrace))
	h.API.WriteError(w, http.StatusForbidden, "Forbidden", "ronly: "+c.Verb+" "+c.Resource+" is blocked (read-only session)")
}

// BoundedMethod is the request's method, or "OTHER" for one that is not a
// standard HTTP method: a refusal's label must be bounded.
func BoundedMethod(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut,
		http.MethodPatch, http.MethodDelete, http.MethodOptions,
		http.MethodConnect, http.MethodTrace:
		return m
	}
	return "OTHER"
}

// Serve serves h on ln until ln is closed; it returns nil then.
// Connections still open when ln is closed (a watch, `docker events`) are
// closed before Serve returns.
func Serve(ln net.Listener, h http.Handler) error {
	var protos http.Protocols
	protos.SetHTTP1(true) // no HTTP/2 (h2c either): one parser, one framing
	srv := &http.Server{
		Handler:           h,
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
