package docker_e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// forEachClient runs f for every docker CLI found, as a subtest.
func forEachClient(t *testing.T, f func(t *testing.T, cli string)) {
	needDocker(t)
	for _, cli := range clients {
		out, _ := dockerRaw(cli, direct, "version", "--format", "{{.Client.Version}}")
		t.Run(cli+"@"+strings.TrimSpace(out), func(t *testing.T) { f(t, cli) })
	}
}

// The allowed commands answer through the guard as they do directly, and
// nothing is refused on the way.
func TestReadOnlyCommands(t *testing.T) {
	since, until := strconv.FormatInt(t0.Unix(), 10), strconv.FormatInt(t1.Unix(), 10)
	cases := []struct {
		args []string
		cmp  string // "equal" (stdout), "top", "ok" (succeeds), "fail" (fails alike)
	}{
		{[]string{"ps", "--no-trunc", "--format", "{{.ID}} {{.Names}} {{.Image}} {{.Command}}"}, "equal"},
		{[]string{"ps", "-a", "-q"}, "equal"},
		{[]string{"container", "ls", "-a", "--format", "{{.Names}} {{.Image}}"}, "equal"}, // not .Status: "Up 5 seconds"
		{[]string{"logs", "ronly-fixed"}, "equal"},
		{[]string{"logs", "--tail", "2", "ronly-fixed"}, "equal"},
		{[]string{"container", "logs", "ronly-fixed"}, "equal"},
		{[]string{"inspect", "--format", "{{.Id}} {{.Name}} {{.State.Running}} {{.State.StartedAt}}", "ronly-live"}, "equal"},
		{[]string{"inspect", "ronly-fixed"}, "equal"},
		{[]string{"container", "inspect", "--format", "{{.Id}}", "ronly-live", "ronly-fixed"}, "equal"},
		{[]string{"inspect", "--format", "{{.Id}}", image}, "equal"},
		// container, image, volume: 404, then the network.
		{[]string{"inspect", "--format", "{{.Id}} {{.Name}}", "none"}, "equal"},
		{[]string{"inspect", "--format", "{{.Name}} {{.Driver}}", "ronly-vol"}, "equal"},
		{[]string{"inspect", "--type", "volume", "--format", "{{.Name}}", "ronly-vol"}, "equal"},
		// Every type in turn, plugins too, then "No such object".
		{[]string{"inspect", "ronly-nonexistent"}, "fail"},
		{[]string{"port", "ronly-live"}, "equal"},
		{[]string{"container", "port", "ronly-live"}, "equal"},
		{[]string{"top", "ronly-live"}, "top"},
		{[]string{"container", "top", "ronly-live"}, "top"},
		{[]string{"diff", "ronly-live"}, "equal"},
		{[]string{"container", "diff", "ronly-fixed"}, "equal"},
		{[]string{"stats", "--no-stream", "--format", "{{.ID}} {{.Name}}", "ronly-live"}, "equal"},
		{[]string{"stats", "--no-stream", "--format", "{{.Name}}"}, "equal"},
		{[]string{"container", "stats", "--no-stream", "-a", "--format", "{{.Name}}"}, "equal"},
		{[]string{"stats", "--no-stream"}, "ok"},
		{[]string{"images", "--no-trunc", "--format", "{{.ID}} {{.Repository}}:{{.Tag}} {{.Size}}"}, "equal"},
		{[]string{"image", "ls", "-q"}, "equal"},
		{[]string{"images"}, "ok"},
		{[]string{"image", "inspect", "--format", "{{.Id}} {{.RepoTags}}", image}, "equal"},
		{[]string{"image", "inspect", "ronly-e2e"}, "equal"},
		{[]string{"history", "--no-trunc", "--format", "{{.ID}} {{.Size}} {{.Comment}}", image}, "equal"},
		{[]string{"image", "history", "-q", image}, "equal"},
		{[]string{"info", "--format", "{{.ID}} {{.Name}} {{.ServerVersion}} {{.Images}} {{.Driver}} {{.DockerRootDir}}"}, "equal"},
		{[]string{"system", "info", "--format", "{{.ContainersRunning}} {{.ContainersStopped}}"}, "equal"},
		{[]string{"info"}, "ok"},
		{[]string{"version", "--format", "{{.Server.Version}} {{.Server.APIVersion}} {{.Server.Os}}"}, "equal"},
		{[]string{"version"}, "ok"},
		{[]string{"events", "--since", since, "--until", until, "--format", "{{.Type}} {{.Action}} {{.Actor.ID}}"}, "equal"},
		{[]string{"system", "events", "--since", since, "--until", until, "--filter", "type=container", "--format", "{{json .}}"}, "equal"},
		{[]string{"network", "ls", "--no-trunc", "--format", "{{.ID}} {{.Name}} {{.Driver}}"}, "equal"},
		{[]string{"network", "inspect", "--format", "{{.Id}} {{.Name}}", "none", "host"}, "equal"},
		{[]string{"network", "inspect", "none"}, "equal"},
		{[]string{"volume", "ls", "--format", "{{.Name}} {{.Driver}}"}, "equal"},
		{[]string{"volume", "inspect", "ronly-vol"}, "equal"},
		{[]string{"system", "df", "--format", "{{.Type}} {{.TotalCount}} {{.Active}}"}, "equal"},
		{[]string{"system", "df", "-v"}, "ok"},
	}
	forEachClient(t, func(t *testing.T, cli string) {
		guardRefused.take()
		for _, tc := range cases {
			name := strings.Join(tc.args, " ")
			got, gerr := dockerRaw(cli, guardSock, tc.args...)
			want, werr := dockerRaw(cli, direct, tc.args...)
			switch tc.cmp {
			case "fail":
				if gerr == nil || werr == nil {
					t.Errorf("%s: want failure both ways; guard %v, daemon %v", name, gerr, werr)
				} else if g, w := afterColon(gerr), afterColon(werr); g != w {
					t.Errorf("%s: guard says %q, daemon %q", name, g, w)
				}
				continue
			}
			if gerr != nil || werr != nil {
				t.Errorf("%s: guard: %v; daemon: %v", name, gerr, werr)
				continue
			}
			switch tc.cmp {
			case "equal":
				if got != want {
					t.Errorf("%s: through the guard:\n%s\ndirectly:\n%s", name, got, want)
				}
				if strings.TrimSpace(got) == "" && !slices.Contains(tc.args, "port") && !slices.Contains(tc.args, "diff") {
					t.Errorf("%s: empty output", name)
				}
			case "top":
				if g, w := topPIDs(got), topPIDs(want); !slices.Equal(g, w) || len(g) == 0 {
					t.Errorf("%s: through the guard %v, directly %v", name, g, w)
				}
			}
			if r := guardRefused.take(); len(r) != 0 {
				t.Errorf("%s: refused %v", name, r)
			}
		}
	})
}

// afterColon is the part of a CLI error after "exit status 1: ".
func afterColon(err error) string {
	s := err.Error()
	if i := strings.Index(s, "exit status "); i >= 0 {
		s = s[i:]
	}
	return s
}

// topPIDs is the PID and CMD columns of `docker top` output.
func topPIDs(out string) []string {
	var r []string
	for i, l := range lines(out) {
		f := strings.Fields(l)
		if i == 0 || len(f) < 2 {
			continue
		}
		r = append(r, f[1]+" "+f[len(f)-1])
	}
	return r
}

const blocked = " is blocked (read-only session)"

// Writes fail with the guard's message, are counted once each, and change
// nothing.
func TestRefusedCommands(t *testing.T) {
	needDocker(t)
	before := docker(t, clients[0], direct, "inspect", "--format", "{{.State.Running}} {{.State.StartedAt}} {{.RestartCount}} {{.State.Pid}}", "ronly-live")
	out := filepath.Join(tmp, "out")
	cases := []struct {
		args    []string
		refused []string // exactly these, in order
	}{
		{[]string{"run", "--network", "none", image, "/logger", "once"}, []string{"POST /containers/create"}},
		{[]string{"run", "-d", "--rm", "--network", "none", image, "/logger", "loop"}, []string{"POST /containers/create"}},
		{[]string{"container", "create", "--network", "none", image, "/logger", "once"}, []string{"POST /containers/create"}},
		{[]string{"rm", "-f", "ronly-live"}, []string{"DELETE /containers/{id}"}},
		{[]string{"container", "rm", "ronly-fixed"}, []string{"DELETE /containers/{id}"}},
		{[]string{"exec", "ronly-live", "/logger", "once"}, []string{"POST /containers/{id}/exec"}},
		{[]string{"kill", "ronly-live"}, []string{"POST /containers/{id}/kill"}},
		{[]string{"stop", "-t", "1", "ronly-live"}, []string{"POST /containers/{id}/stop"}},
		{[]string{"restart", "ronly-live"}, []string{"POST /containers/{id}/restart"}},
		{[]string{"pause", "ronly-live"}, []string{"POST /containers/{id}/pause"}},
		{[]string{"rename", "ronly-live", "x"}, []string{"POST /containers/{id}/rename"}},
		{[]string{"update", "--cpu-shares", "512", "ronly-live"}, []string{"POST /containers/{id}/update"}},
		{[]string{"start", "ronly-fixed"}, []string{"POST /containers/{id}/start"}},
		{[]string{"commit", "ronly-live", "x:y"}, []string{"POST /commit"}},
		{[]string{"cp", "ronly-live:/logger", out}, []string{"GET /containers/{id}/archive"}},
		{[]string{"export", "-o", out, "ronly-live"}, []string{"GET /containers/{id}/export"}},
		{[]string{"save", "-o", out, image}, []string{"GET /images/get"}},
		{[]string{"rmi", "-f", image}, []string{"DELETE /images/{name}"}},
		{[]string{"tag", image, "other/name:tag"}, []string{"POST /images/{name}/tag"}},
		{[]string{"pull", "registry.invalid/x:y"}, []string{"POST /images/create"}},
		{[]string{"push", "registry.invalid/x:y"}, []string{"POST /images/{name}/push"}},
		{[]string{"volume", "rm", "ronly-vol"}, []string{"DELETE /volumes/{id}"}},
		{[]string{"volume", "create", "x"}, []string{"POST /volumes/create"}},
		{[]string{"network", "create", "x"}, []string{"POST /networks/create"}},
		{[]string{"container", "prune", "-f"}, []string{"POST /containers/prune"}},
		{[]string{"image", "prune", "-f"}, []string{"POST /images/prune"}},
		{[]string{"system", "prune", "-f"}, []string{"POST /containers/prune"}},
		{[]string{"swarm", "init"}, []string{"POST /swarm/init"}},
	}
	forEachClient(t, func(t *testing.T, cli string) {
		guardRefused.take()
		for _, tc := range cases {
			name := strings.Join(tc.args, " ")
			_, err := dockerRaw(cli, guardSock, tc.args...)
			if err == nil {
				t.Errorf("%s: succeeded through the guard", name)
				continue
			}
			if !strings.Contains(err.Error(), "ronly: ") || !strings.Contains(err.Error(), blocked) {
				t.Errorf("%s: error without the guard's message: %v", name, err)
			}
			if got := guardRefused.take(); !slices.Equal(got, tc.refused) {
				t.Errorf("%s: refused %q, want %q", name, got, tc.refused)
			}
		}
		// `docker attach` inspects, then asks to attach (a hijack); stdin is
		// closed so that a client that got through would not hang.
		// The CLI reports the refused upgrade in words of its own.
		if _, err := dockerRaw(cli, guardSock, "attach", "--no-stdin", "ronly-live"); err == nil {
			t.Errorf("attach succeeded through the guard")
		}
		if got := guardRefused.take(); !slices.Equal(got, []string{"POST /containers/{id}/wait", "POST /containers/{id}/attach"}) {
			t.Errorf("attach: refused %q", got)
		}
	})

	t.Run("raw", func(t *testing.T) {
		guardRefused.take()
		want := `{"message":"ronly: POST /containers/{id}/kill is blocked (read-only session)"}`
		// net/http client.
		cl := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", guardSock)
		}}}
		resp, err := cl.Post("http://docker/v1.41/containers/ronly-live/kill?signal=KILL", "application/json", strings.NewReader("{}"))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 403 || resp.Header.Get("Content-Type") != "application/json" || strings.TrimSpace(string(body)) != want {
			t.Errorf("http POST: %d %q %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
		}
		// curl, if there is one.
		if curl, err := exec.LookPath("curl"); err == nil {
			b, err := exec.Command(curl, "-sS", "--unix-socket", guardSock, "-X", "POST", "-w", "\n%{http_code}", "http://docker/containers/ronly-live/kill").Output()
			if err != nil || strings.Join(lines(string(b)), "\n") != want+"\n403" {
				t.Errorf("curl: %v: %q", err, b)
			}
		} else if os.Getenv("CI") == "true" {
			t.Error("curl not found")
		}
		// Raw bytes on the socket: a POST; a POST behind a GET's body;
		// a path that walks back up.
		inner := "POST /containers/ronly-live/kill HTTP/1.1\r\nHost: docker\r\n\r\n"
		smuggle := fmt.Sprintf("GET /containers/json HTTP/1.1\r\nHost: docker\r\nContent-Length: %d\r\n\r\n%s", len(inner), inner)
		for _, tc := range []struct{ req, message string }{
			{"POST /containers/ronly-live/kill HTTP/1.1\r\nHost: docker\r\nContent-Length: 0\r\n\r\n", "ronly: POST /containers/{id}/kill" + blocked},
			{smuggle, "ronly: GET /containers/json" + blocked},
			// A body that never comes does not hold the answer back.
			{"GET /containers/json HTTP/1.1\r\nHost: docker\r\nContent-Length: 1000\r\n\r\n{", "ronly: GET /containers/json" + blocked},
			{"POST /containers/json/../ronly-live/kill HTTP/1.1\r\nHost: docker\r\n\r\n", "ronly: POST other" + blocked},
			{"GET /containers/ronly-live/json%2F..%2Fexport HTTP/1.1\r\nHost: docker\r\n\r\n", "ronly: GET other" + blocked},
			{"POST /containers/ronly-live/attach?stream=1&stdin=1 HTTP/1.1\r\nHost: docker\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n", "ronly: POST /containers/{id}/attach" + blocked},
		} {
			c, err := net.Dial("unix", guardSock)
			if err != nil {
				t.Fatal(err)
			}
			c.SetDeadline(time.Now().Add(10 * time.Second))
			io.WriteString(c, tc.req)
			all, _ := io.ReadAll(c) // the guard closes after a refusal
			c.Close()
			resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(all)), nil)
			if err != nil {
				t.Errorf("%q: %v", tc.req, err)
				continue
			}
			body, _ := io.ReadAll(resp.Body)
			var msg struct{ Message string }
			json.Unmarshal(body, &msg)
			if resp.StatusCode != 403 || msg.Message != tc.message {
				t.Errorf("%q: %d %s", tc.req, resp.StatusCode, body)
			}
			if n := bytes.Count(all, []byte("HTTP/1.1 ")); n != 1 {
				t.Errorf("%q: %d responses", tc.req, n)
			}
		}
		want7 := []string{"POST /containers/{id}/kill", "POST /containers/{id}/kill", "POST /containers/{id}/kill", "GET /containers/json", "GET /containers/json", "POST other", "GET other", "POST /containers/{id}/attach"}
		if _, err := exec.LookPath("curl"); err != nil {
			want7 = want7[1:]
		}
		if got := guardRefused.take(); !slices.Equal(got, want7) {
			t.Errorf("refused %q, want %q", got, want7)
		}
	})

	// Nothing changed, as the daemon itself tells.
	after := docker(t, clients[0], direct, "inspect", "--format", "{{.State.Running}} {{.State.StartedAt}} {{.RestartCount}} {{.State.Pid}}", "ronly-live")
	if after != before || !strings.HasPrefix(after, "true ") {
		t.Errorf("ronly-live before: %s after: %s", before, after)
	}
	// The daemon's objects are those of setup's end (on a daemon of the
	// test's own: exactly the two containers, the volume, the image and
	// the networks host and none).
	now, err := stateOf(clients[0], direct)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range ourContainers {
		if !slices.Contains(atSetup.containers, c) {
			t.Errorf("setup's containers lack %s: %q", c, atSetup.containers)
		}
	}
	if !slices.Contains(atSetup.images, image) || !slices.Contains(atSetup.networks, "none") {
		t.Errorf("setup's images %q or networks %q lack %s or none", atSetup.images, atSetup.networks, image)
	}
	if !slices.Equal(now.containers, atSetup.containers) {
		t.Errorf("containers now: %q, at setup: %q", now.containers, atSetup.containers)
	}
	docker(t, clients[0], direct, "volume", "inspect", ourVolume)
	if !slices.Equal(now.volumes, atSetup.volumes) {
		t.Errorf("volumes now: %q, at setup: %q", now.volumes, atSetup.volumes)
	}
	if !slices.Equal(now.images, atSetup.images) {
		t.Errorf("images now: %q, at setup: %q", now.images, atSetup.images)
	}
	if !slices.Equal(now.networks, atSetup.networks) {
		t.Errorf("networks now: %q, at setup: %q", now.networks, atSetup.networks)
	}
	if _, err := os.Stat(out); err == nil {
		t.Errorf("%s was written", out)
	}
}

func sorted(s []string) []string { slices.Sort(s); return s }

// stream starts `cli -H guard args...` and returns its stdout, line by line.
func stream(t *testing.T, cli string, args ...string) (<-chan string, func()) {
	t.Helper()
	cmd := exec.Command(cli, append([]string{"-H", "unix://" + guardSock}, args...)...)
	cmd.Env = cliEnv()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ch := make(chan string, 1024)
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			ch <- sc.Text()
		}
		close(ch)
	}()
	stop := func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("%s stderr: %s", strings.Join(args, " "), stderr.String())
		}
	}
	return ch, stop
}

// next returns the next line matching re, failing after a while.
func next(t *testing.T, ch <-chan string, re *regexp.Regexp) string {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case l, ok := <-ch:
			if !ok {
				t.Fatalf("stream ended before a line matching %s", re)
			}
			if m := re.FindString(l); m != "" {
				return m
			}
		case <-timeout:
			t.Fatalf("no line matching %s within 30s", re)
		}
	}
}

// Streams come through as they happen: logs -f, events, stats.
func TestStreams(t *testing.T) {
	forEachClient(t, func(t *testing.T, cli string) {
		guardRefused.take()
		t.Run("logs -f", func(t *testing.T) {
			ch, stop := stream(t, cli, "logs", "-f", "--since", "1s", "ronly-live")
			defer stop()
			re := regexp.MustCompile(`^line (\d+)$`)
			first, _ := strconv.Atoi(re.FindStringSubmatch(next(t, ch, re))[1])
			for i := 1; i <= 5; i++ {
				l := next(t, ch, re)
				if want := fmt.Sprintf("line %d", first+i); l != want {
					t.Fatalf("got %q, want %q", l, want)
				}
			}
		})
		t.Run("events", func(t *testing.T) {
			ch, stop := stream(t, cli, "events", "--filter", "type=volume", "--format", "{{.Type}} {{.Action}} {{.Actor.ID}}")
			defer stop()
			time.Sleep(time.Second) // subscribed
			name := fmt.Sprintf("ronly-ev-%d", time.Now().UnixNano())
			docker(t, cli, direct, "volume", "create", name)
			defer docker(t, cli, direct, "volume", "rm", name)
			next(t, ch, regexp.MustCompile("^volume create "+name+"$"))
		})
		t.Run("stats", func(t *testing.T) {
			ch, stop := stream(t, cli, "stats", "--format", "{{.Name}} {{.PIDs}}", "ronly-live")
			defer stop()
			re := regexp.MustCompile(`ronly-live \d+`)
			next(t, ch, re)
			next(t, ch, re) // a second sample: it streams
		})
		if r := guardRefused.take(); len(r) != 0 {
			t.Errorf("refused %v", r)
		}
	})
}
