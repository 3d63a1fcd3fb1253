package sandbox

import (
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"ronly.dev/ronly/go/dockerguard"
)

// dockerSocket is the host's Docker socket: DOCKER_HOST when it names a
// unix socket, else /run/docker.sock; "" when there is none.
func dockerSocket() string {
	p := "/run/docker.sock"
	if h, ok := strings.CutPrefix(os.Getenv("DOCKER_HOST"), "unix://"); ok && h != "" {
		p = h
	}
	real, err := filepath.EvalSymlinks(p)
	if err != nil {
		return ""
	}
	if fi, err := os.Stat(real); err != nil || fi.Mode()&fs.ModeSocket == 0 {
		return ""
	}
	return real
}

// dockerGuard serves the read-only Docker API on a socket of the
// supervisor's: a connect inside to the host's Docker socket, under any
// name, is made to this one instead (mediate_sock.go), so docker ps works in
// the sandbox and docker run does not, whatever client is used.
type dockerGuard struct {
	upstream string // the host's Docker socket
	path     string // the guard's
	dir      string
	ln       net.Listener
}

// startDockerGuard returns nil when the host has no Docker socket.
func startDockerGuard(refused func(Refusal)) (*dockerGuard, error) {
	upstream := dockerSocket()
	if upstream == "" {
		return nil, nil
	}
	dir, err := os.MkdirTemp("", "ronly-docker-")
	if err != nil {
		return nil, fmt.Errorf("docker guard: %w", err)
	}
	path := filepath.Join(dir, "docker.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("docker guard: %w", err)
	}
	// The directory (0700) keeps everyone else on the host out; only the
	// supervisor connects here, on the session's behalf.
	g := &dockerguard.Guard{Upstream: upstream, Refused: func(method, route string) {
		refused(Refusal{Time: time.Now(), Kind: RefusedAPI, What: method + " " + route, Errno: 0})
	}}
	go g.Serve(ln)
	return &dockerGuard{upstream: upstream, path: path, dir: dir, ln: ln}, nil
}

func (d *dockerGuard) Close() {
	if d == nil {
		return
	}
	d.ln.Close()
	os.RemoveAll(d.dir)
}
