package dockerguard

import (
	"math/rand"
	"net/http"
	"strings"
	"testing"
)

// TestTableAsBefore: the route table decides and labels every path as the
// guard's hand-written matcher did before the table (kept here as
// beforeLabel), over random paths made of the routes' own segments.
func TestTableAsBefore(t *testing.T) {
	vocab := []string{"v1.47", "v1", "x", "containers", "images", "json", "logs", "library", "ubuntu", "get",
		"history", "plugins", "networks", "volumes", "exec", "start", "_ping", "events", "swarm", "secrets", "update",
		"system", "df", "attach", "ws", "distribution", "{id}", "{name}"}
	rng := rand.New(rand.NewSource(1))
	for i := 0; i < 50000; i++ {
		segs := make([]string, 1+rng.Intn(6))
		for j := range segs {
			segs[j] = vocab[rng.Intn(len(vocab))]
		}
		path := "/" + strings.Join(segs, "/")
		if strings.Contains(path, "{") {
			continue // no plain path has braces
		}
		want := beforeLabel(path)
		if got := routeLabel(path); got != want {
			t.Fatalf("%s: label %q, before %q", path, got, want)
		}
		for _, m := range []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodDelete} {
			wantOK := (m == http.MethodGet || m == http.MethodHead) && allowed[want]
			if got := isAllowed(m, path); got != wantOK {
				t.Fatalf("%s %s: allowed %v, before %v", m, path, got, wantOK)
			}
		}
	}
}

// beforeLabel is routeLabel as it was before the route table.
func beforeLabel(path string) string {
	segs := strings.Split(strings.TrimPrefix(path, "/"), "/")
	if len(segs) > 1 && isVersion(segs[0]) {
		segs = segs[1:]
	}
	for _, t := range templates {
		if beforeMatches(strings.Split(t[1:], "/"), segs) {
			return t
		}
	}
	return "other"
}

func beforeMatches(tmpl, segs []string) bool {
	for i, t := range tmpl {
		if t == "{name}" {
			rest := tmpl[i+1:]
			if len(segs)-i < 1+len(rest) {
				return false
			}
			tail := segs[len(segs)-len(rest):]
			for j := range rest {
				if rest[j] != tail[j] {
					return false
				}
			}
			return true
		}
		if i >= len(segs) {
			return false
		}
		if t != "{id}" && t != segs[i] {
			return false
		}
	}
	return len(segs) == len(tmpl)
}
