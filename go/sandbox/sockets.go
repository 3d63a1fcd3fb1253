package sandbox

import (
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"ronly.dev/ronly/go/mountinfo"
)

// A read-only mount does not stop connect() on a socket inode, so API
// sockets (docker, containerd, podman, D-Bus and its systemd-run) need more.
// /run, where nearly all of them live, is mirrored by a read-only overlay:
// no socket in it is reachable, including those the host creates or
// re-creates during the session (dockerd restarting). The few well-known
// sockets elsewhere are covered one by one.

// mirroredDirs is /run, resolved, followed by every directory mounted
// below it, parents first: an overlay shows only its own file system.
func mirroredDirs() []string {
	run, err := filepath.EvalSymlinks("/run")
	if err != nil {
		return nil
	}
	if fi, err := os.Stat(run); err != nil || !fi.IsDir() {
		return nil
	}
	out := []string{run}
	points, _ := mountinfo.Points() // none readable: only /run itself
	for _, mp := range points {
		if strings.HasPrefix(mp, run+"/") {
			if fi, err := os.Stat(mp); err == nil && fi.IsDir() {
				out = append(out, mp)
			}
		}
	}
	sort.SliceStable(out[1:], func(i, j int) bool { return strings.Count(out[1+i], "/") < strings.Count(out[1+j], "/") })
	return dedupe(out)
}

func dedupe(in []string) []string {
	seen := map[string]bool{}
	out := in[:0]
	for _, s := range in {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

// Well-known API sockets outside /run, covered if present at start.
var knownSockets = []string{
	"/var/lib/kubelet/pod-resources/kubelet.sock",
	"/var/lib/kubelet/device-plugins/kubelet.sock",
	"/var/snap/lxd/common/lxd/unix.socket",
	"/var/lib/lxd/unix.socket",
}

// coveredSockets lists the known sockets outside the mirrored directories.
func coveredSockets(mirrored []string) []string {
	var out []string
	for _, p := range knownSockets {
		real, err := filepath.EvalSymlinks(p)
		if err != nil {
			continue
		}
		if fi, err := os.Lstat(real); err != nil || fi.Mode()&fs.ModeSocket == 0 {
			continue
		}
		inside := false
		for _, d := range mirrored {
			inside = inside || strings.HasPrefix(real, d+"/")
		}
		if !inside {
			out = append(out, real)
		}
	}
	return dedupe(out)
}
