package apiguard

import (
	"io"
	"net/http"
	"strings"
)

// Route is one row of an API's route table: a path pattern, the methods it
// lets through, and what else an allowed call may carry or needs.
//
// A pattern is a path of "/"-separated segments: a literal segment matches
// itself, "{x}" any one segment, "{x...}" one or more. The table is read
// top to bottom and the first row whose pattern matches a call's key is
// the call's route, whatever the method: a row with no Methods names calls
// (the Docker guard labels a refusal by its route) and lets none through.
type Route struct {
	Pattern string
	Methods []string // the methods that pass; none: the route is refused
	// MaxBody is the largest request body a call by a method other than
	// GET and HEAD may carry, read whole before it is forwarded; 0: none.
	// GET and HEAD never carry one.
	MaxBody int64
	// Hook, when set, takes part in forwarding an allowed call.
	Hook Hook

	segs []string
}

// Hook is a route's special handling of an allowed call.
type Hook interface {
	// Request adjusts the request sent upstream (headers only: its method
	// and path are what the guard decided on).
	Request(out *http.Request)
	// Response returns what the client gets as the body of resp in place
	// of resp.Body. It is read as it is sent (watches stream through it);
	// a read error other than io.EOF aborts the client's connection, so
	// that the client sees a truncated answer, never a complete one. An
	// error means the response cannot be served at all: the client gets
	// a 502 in the API's shape.
	Response(resp *http.Response) (io.Reader, error)
}

// Label is the route's pattern as a bounded label: "{x...}" written "{x}".
func (rt *Route) Label() string { return strings.ReplaceAll(rt.Pattern, "...}", "}") }

// Allows says whether the route lets method through.
func (rt *Route) Allows(method string) bool {
	for _, m := range rt.Methods {
		if m == method {
			return true
		}
	}
	return false
}

// Table is an API's route table. Build it with NewTable.
type Table struct{ routes []Route }

// NewTable returns the table of routes, in their order.
func NewTable(routes ...Route) *Table {
	t := &Table{routes: append([]Route(nil), routes...)}
	for i := range t.routes {
		t.routes[i].segs = strings.Split(strings.TrimPrefix(t.routes[i].Pattern, "/"), "/")
	}
	return t
}

// Match returns the first route whose pattern matches key (a path), nil if
// none does.
func (t *Table) Match(key string) *Route {
	if key == "" || key[0] != '/' {
		return nil
	}
	segs := strings.Split(key[1:], "/")
	for i := range t.routes {
		if match(t.routes[i].segs, segs) {
			return &t.routes[i]
		}
	}
	return nil
}

// match reports whether the segments segs fit the pattern's.
func match(pat, segs []string) bool {
	for i, p := range pat {
		if strings.HasPrefix(p, "{") && strings.HasSuffix(p, "...}") {
			// One or more segments, then the rest of the pattern.
			for n := 1; i+n <= len(segs); n++ {
				if match(pat[i+1:], segs[i+n:]) {
					return true
				}
			}
			return false
		}
		if i >= len(segs) {
			return false
		}
		if !(strings.HasPrefix(p, "{") && strings.HasSuffix(p, "}")) && p != segs[i] {
			return false
		}
	}
	return len(segs) == len(pat)
}
