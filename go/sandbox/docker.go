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
	cinit "ronly.dev/ronly/init"
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
// supervisor's, which the init binds over the host's socket inside: docker
// ps works in the sandbox, docker run does not, whatever client is used.
type dockerGuard struct {
	dir string
	ln  net.Listener
}

// startDockerGuard returns nil when the host has no Docker socket.
func startDockerGuard(refused func(Refusal)) (*dockerGuard, *cinit.Mount, error) {
	upstream := dockerSocket()
	if upstream == "" {
		return nil, nil, nil
	}
	dir, err := os.MkdirTemp("", "ronly-docker-")
	if err != nil {
		return nil, nil, fmt.Errorf("docker guard: %w", err)
	}
	path := filepath.Join(dir, "docker.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		os.RemoveAll(dir)
		return nil, nil, fmt.Errorf("docker guard: %w", err)
	}
	// The directory (0700) keeps everyone else on the host out; inside,
	// any user of the session may ask.
	if err := os.Chmod(path, 0o666); err != nil {
		ln.Close()
		os.RemoveAll(dir)
		return nil, nil, fmt.Errorf("docker guard: %w", err)
	}
	g := &dockerguard.Guard{Upstream: upstream, Refused: func(method, route string) {
		refused(Refusal{Time: time.Now(), Kind: "api", What: method + " " + route, Errno: 0})
	}}
	go g.Serve(ln)
	return &dockerGuard{dir: dir, ln: ln}, &cinit.Mount{Kind: cinit.MountSocket, Path: upstream, Source: path}, nil
}

func (d *dockerGuard) Close() {
	if d == nil {
		return
	}
	d.ln.Close()
	os.RemoveAll(d.dir)
}
