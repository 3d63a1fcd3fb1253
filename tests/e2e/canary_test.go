package e2e

import (
	"net"
	"os"
	"os/exec"
	"testing"

	"ronly.dev/ronly/go/probe"
)

// canaries are host objects a sandboxed process must not be able to change,
// reach or signal (probe.Canaries), owned by the user ronly runs as, so that
// only the sandbox stands in the way. They are removed when the test ends.
type canaries struct {
	*probe.Canaries
	uid    int
	marker string
	dir    string // probe.Targets.Dir
	file   string // probe.Targets.File
	rwDir  string // passed with --rw: the probe's everyday writes go here

	proc    *exec.Cmd  // sleeps in dir, holding file open read-write as fd 3
	inherit []*os.File // file read-write three times, then dir
}

func randomMarker(t *testing.T) string {
	t.Helper()
	m, err := probe.RandomMarker()
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func newCanaries(t *testing.T, uid int) *canaries {
	t.Helper()
	pc, err := probe.NewCanaries(probe.CanaryOptions{UID: uid, Parent: "/var/tmp", Prefix: "ronly-e2e-", SocketDir: "/run"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	return &canaries{Canaries: pc, uid: uid, marker: pc.Marker, dir: pc.Dir, file: pc.File, rwDir: pc.RWDir,
		proc: pc.Proc, inherit: pc.Inherit}
}

// startProcess starts another canary process, which replaces c.proc.
func (c *canaries) startProcess(t *testing.T) {
	t.Helper()
	if err := c.StartProcess(); err != nil {
		t.Fatal(err)
	}
	c.proc = c.Proc
}

// targets describes the canaries for the probe, with the inherited
// descriptors at the numbers they arrive as (ExtraFiles start at 3).
func (c *canaries) targets() probe.Targets { return c.Targets() }

// snapshot records the host's state, from outside the sandbox.
func (c *canaries) snapshot(t *testing.T) probe.HostState {
	t.Helper()
	s, err := c.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// verify checks from outside that the host is as before: canary files
// untouched, nothing new beside them, the canary process alive, the
// sockets never connected to, hostname, /dev/shm and mounts unchanged.
func (c *canaries) verify(t *testing.T, before probe.HostState) {
	t.Helper()
	for _, msg := range c.Verify(before) {
		t.Error(msg)
	}
}

func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	names, err := probe.DirNames(dir)
	if err != nil {
		t.Fatal(err)
	}
	return names
}

// mountLines is this process's mount table without the per-boot mount ids.
func mountLines(t *testing.T) []string {
	t.Helper()
	lines, err := probe.MountLines()
	if err != nil {
		t.Fatal(err)
	}
	return lines
}

func newEntries(before, after []string) []string { return probe.NewEntries(before, after) }

// alive says whether pid is running (not gone, not a zombie), and stopped
// counts as changed too: a stopped canary was traced or signalled.
func alive(pid int) bool { return probe.Alive(pid) }

func procState(pid int) string { return probe.ProcState(pid) }

// drain accepts every connection already queued on l, without waiting.
func drain(l *net.UnixListener) int { return probe.Drain(l) }
