package sandbox

import (
	"bufio"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"ronly.dev/ronly/go/policy"
)

// A read-only mount does not stop connect() on a socket inode, so API
// sockets (docker, containerd, podman, D-Bus and its systemd-run) need more.
// /run, where nearly all of them live, is mirrored by a read-only overlay:
// no socket in it is reachable, including those the host creates or
// re-creates during the session (dockerd restarting). Sockets elsewhere —
// every path bound at start, and a few well-known ones — are covered one by
// one, or a directory crowded with them is mirrored like /run; a socket
// that appears elsewhere after the start stays reachable.

// mirroredDirs is /run, resolved, followed by every directory mounted
// below it, parents first; points are the host's mount points.
func mirroredDirs(points []string) []string {
	run, err := filepath.EvalSymlinks("/run")
	if err != nil {
		return nil
	}
	if fi, err := os.Stat(run); err != nil || !fi.IsDir() {
		return nil
	}
	return mirrorTree(run, points)
}

// mirrorTree is dir followed by every directory mounted below it, parents
// first: an overlay shows only its own file system.
func mirrorTree(dir string, points []string) []string {
	out := []string{dir}
	for _, mp := range points {
		if policy.Within(mp, dir) {
			if fi, err := os.Stat(mp); err == nil && fi.IsDir() {
				out = append(out, mp)
			}
		}
	}
	sort.SliceStable(out[1:], func(i, j int) bool { return strings.Count(out[1+i], "/") < strings.Count(out[1+j], "/") })
	return dedupe(out)
}

// crowdedAfter is how many sockets one directory may hold before the
// directory is mirrored whole rather than each socket covered: a cover
// costs a mount per socket (about 120 µs of a start here, its teardown
// included), a mirror one per directory and its submounts, and a mirror
// also keeps a socket re-created there unreachable.
const crowdedAfter = 4

// splitCrowded sorts the sockets to cover into directories to mirror
// whole (those holding more than crowdedAfter, outermost only, never the
// root or an ancestor of keep) and the sockets left to cover one by one.
func splitCrowded(socks []string, keep []string) (crowded, rest []string) {
	per := map[string]int{}
	for _, s := range socks {
		per[filepath.Dir(s)]++
	}
	var dirs []string
	for d, n := range per {
		ancestor := d == "/"
		for _, k := range keep {
			ancestor = ancestor || policy.Within(k, d)
		}
		if n > crowdedAfter && !ancestor {
			dirs = append(dirs, d)
		}
	}
	sort.Strings(dirs) // a parent sorts before its children
	below := func(p string) bool {
		for _, d := range crowded {
			if policy.Within(p, d) {
				return true
			}
		}
		return false
	}
	for _, d := range dirs {
		if !below(d) {
			crowded = append(crowded, d)
		}
	}
	for _, s := range socks {
		if !below(s) {
			rest = append(rest, s)
		}
	}
	return crowded, rest
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

// Well-known API sockets outside /run, covered if present at start, even
// when their daemon listens in another network namespace (and so is
// missing from /proc/net/unix).
var knownSockets = []string{
	"/var/lib/kubelet/pod-resources/kubelet.sock",
	"/var/lib/kubelet/device-plugins/kubelet.sock",
	"/var/snap/lxd/common/lxd/unix.socket",
	"/var/lib/lxd/unix.socket",
}

// coveredSockets lists the sockets to cover one by one: the known ones and
// every path bound in this network namespace at start, wherever it lives,
// except below the mirrored directories (already unreachable) and below
// fresh, the directories the sandbox replaces with an empty tmpfs (/tmp,
// --writable), and /dev, which is the sandbox's own.
func coveredSockets(mirrored, fresh []string) []string {
	f, err := os.Open("/proc/net/unix")
	var bound []string
	if err == nil {
		bound = boundSockets(f)
		f.Close()
	}
	skip := []string{"/dev"}
	for _, d := range append(append([]string{}, mirrored...), fresh...) {
		if d != "" {
			skip = append(skip, d)
		}
	}
	var out []string
	for _, p := range append(append([]string{}, knownSockets...), bound...) {
		real, err := filepath.EvalSymlinks(p)
		if err != nil {
			continue // gone, or bound inside another mount namespace's root
		}
		if fi, err := os.Lstat(real); err != nil || fi.Mode()&fs.ModeSocket == 0 {
			continue
		}
		below := false
		for _, d := range skip {
			below = below || policy.Within(real, d)
		}
		if !below {
			out = append(out, real)
		}
	}
	sort.Strings(out)
	return dedupe(out)
}

// boundSockets reads /proc/net/unix: the path of every socket bound to a
// file name (abstract names start with @, unnamed sockets have none). A
// path is the rest of the line after seven fields, spaces and all.
func boundSockets(r io.Reader) []string {
	var out []string
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for first := true; sc.Scan(); first = false {
		if first {
			continue // the header
		}
		line := sc.Text()
		for i := 0; i < 7 && line != ""; i++ {
			line = strings.TrimLeft(line, " ")
			if j := strings.IndexByte(line, ' '); j >= 0 {
				line = line[j:]
			} else {
				line = ""
			}
		}
		if p := strings.TrimLeft(line, " "); strings.HasPrefix(p, "/") {
			out = append(out, p)
		}
	}
	return out
}
