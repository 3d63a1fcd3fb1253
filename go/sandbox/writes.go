package sandbox

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"ronly.dev/ronly/go/cgroup"
	"ronly.dev/ronly/go/writewatch"
)

// watchWrites starts counting the session's refused writes: every system
// call of a process in its cgroup that returns EROFS, seen by an eBPF
// program at syscall exit. The read-only mounts stay the enforcement; this
// only observes their answers, so nothing the sandboxed process controls
// decides anything. It needs root (CAP_BPF, CAP_PERFMON) and a cgroup v2
// directory; without either, refused writes are refused but not counted,
// and the layers say so. An audit line carries the path the refused call
// named, as the process gave it (relative paths unresolved), read from its
// memory after the refusal: a record for people, which the process could
// falsify, and nothing here acts on it.
//
// Without an audit log, which is the usual case, the session joins the
// counting program every such session on the host shares: the cost per
// host syscall is then one program's, however many sessions run. A session
// with an audit log needs its events and loads a program of its own.
func (s *session) watchWrites(g *cgroup.Group) (stop func()) {
	none := func() {}
	if s.p.NoWriteCounting || g == nil || g.ID() == 0 || os.Geteuid() != 0 {
		return none
	}
	start := writewatch.Shared
	if s.refused != nil {
		start = writewatch.Start
	}
	w, err := start(writewatch.FexitOrTracepoint)
	if err != nil {
		s.warn(fmt.Sprintf("refused writes are refused but not counted: %v", err))
		return none
	}
	id := g.ID()
	if err := w.Add(id); err != nil {
		w.Close()
		s.warn(fmt.Sprintf("refused writes are refused but not counted: %v", err))
		return none
	}
	if s.refused != nil {
		// The audit log wants each refusal; the counts come from the
		// program's map, which loses nothing when events are dropped.
		w.Events(func(e writewatch.Event) {
			s.refused(Refusal{Time: e.Time, PID: e.PID, Comm: e.Comm, Kind: "write",
				What: writeOperation(e.Syscall), Path: e.Path, Errno: unix.EROFS})
		})
	}
	s.layers.WriteCounting = true
	return func() {
		counts, err := w.Remove(id)
		if err != nil {
			s.warn(fmt.Sprintf("refused writes: %v", err))
		}
		s.mu.Lock()
		for name, n := range counts {
			if s.blocked["write"] == nil {
				s.blocked["write"] = map[string]uint64{}
			}
			s.blocked["write"][writeOperation(name)] += n
		}
		s.mu.Unlock()
		w.Close()
	}
}

// writeOperation names the operation a refused system call attempted,
// the label value of ronly_blocked_writes_total: the variants of one
// operation (unlink, unlinkat) count together.
func writeOperation(syscall string) string {
	switch syscall {
	case "open", "openat", "openat2", "creat":
		return "open"
	case "unlink", "unlinkat", "rmdir":
		return "unlink"
	case "rename", "renameat", "renameat2":
		return "rename"
	case "mkdir", "mkdirat":
		return "mkdir"
	case "link", "linkat":
		return "link"
	case "symlink", "symlinkat":
		return "symlink"
	case "chmod", "fchmod", "fchmodat", "fchmodat2":
		return "chmod"
	case "chown", "fchown", "lchown", "fchownat":
		return "chown"
	case "utime", "utimes", "utimensat", "futimesat":
		return "utime"
	case "truncate", "ftruncate":
		return "truncate"
	case "setxattr", "lsetxattr", "fsetxattr", "removexattr", "lremovexattr", "fremovexattr", "setxattrat", "removexattrat":
		return "xattr"
	case "mknod", "mknodat":
		return "mknod"
	}
	return syscall
}
