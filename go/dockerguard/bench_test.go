package dockerguard

import (
	"io"
	"net/http"
	"regexp"
	"testing"
)

// BenchmarkStream is the guard's own ceiling on a stream: a stand-in
// upstream writes 32 KiB chunks as fast as it can (b.N of them).
func BenchmarkStream(b *testing.B) {
	u := newUpstream(b)
	chunk := make([]byte, 32<<10)
	n := 0
	u.stream = func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(200)
		for i := 0; i < n; i++ {
			w.Write(chunk)
		}
	}
	g := newGuard(b, u.sock)
	cl := unixClient(g.sock)
	b.SetBytes(int64(len(chunk)))
	n = b.N
	b.ResetTimer()
	resp, err := cl.Get("http://docker/containers/abc/logs?follow=1")
	if err != nil {
		b.Fatal(err)
	}
	got, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil || got != int64(b.N*len(chunk)) {
		b.Fatalf("%d bytes, %v", got, err)
	}
}

// model is an independent statement of what may pass: GET or HEAD of these
// paths, and nothing else.
var model = regexp.MustCompile(`^(/v[0-9]{1,4}(\.[0-9]{1,4})?)?(` +
	`/_ping|/version|/info|/events|/system/df|/containers/json|/images/json|/networks|/volumes` +
	`|/containers/[A-Za-z0-9._:@-]+/(json|logs|top|stats|changes)` +
	`|/(networks|volumes)/[A-Za-z0-9._:@-]+` +
	`|/(images|plugins)/[A-Za-z0-9._:@-]+(/[A-Za-z0-9._:@-]+)*/json` +
	`|/images/[A-Za-z0-9._:@-]+(/[A-Za-z0-9._:@-]+)*/history)$`)

var dotSeg = regexp.MustCompile(`(^|/)\.\.?(/|$)`)

// FuzzDecide: whatever the path, the guard allows only what the model does
// (and no "." or ".." segment), for GET and HEAD only.
func FuzzDecide(f *testing.F) {
	for _, s := range []string{"/containers/json", "/v1.47/images/a/b:c/json", "/images/x/push",
		"/containers/json/../x/kill", "/networks/x", "/plugins/a/json", "/images/x/get/json", "/v1.2/v1.2/info"} {
		f.Add("GET", s)
	}
	f.Fuzz(func(t *testing.T, method, path string) {
		r, err := http.NewRequest("GET", "http://docker", nil)
		if err != nil {
			t.Skip()
		}
		r.URL.Path, r.URL.RawPath, r.RequestURI = path, "", path
		p, ok := plainPath(r)
		if !ok || !isAllowed(boundedMethod(method), p) {
			return
		}
		if method != "GET" && method != "HEAD" {
			t.Fatalf("%s allowed", method)
		}
		if !model.MatchString(p) || dotSeg.MatchString(p) {
			t.Fatalf("%s allowed, not in the model", p)
		}
	})
}
