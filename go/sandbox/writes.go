package sandbox

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"ronly.dev/ronly/go/cgroup"
	"ronly.dev/ronly/go/writewatch/remote"
)

// pendingWrites is the write counter being attached while the session
// starts (startWrites), until watchWrites takes it.
type pendingWrites struct {
	done  chan struct{}
	w     *remote.Watch
	err   error
	taken bool
}

// startWrites begins attaching the write counter, when the policy asks
// for one, on a goroutine: loading and verifying the programs takes
// milliseconds, which overlap the cgroup's creation and the init's start
// instead of adding to them. nil when nothing is to be counted.
//
// The counter sees every system call of a process in the session's cgroup
// that returns EROFS: with fexit programs on the write-class syscalls
// where the kernel has BPF trampolines (no other syscall on the host pays
// anything), else with a program at the sys_exit tracepoint (every syscall
// on the host pays while it is attached). The read-only mounts stay the
// enforcement; this only observes their answers, so nothing the sandboxed
// process controls decides anything. It needs root (CAP_BPF, CAP_PERFMON)
// and a cgroup v2 directory; without either, refused writes are refused
// but not counted, and the layers say so. An audit line carries the path
// the refused call named, as the process gave it (relative paths
// unresolved), read from its memory after the refusal: a record for
// people, which the process could falsify, and nothing here acts on it.
//
// The counter runs in a process of its own, ronly-writewatch (see
// go/writewatch/remote), so that the session binary links no eBPF library;
// it is found beside ronly's executable or on PATH, and without it
// counting is unavailable and the layers and a warning say so.
//
// Without an audit log, which is the usual case, the session joins the
// counting programs every such session on the host shares: the cost is
// then one set's, however many sessions run. A session with an audit log
// needs its events and loads programs of its own.
func (s *session) startWrites() *pendingWrites {
	s.layers.WriteCounter = "off"
	if !s.p.CountWrites || s.p.NoWriteCounting {
		return nil
	}
	s.layers.WriteCounter = "unavailable"
	if os.Geteuid() != 0 {
		return nil
	}
	pw := &pendingWrites{done: make(chan struct{})}
	events := s.refused != nil
	go func() {
		defer close(pw.done)
		pw.w, pw.err = remote.Start(events)
	}()
	return pw
}

// abandon closes the counter if watchWrites never took it (the session
// failed before).
func (pw *pendingWrites) abandon() {
	if pw == nil || pw.taken {
		return
	}
	<-pw.done
	if pw.w != nil {
		pw.w.Close()
	}
}

// watchWrites waits for the counter startWrites began and points it at the
// session's cgroup; the init is waiting for its records, so the command
// has not run yet and none of its refusals is missed.
func (s *session) watchWrites(g *cgroup.Group, pw *pendingWrites) (stop func()) {
	none := func() {}
	if pw == nil {
		return none
	}
	pw.taken = true
	<-pw.done
	if pw.err != nil {
		s.warn(fmt.Sprintf("refused writes are refused but not counted: %v", pw.err))
		return none
	}
	w := pw.w
	if g == nil || g.ID() == 0 {
		w.Close()
		s.warn("refused writes are refused but not counted: the session has no cgroup v2 directory to count them by")
		return none
	}
	if err := w.Add(g.ID()); err != nil {
		w.Close()
		s.warn(fmt.Sprintf("refused writes are refused but not counted: %v", err))
		return none
	}
	if s.refused != nil {
		// The audit log wants each refusal; the counts come from the
		// program's map, which loses nothing when events are dropped.
		w.Events(func(e remote.Event) {
			s.refused(Refusal{Time: e.Time, PID: e.PID, Comm: e.Comm, Kind: RefusedWrite,
				What: writeOperation(e.Syscall), Path: e.Path, Errno: unix.EROFS})
		})
	}
	s.layers.WriteCounting = true
	s.layers.WriteCounter = w.Hook()
	return func() {
		counts, err := w.Remove()
		if err != nil {
			s.warn(fmt.Sprintf("refused writes: %v", err))
		}
		s.mu.Lock()
		for name, n := range counts {
			kind := string(RefusedWrite)
			if s.blocked[kind] == nil {
				s.blocked[kind] = map[string]uint64{}
			}
			s.blocked[kind][writeOperation(name)] += n
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
