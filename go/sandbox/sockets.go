package sandbox

import (
	"io/fs"
	"os"
	"path/filepath"
)

// Well-known API sockets outside /run. A read-only mount does not stop
// connect() on a socket inode, so each must be covered, not just made
// read-only.
var knownSockets = []string{
	"/var/lib/kubelet/pod-resources/kubelet.sock",
	"/var/lib/kubelet/device-plugins/kubelet.sock",
	"/var/snap/lxd/common/lxd/unix.socket",
	"/var/lib/lxd/unix.socket",
}

// socketRoots are walked for unix sockets: docker, containerd and its
// ttrpc/debug sockets, podman, D-Bus (systemd-run), libnetwork live here.
var socketRoots = []string{"/run", "/var/run"}

// findSockets lists the unix sockets the sandbox must not reach. It walks
// at most maxEntries entries so a huge /run cannot stall startup.
func findSockets() []string {
	const maxEntries = 20000
	seen := map[string]bool{}
	var out []string
	add := func(p string) {
		if real, err := filepath.EvalSymlinks(p); err == nil && !seen[real] {
			seen[real] = true
			out = append(out, real)
		}
	}
	n := 0
	for _, root := range socketRoots {
		filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if n++; n > maxEntries {
				return filepath.SkipAll
			}
			if err != nil {
				return nil
			}
			if d.Type()&fs.ModeSocket != 0 {
				add(p)
			}
			return nil
		})
	}
	for _, p := range knownSockets {
		if fi, err := os.Lstat(p); err == nil && fi.Mode()&fs.ModeSocket != 0 {
			add(p)
		}
	}
	return out
}
