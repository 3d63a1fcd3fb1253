package dockerguard

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// upstream is a stand-in Docker daemon on a unix socket that records every
// request reaching it.
type upstream struct {
	sock string
	srv  *httptest.Server

	mu   sync.Mutex
	reqs []seen

	// stream, if set, serves .../logs and /events: see TestStreaming.
	stream func(w http.ResponseWriter, r *http.Request)
}

type seen struct {
	Method, URI, Host string
	Header            http.Header
	Body              string
}

func newUpstream(t testing.TB) *upstream {
	t.Helper()
	u := &upstream{sock: filepath.Join(t.TempDir(), "docker.sock")}
	ln, err := net.Listen("unix", u.sock)
	if err != nil {
		t.Fatal(err)
	}
	u.srv = httptest.NewUnstartedServer(http.HandlerFunc(u.serve))
	u.srv.Listener.Close()
	u.srv.Listener = ln
	u.srv.Start()
	t.Cleanup(u.srv.Close)
	return u
}

func (u *upstream) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	u.mu.Lock()
	u.reqs = append(u.reqs, seen{r.Method, r.RequestURI, r.Host, r.Header.Clone(), string(body)})
	stream := u.stream
	u.mu.Unlock()
	if stream != nil && (strings.HasSuffix(r.URL.Path, "/logs") || strings.HasSuffix(r.URL.Path, "/events")) {
		stream(w, r)
		return
	}
	w.Header().Set("Api-Version", "1.47")
	w.Header().Set("Content-Type", "application/json")
	if strings.HasSuffix(r.URL.Path, "/_ping") {
		w.Header().Set("Content-Length", "2")
		if r.Method == http.MethodHead {
			return
		}
		io.WriteString(w, "OK")
		return
	}
	json.NewEncoder(w).Encode(map[string]string{"method": r.Method, "uri": r.RequestURI})
}

func (u *upstream) take() []seen {
	u.mu.Lock()
	defer u.mu.Unlock()
	r := u.reqs
	u.reqs = nil
	return r
}

// guard serves a Guard for u on a fresh socket and records its refusals.
type guard struct {
	sock string
	ln   net.Listener
	done chan error

	mu      sync.Mutex
	refused [][2]string
}

func newGuard(t testing.TB, upstreamSock string) *guard {
	t.Helper()
	g := &guard{sock: filepath.Join(t.TempDir(), "guard.sock"), done: make(chan error, 1)}
	ln, err := net.Listen("unix", g.sock)
	if err != nil {
		t.Fatal(err)
	}
	g.ln = ln
	gd := &Guard{Upstream: upstreamSock, Refused: func(m, r string) {
		g.mu.Lock()
		g.refused = append(g.refused, [2]string{m, r})
		g.mu.Unlock()
	}}
	go func() { g.done <- gd.Serve(ln) }()
	t.Cleanup(func() {
		ln.Close()
		select {
		case err := <-g.done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("Serve did not return after the listener was closed")
		}
	})
	return g
}

func (g *guard) takeRefused() [][2]string {
	g.mu.Lock()
	defer g.mu.Unlock()
	r := g.refused
	g.refused = nil
	return r
}

// raw sends req, bytes as given, on a new connection and reads one response.
func raw(t *testing.T, sock, req string) (*http.Response, string) {
	t.Helper()
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	method, _, _ := strings.Cut(req, " ")
	resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: method})
	if err != nil {
		t.Fatalf("%q: reading the response: %v", req, err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%q: reading the body: %v", req, err)
	}
	return resp, string(body)
}

func request(method, target string, extra ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: docker\r\nUser-Agent: Docker-Client/28.2.2 (linux)\r\n", method, target)
	for _, h := range extra {
		b.WriteString(h + "\r\n")
	}
	b.WriteString("\r\n")
	return b.String()
}

func TestAllowed(t *testing.T) {
	u := newUpstream(t)
	g := newGuard(t, u.sock)
	for _, tc := range []struct {
		method, target string
		forwarded      string // RequestURI upstream sees; "" means target
	}{
		{"HEAD", "/_ping", ""},
		{"GET", "/_ping", ""},
		{"HEAD", "/v1.50/_ping", ""},
		{"GET", "/version", ""},
		{"GET", "/v1.41/version", ""},
		{"GET", "/info", ""},
		{"GET", "/v1.47/info", ""},
		{"GET", "/v1/info", ""},
		{"GET", "/containers/json", ""},
		{"GET", "/v1.47/containers/json?all=1&size=0", ""},
		{"GET", `/v1.47/containers/json?filters={"status":["running"]}`, "/v1.47/containers/json?filters=%7B%22status%22%3A%5B%22running%22%5D%7D"},
		{"GET", "/containers/json?limit=1&all=1", "/containers/json?all=1&limit=1"},
		{"GET", "/containers/3f4e5d/json", ""},
		{"GET", "/v1.47/containers/my_app.1-x/json?size=1", ""},
		{"GET", "/containers/abc/logs?follow=1&stdout=1&stderr=1&tail=10", "/containers/abc/logs?follow=1&stderr=1&stdout=1&tail=10"},
		{"GET", "/v1.47/containers/abc/top?ps_args=-ef", ""},
		{"GET", "/containers/abc/stats?stream=0", ""},
		{"GET", "/containers/abc/changes", ""},
		{"GET", "/images/json", ""},
		{"GET", "/v1.47/images/json?all=0", ""},
		{"GET", "/images/busybox:latest/json", ""},
		{"GET", "/v1.47/images/registry.example:5000/team/app:1.0/json", ""},
		{"GET", "/images/docker.io/library/busybox@sha256:0123abcd/json", ""},
		{"GET", "/images/sha256:0123abcd/history", ""},
		{"GET", "/images/ghcr.io/o/r/history", ""},
		// Image "x/get" (the daemon's /images/{name:.*}/json): inspected, not saved.
		{"GET", "/images/x/get/json", ""},
		{"GET", "/images/json/json", ""},
		{"GET", "/networks", ""},
		{"GET", "/v1.47/networks?filters=%7B%7D", ""},
		{"GET", "/networks/bridge?verbose=false", ""},
		{"GET", "/volumes", ""},
		{"GET", "/volumes/data-1", ""},
		{"GET", "/events?since=1700000000&until=1700000100", ""},
		{"GET", "/v1.47/system/df", ""},
		{"GET", "/plugins/vieux/sshfs:latest/json", ""},
		{"HEAD", "/containers/json", ""},
	} {
		name := tc.method + " " + tc.target
		resp, body := raw(t, g.sock, request(tc.method, tc.target,
			"Accept: application/json",
			"X-Registry-Auth: c2VjcmV0",
			"Cookie: a=b",
			"Authorization: Basic eDp5",
			"Connection: keep-alive",
			"X-Forwarded-For: 1.2.3.4"))
		if resp.StatusCode != 200 {
			t.Errorf("%s: status %d, body %s", name, resp.StatusCode, body)
		}
		if resp.Header.Get("Api-Version") != "1.47" {
			t.Errorf("%s: response headers not passed on: %v", name, resp.Header)
		}
		reqs := u.take()
		if len(reqs) != 1 {
			t.Errorf("%s: upstream saw %d requests, want 1", name, len(reqs))
			continue
		}
		want := tc.forwarded
		if want == "" {
			want = tc.target
		}
		r := reqs[0]
		if r.Method != tc.method || r.URI != want || r.Host != "docker" || r.Body != "" {
			t.Errorf("%s: upstream saw %s %s (Host %q, body %q), want %s %s", name, r.Method, r.URI, r.Host, r.Body, tc.method, want)
		}
		var keys []string
		for k := range r.Header {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		if !slices.Equal(keys, []string{"Accept", "User-Agent"}) {
			t.Errorf("%s: upstream saw headers %v, want only Accept and User-Agent", name, r.Header)
		}
		if r.Header.Get("User-Agent") != "Docker-Client/28.2.2 (linux)" {
			t.Errorf("%s: User-Agent %q", name, r.Header.Get("User-Agent"))
		}
		if tc.method == "GET" && strings.HasSuffix(tc.target, "_ping") && body != "OK" {
			t.Errorf("%s: body %q", name, body)
		}
		if tc.method == "HEAD" && body != "" {
			t.Errorf("%s: HEAD answered with a body %q", name, body)
		}
		if got := g.takeRefused(); len(got) != 0 {
			t.Errorf("%s: Refused called: %v", name, got)
		}
	}
}

func TestRefused(t *testing.T) {
	u := newUpstream(t)
	g := newGuard(t, u.sock)
	for _, tc := range []struct {
		req           string // full request, or "METHOD TARGET" for request()
		method, route string // Refused's arguments; "" means no 403 from the guard is required (net/http may answer 400 first)
	}{
		// Writes, versioned and not.
		{"POST /containers/abc/kill", "POST", "/containers/{id}/kill"},
		{"POST /v1.47/containers/abc/kill?signal=KILL", "POST", "/containers/{id}/kill"},
		{"POST /containers/create", "POST", "/containers/create"},
		{"POST /v1.50/containers/create?name=x", "POST", "/containers/create"},
		{"POST /containers/abc/start", "POST", "/containers/{id}/start"},
		{"POST /containers/abc/stop", "POST", "/containers/{id}/stop"},
		{"POST /containers/abc/wait", "POST", "/containers/{id}/wait"},
		{"POST /containers/abc/exec", "POST", "/containers/{id}/exec"},
		{"POST /exec/abc/start", "POST", "/exec/{id}/start"},
		{"POST /containers/abc/attach?stream=1", "POST", "/containers/{id}/attach"},
		{"POST /containers/prune", "POST", "/containers/prune"},
		{"DELETE /containers/abc?force=1", "DELETE", "/containers/{id}"},
		{"DELETE /v1.47/containers/abc", "DELETE", "/containers/{id}"},
		{"PUT /containers/abc/archive?path=/", "PUT", "/containers/{id}/archive"},
		{"POST /commit?container=abc", "POST", "/commit"},
		{"POST /build", "POST", "/build"},
		{"POST /session", "POST", "/session"},
		{"POST /grpc", "POST", "/grpc"},
		{"POST /auth", "POST", "/auth"},
		{"POST /images/create?fromImage=x", "POST", "/images/create"},
		{"POST /images/load", "POST", "/images/load"},
		{"POST /images/x/push", "POST", "/images/{name}/push"},
		{"POST /images/registry.example:5000/team/app/push", "POST", "/images/{name}/push"},
		{"POST /images/team/app:1/tag?repo=y", "POST", "/images/{name}/tag"},
		{"DELETE /images/team/app:1", "DELETE", "/images/{name}"},
		{"POST /networks/create", "POST", "/networks/create"},
		{"POST /networks/n/connect", "POST", "/networks/{id}/connect"},
		{"DELETE /networks/n", "DELETE", "/networks/{id}"},
		{"POST /volumes/create", "POST", "/volumes/create"},
		{"DELETE /volumes/v", "DELETE", "/volumes/{id}"},
		{"PUT /volumes/v", "PUT", "/volumes/{id}"},
		{"POST /swarm/init", "POST", "/swarm/init"},
		{"POST /plugins/pull", "POST", "/plugins/pull"},
		{"POST /plugins/vieux/sshfs/enable", "POST", "/plugins/{name}/enable"},
		// Write methods on read routes.
		{"POST /containers/json", "POST", "/containers/json"},
		{"PUT /containers/abc/json", "PUT", "/containers/{id}/json"},
		{"DELETE /images/json", "DELETE", "/images/json"},
		{"PATCH /info", "PATCH", "/info"},
		{"POST /_ping", "POST", "/_ping"},
		{"POST /v1.47/containers/abc/logs", "POST", "/containers/{id}/logs"},
		{"OPTIONS /containers/json", "OPTIONS", "/containers/json"},
		{"TRACE /info", "TRACE", "/info"},
		{"FROB /containers/json", "OTHER", "/containers/json"},
		// Read-only but not needed, or not harmless.
		{"GET /containers/abc/export", "GET", "/containers/{id}/export"},
		{"GET /containers/abc/archive?path=/etc/shadow", "GET", "/containers/{id}/archive"},
		{"HEAD /containers/abc/archive?path=/", "HEAD", "/containers/{id}/archive"},
		{"GET /containers/abc/attach/ws?stdin=1", "GET", "/containers/{id}/attach/ws"},
		{"GET /exec/abc/json", "GET", "/exec/{id}/json"},
		{"GET /images/get?names=x", "GET", "/images/get"},
		{"GET /images/team/app/get", "GET", "/images/{name}/get"},
		{"GET /images/search?term=x", "GET", "/images/search"},
		{"GET /images/x/push", "GET", "/images/{name}/push"},
		{"GET /images/x", "GET", "/images/{name}"},
		{"GET /distribution/x/json", "GET", "/distribution/{name}/json"},
		{"GET /plugins", "GET", "/plugins"},
		{"GET /swarm", "GET", "/swarm"},
		{"GET /secrets/s", "GET", "/secrets/{id}"},
		{"GET /configs/c", "GET", "/configs/{id}"},
		{"GET /services/s/logs", "GET", "/services/{id}/logs"},
		{"GET /containers/abc", "GET", "/containers/{id}"},
		{"GET /nope", "GET", "other"},
		{"GET /v1.47", "GET", "other"},
		// Path tricks: nothing but the plain path is decided on.
		{"GET /containers/json/../abc/kill", "GET", "other"},
		{"POST /containers/json/../abc/kill", "POST", "other"},
		{"GET /containers/abc/json/../../abc/export", "GET", "other"},
		{"GET /containers/./json", "GET", "other"},
		{"GET /containers/json/.", "GET", "other"},
		{"GET //containers/json", "GET", "other"},
		{"GET /containers//json", "GET", "other"},
		{"GET /containers/json/", "GET", "other"},
		{"GET /v1.47//containers/json", "GET", "other"},
		{"GET /containers/abc%2Fjson", "GET", "other"},
		{"GET /images/x%2Fpush/json", "GET", "other"},
		{"GET /images/x/get%2Fjson", "GET", "other"},
		{"GET /containers/abc/json%2F..%2F..%2Fabc%2Fexport", "GET", "other"},
		{"GET /%63ontainers/json", "GET", "other"},
		{"GET /containers%2Fjson", "GET", "other"},
		{"GET /containers/%2e%2e/json", "GET", "other"},
		{"GET /containers/json%00", "GET", "other"},
		{"GET /containers/json;x=1", "GET", "other"},
		{"GET /containers/a+b/json", "GET", "other"},
		{"GET /containers/a~b/json", "GET", "other"},
		{"GET /containers/a/b/json", "GET", "other"},
		{"GET /containers/abc/attach/ws/../../json", "GET", "other"},
		{"GET /v1.47/v1.47/containers/json", "GET", "other"},
		{"GET /v1..47/containers/json", "GET", "other"},
		{"GET /V1.47/containers/json", "GET", "other"},
		{"GET /v1.47.1/containers/json", "GET", "other"},
		{"GET /vx/containers/json", "GET", "other"},
		{"GET http://docker/containers/json", "GET", "other"},
		{"GET http://docker/containers/abc/kill", "GET", "other"},
		{"GET /" + strings.Repeat("a", 2000), "GET", "other"},
		// A query net/url will not parse is refused, not passed on as is.
		{"GET /containers/json?all=1;x", "GET", "/containers/json"},
		{"GET /containers/json?a=%zz", "GET", "/containers/json"},
		// Upgrades and bodies.
		{request("GET", "/containers/json", "Upgrade: tcp", "Connection: Upgrade"), "GET", "/containers/json"},
		{request("GET", "/containers/abc/logs", "Connection: keep-alive, Upgrade"), "GET", "/containers/{id}/logs"},
		{request("GET", "/containers/abc/attach/ws", "Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Version: 13", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=="), "GET", "/containers/{id}/attach/ws"},
		{request("GET", "/_ping", "Upgrade: h2c", "Connection: Upgrade, HTTP2-Settings", "HTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA"), "GET", "/_ping"},
		{request("GET", "/containers/json", "Content-Length: 5") + "hello", "GET", "/containers/json"},
		{request("GET", "/containers/json", "Transfer-Encoding: chunked") + "5\r\nhello\r\n0\r\n\r\n", "GET", "/containers/json"},
		{request("HEAD", "/_ping", "Content-Length: 2") + "hi", "HEAD", "/_ping"},
		{request("POST", "/containers/abc/kill", "Content-Length: 0"), "POST", "/containers/{id}/kill"},
		// net/http itself may answer these 400; either way nothing passes.
		{request("GET", "/containers/json", "Content-Length: 5", "Transfer-Encoding: chunked") + "0\r\n\r\n", "", ""},
		{request("GET", "/containers/json", "Content-Length: 5", "Content-Length: 6") + "hello!", "", ""},
		{"GET /containers/json HTTP/1.1\r\nHost: docker\r\nHost: other\r\n\r\n", "", ""},
		{"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "", ""},
		{"GET /containers/json HTTP/2.0\r\nHost: docker\r\n\r\n", "", ""},
		{"GET /containers/json\r\n\r\n", "", ""},
	} {
		req := tc.req
		if !strings.Contains(req, "\r\n") {
			m, target, _ := strings.Cut(req, " ")
			req = request(m, target)
		}
		name := strings.SplitN(req, "\r\n", 2)[0]
		resp, body := raw(t, g.sock, req)
		if n := len(u.take()); n != 0 {
			t.Errorf("%s: reached the upstream (%d requests)", name, n)
		}
		refused := g.takeRefused()
		if tc.method == "" {
			if resp.StatusCode == 200 {
				t.Errorf("%s: status 200", name)
			}
			if resp.StatusCode == 403 && len(refused) != 1 {
				t.Errorf("%s: 403 but Refused called %d times", name, len(refused))
			}
			continue
		}
		if resp.StatusCode != 403 {
			t.Errorf("%s: status %d, want 403", name, resp.StatusCode)
			continue
		}
		if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("%s: Content-Type %q", name, ct)
		}
		var msg struct{ Message string }
		if strings.HasPrefix(req, "HEAD ") {
			msg.Message = "ronly: HEAD " + tc.route + " is blocked (read-only session)" // no body
		} else if err := json.Unmarshal([]byte(body), &msg); err != nil {
			t.Errorf("%s: body %q: %v", name, body, err)
		}
		if want := "ronly: " + tc.method + " " + tc.route + " is blocked (read-only session)"; msg.Message != want {
			t.Errorf("%s: message %q, want %q", name, msg.Message, want)
		}
		if want := [][2]string{{tc.method, tc.route}}; !slices.Equal(refused, want) {
			t.Errorf("%s: Refused got %v, want %v", name, refused, want)
		}
	}
}

// The labels are bounded: every refusal's route is a template or "other",
// whatever the path.
func TestRouteLabelBounded(t *testing.T) {
	known := map[string]bool{"other": true}
	for _, tpl := range templates {
		if known[tpl] {
			t.Errorf("template %s listed twice", tpl)
		}
		known[tpl] = true
	}
	for a := range allowed {
		if !known[a] {
			t.Errorf("allowed route %s is not a template", a)
		}
		// Each allowed template must be reachable: no earlier template
		// shadows it.
		p := strings.NewReplacer("{id}", "abc", "{name}", "reg:5000/a/b:1").Replace(a)
		if got := routeLabel(p); got != a {
			t.Errorf("%s: labelled %s", p, got)
		}
	}
	for _, p := range []string{"/", "/a/b/c/d/e", "/images/a/b/c/push", "/containers/a/b/c", "/v1.2/v1.2"} {
		if l := routeLabel(p); !known[l] {
			t.Errorf("%s: label %s", p, l)
		}
	}
}

// Several requests, pipelined, on one connection: answered in order; a
// refused one closes the connection, so nothing after it is read.
func TestKeepAlive(t *testing.T) {
	u := newUpstream(t)
	g := newGuard(t, u.sock)
	c, err := net.Dial("unix", g.sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, request("HEAD", "/_ping")+request("GET", "/v1.47/containers/json")+request("GET", "/v1.47/info"))
	br := bufio.NewReader(c)
	for _, m := range []string{"HEAD", "GET", "GET"} {
		resp, err := http.ReadResponse(br, &http.Request{Method: m})
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		if resp.StatusCode != 200 || resp.Close {
			t.Fatalf("status %d, close %v", resp.StatusCode, resp.Close)
		}
	}
	// Another one later on the same connection.
	io.WriteString(c, request("GET", "/version"))
	resp, err := http.ReadResponse(br, &http.Request{Method: "GET"})
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	if got := u.take(); len(got) != 4 {
		t.Fatalf("upstream saw %d requests, want 4", len(got))
	}

	// A refusal, then a request that would pass: the connection is closed
	// after the refusal.
	io.WriteString(c, request("POST", "/containers/abc/kill", "Content-Length: 28")+
		request("GET", "/containers/abc/json")+request("GET", "/containers/json"))
	resp, err = http.ReadResponse(br, &http.Request{Method: "POST"})
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != 403 || !resp.Close {
		t.Fatalf("status %d, close %v", resp.StatusCode, resp.Close)
	}
	if _, err := http.ReadResponse(br, &http.Request{Method: "GET"}); err == nil {
		t.Fatal("a response after a refusal")
	}
	if got := u.take(); len(got) != 0 {
		t.Fatalf("upstream saw %v after a refusal", got)
	}
	if got := g.takeRefused(); len(got) != 1 {
		t.Fatalf("Refused %v", got)
	}
}

func unixClient(sock string) *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
		DisableCompression: true,
	}}
}

// A stream is passed on as it arrives: the client has the first chunk
// while the upstream still holds back the second; closing the client's
// end cancels the upstream request.
func TestStreaming(t *testing.T) {
	u := newUpstream(t)
	g := newGuard(t, u.sock)
	release := make(chan struct{})
	upstreamDone := make(chan error, 1)
	u.stream = func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/vnd.docker.multiplexed-stream")
		w.WriteHeader(200)
		io.WriteString(w, "first line\n")
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
			upstreamDone <- r.Context().Err()
			return
		}
		io.WriteString(w, "second line\n")
		w.(http.Flusher).Flush()
		if r.URL.Path == "/v1.47/events" {
			<-r.Context().Done() // events: until the client goes away
			upstreamDone <- r.Context().Err()
			return
		}
		upstreamDone <- nil
	}
	cl := unixClient(g.sock)
	resp, err := cl.Get("http://docker/v1.47/containers/abc/logs?follow=1&stdout=1")
	if err != nil {
		t.Fatal(err)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/vnd.docker.multiplexed-stream" {
		t.Errorf("Content-Type %q", ct)
	}
	br := bufio.NewReader(resp.Body)
	got := make(chan string, 1)
	go func() { l, _ := br.ReadString('\n'); got <- l }()
	select {
	case l := <-got:
		if l != "first line\n" {
			t.Fatalf("first line %q", l)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the first chunk did not arrive before the upstream finished")
	}
	close(release)
	rest, err := io.ReadAll(br)
	if err != nil || string(rest) != "second line\n" {
		t.Fatalf("rest %q, %v", rest, err)
	}
	resp.Body.Close()
	if err := <-upstreamDone; err != nil {
		t.Fatal(err)
	}

	// A never-ending stream; the client hangs up.
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://docker/v1.47/events", nil)
	resp, err = cl.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	br = bufio.NewReader(resp.Body)
	for _, want := range []string{"first line\n", "second line\n"} {
		if l, err := br.ReadString('\n'); l != want {
			t.Fatalf("events: %q, %v", l, err)
		}
	}
	cancel()
	resp.Body.Close()
	select {
	case err := <-upstreamDone:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("upstream: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the upstream request outlived the client")
	}
}

// Closing the listener ends Serve with nil and the streams still open.
func TestServeClose(t *testing.T) {
	u := newUpstream(t)
	u.stream = func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(200)
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}
	sock := filepath.Join(t.TempDir(), "g.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- (&Guard{Upstream: u.sock}).Serve(ln) }()
	resp, err := unixClient(sock).Get("http://docker/events")
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return")
	}
	readDone := make(chan error, 1)
	go func() { _, err := io.ReadAll(resp.Body); readDone <- err }()
	select {
	case <-readDone:
	case <-time.After(10 * time.Second):
		t.Fatal("the events stream outlived Serve")
	}
}

// No daemon: 502 with a JSON message, not a hang or a refusal.
func TestUpstreamDown(t *testing.T) {
	g := newGuard(t, filepath.Join(t.TempDir(), "absent.sock"))
	resp, body := raw(t, g.sock, request("GET", "/v1.47/containers/json"))
	if resp.StatusCode != http.StatusBadGateway || resp.Header.Get("Content-Type") != "application/json" || !strings.Contains(body, `"message"`) {
		t.Fatalf("%d %v %s", resp.StatusCode, resp.Header, body)
	}
	if got := g.takeRefused(); len(got) != 0 {
		t.Fatalf("Refused %v", got)
	}
}

func TestServeNoUpstream(t *testing.T) {
	ln, err := net.Listen("unix", filepath.Join(t.TempDir(), "g.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if err := (&Guard{}).Serve(ln); err == nil {
		t.Fatal("Serve without an upstream: no error")
	}
}

func TestMain(m *testing.M) {
	os.Exit(m.Run())
}
