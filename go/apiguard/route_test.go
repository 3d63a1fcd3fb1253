package apiguard

import "testing"

// TestMatch: the first row whose pattern fits names the call, whatever
// the method; {x} is one segment, {x...} one or more, also before literal
// segments; a key that is not a path matches nothing.
func TestMatch(t *testing.T) {
	tb := NewTable(
		Route{Pattern: "/images/json", Methods: []string{"GET"}},
		Route{Pattern: "/images/{name...}/json", Methods: []string{"GET", "HEAD"}},
		Route{Pattern: "/images/{name...}"},
		Route{Pattern: "/c/{id}/logs", Methods: []string{"GET"}},
	)
	for _, c := range []struct {
		key, label string // "" label: no route
		get        bool
	}{
		{"/images/json", "/images/json", true},
		{"/images/library/ubuntu/json", "/images/{name}/json", true},
		{"/images/ubuntu/json", "/images/{name}/json", true},
		{"/images/ubuntu", "/images/{name}", false},
		{"/images/a/b/c", "/images/{name}", false},
		{"/images", "", false},
		{"/c/x/logs", "/c/{id}/logs", true},
		{"/c/x/y/logs", "", false},
		{"/c//logs", "/c/{id}/logs", true}, // PlainPath refuses empty segments before
		{"c/x/logs", "", false},
		{"", "", false},
	} {
		r := tb.Match(c.key)
		switch {
		case c.label == "" && r != nil:
			t.Errorf("%q matched %q", c.key, r.Pattern)
		case c.label != "" && (r == nil || r.Label() != c.label):
			t.Errorf("%q: %v, want %q", c.key, r, c.label)
		case r != nil && r.Allows("GET") != c.get:
			t.Errorf("%q: GET allowed %v", c.key, !c.get)
		case r != nil && r.Allows("DELETE"):
			t.Errorf("%q: DELETE allowed", c.key)
		}
	}
}
