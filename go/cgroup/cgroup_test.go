package cgroup

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"ronly.dev/ronly/go/mountinfo"
)

// A session is alive exactly while a process holds its lock: its own, or
// one that shares the locked descriptor (the supervisor). Nothing about
// pids enters into it. Plain directories stand in for cgroups here: flock
// is the same on cgroupfs (the end-to-end tests use real ones).
func TestAliveByLock(t *testing.T) {
	dir := t.TempDir()
	if Alive(dir) {
		t.Fatal("an unlocked directory is taken for a live session's")
	}
	lock, err := lockNew(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !Alive(dir) {
		t.Error("a locked directory is taken for a dead session's")
	}
	if _, err := lockDir(dir); !errors.Is(err, unix.EWOULDBLOCK) {
		t.Errorf("a second lock while held: %v, want EWOULDBLOCK", err)
	}

	// Held by another process (the supervisor), in another PID namespace
	// when we may make one: the same answer, from here and from there.
	holder := exec.Command("sleep", "60")
	holder.ExtraFiles = []*os.File{lock}
	if os.Geteuid() == 0 {
		holder.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID}
	}
	if err := holder.Start(); errors.Is(err, syscall.EPERM) && holder.SysProcAttr != nil {
		// Inside a sandbox that refuses new namespaces (ronly itself, in
		// tests/bazel_in_ronly.sh): the holder shares ours instead.
		t.Logf("no new PID namespace here (%v): the holder shares this one", err)
		holder = exec.Command("sleep", "60")
		holder.ExtraFiles = []*os.File{lock}
		err = holder.Start()
		if err != nil {
			t.Fatal(err)
		}
	} else if err != nil {
		t.Fatal(err)
	}
	defer holder.Process.Kill()
	lock.Close() // only the holder has it now
	if !Alive(dir) {
		t.Error("a directory locked by a live process is taken for a dead session's")
	}
	holder.Process.Kill()
	holder.Wait()
	if Alive(dir) {
		t.Error("a directory whose holder died is taken for a live session's")
	}
	if Alive(filepath.Join(dir, "gone")) {
		t.Error("a directory that does not exist is taken for a live session's")
	}
}

// A new directory that a sweep locked (or removed) before the session
// could is not the session's: lockNew says so, and makeDir makes it again.
func TestLockNewLosesToSweep(t *testing.T) {
	root := t.TempDir()
	parent := filepath.Join(root, parentName)
	if err := os.Mkdir(parent, 0o755); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(parent, "s1")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	sweeper, err := lockDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lockNew(dir); !errors.Is(err, errSwept) {
		t.Errorf("lockNew of a directory a sweep holds: %v, want errSwept", err)
	}
	// The sweep removes it while we retry, then lets go of the lock.
	go func() {
		time.Sleep(20 * time.Millisecond)
		os.Remove(dir)
		sweeper.Close()
	}()
	got, lock, err := makeDir(root, "s1")
	if err != nil {
		t.Fatalf("makeDir after a sweep: %v", err)
	}
	defer lock.Close()
	var held, now unix.Stat_t
	if unix.Fstat(int(lock.Fd()), &held) != nil || unix.Stat(got, &now) != nil || held.Ino != now.Ino {
		t.Error("makeDir's lock is not on the directory at its path")
	}
	if !Alive(got) {
		t.Error("makeDir's directory is not locked")
	}
}

// Kill never kills pid 0 or a negative pid: cgroup.procs reads 0 for a
// process in another PID namespace, and kill(0) is our own process group.
func TestKillSkipsUnseenPids(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte("0\n0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	g := &Group{v1: map[string]string{"pids": dir}}
	start := time.Now()
	err := g.Kill()
	if err == nil {
		t.Error("Kill of processes it cannot see or reach reports success")
	}
	if time.Since(start) > time.Second {
		t.Errorf("Kill waited %v for processes it cannot kill", time.Since(start))
	}
	// Still here: had it killed pid 0, this test's process group (and
	// the test) would be gone.
}

// Only directories named as sessions that hold a lock are judged by it:
// a running session of an older ronly holds none.
func TestSweepable(t *testing.T) {
	name := Name("s1", os.Getpid())
	if !sweepable(name) || !strings.HasPrefix(name, "s1-"+strconv.Itoa(os.Getpid())+"-flock-") {
		t.Errorf("Name = %q: want s1-PID-flock-START, sweepable", name)
	}
	for _, old := range []string{"s1-123-4567", "plain", "flock", "s1-flock", "x-flock-1-2"} {
		if sweepable(old) {
			t.Errorf("%q is taken for a session that holds a lock", old)
		}
	}
}

// TestSweepLockedChecksPath: a sweep that locked a dead session's
// directory after another sweep removed it, and a new session made its
// own at the same path, leaves the new one and what runs in it alone. It
// used to kill by path, so the live session's init died.
func TestSweepLockedChecksPath(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "s1-1-flock-1")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	lock, err := lockDir(dir) // the dead session's directory, as our sweep locked it
	if err != nil {
		t.Fatal(err)
	}
	// Another sweep removed it; the live session made its own, and its
	// process is in it (a v1-style cgroup.procs: Kill reads and kills it).
	if err := os.Remove(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	live := exec.Command("sleep", "60")
	if err := live.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { live.Process.Kill(); live.Wait() }()
	if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(live.Process.Pid)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if sweepLocked(dir, lock) {
		t.Error("a sweep of a directory made again after its lock says it swept it")
	}
	var ws unix.WaitStatus
	if pid, err := unix.Wait4(live.Process.Pid, &ws, unix.WNOHANG, nil); pid != 0 || err != nil {
		t.Errorf("the live session's process was killed by a sweep of the directory before it: wait4 %d, %v, %v", pid, err, ws)
	}
	if _, err := os.Stat(filepath.Join(dir, "cgroup.procs")); err != nil {
		t.Errorf("the live session's directory was touched: %v", err)
	}
	// The check must not stop a sweep of the directory it did lock.
	os.Remove(filepath.Join(dir, "cgroup.procs"))
	lock, err = lockDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !sweepLocked(dir, lock) {
		t.Error("a sweep of the directory it locked says it did nothing")
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("a stale directory the sweep held was not removed: %v", err)
	}
}

// TestSweepSparesLiveCreators: a sweep leaves a session directory alone,
// locked or not, while the supervisor its name names runs (one being made
// is not locked yet), and removes one whose supervisor is gone and which
// nothing holds.
func TestSweepSparesLiveCreators(t *testing.T) {
	parent := t.TempDir()
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	live := filepath.Join(parent, Name("s1", os.Getpid()))
	gone := filepath.Join(parent, "s2-"+strconv.Itoa(dead.Process.Pid)+"-"+lockMark+"-1")
	for _, d := range []string{live, gone} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if got := sweepParent(parent); !slices.Equal(got, []string{"s2"}) {
		t.Errorf("swept sessions %q, want [s2]", got)
	}
	if _, err := os.Stat(live); err != nil {
		t.Errorf("the directory of a live supervisor, not locked yet, was swept: %v", err)
	}
	if _, err := os.Stat(gone); !os.IsNotExist(err) {
		t.Errorf("the directory of a dead supervisor that nothing holds was not swept: %v", err)
	}
}

// TestSweepCountsOnlyRemoved: a dead session's directory the sweep cannot
// remove (here a plain directory that is not empty; in production a
// user's ronly before root's cgroup, or processes it cannot kill) is not
// reported swept, so that it is reported lost once, by the sweep that
// does remove it.
func TestSweepCountsOnlyRemoved(t *testing.T) {
	parent := t.TempDir()
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(parent, "s3-"+strconv.Itoa(dead.Process.Pid)+"-"+lockMark+"-1")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	stuck := filepath.Join(dir, "in-the-way")
	if err := os.WriteFile(stuck, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if got := sweepParent(parent); len(got) != 0 {
		t.Errorf("a sweep that could not remove the directory reports %q swept", got)
	}
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("the directory went anyway: %v", err)
	}
	os.Remove(stuck)
	if got := sweepParent(parent); !slices.Equal(got, []string{"s3"}) {
		t.Errorf("the sweep that removed it reports %q, want [s3]", got)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("not removed: %v", err)
	}
}

// The hierarchies are the roots of cgroup mounts: the first cgroup2 one,
// and for each v1 controller the first mount whose options name it. A
// bind of a sub-cgroup (a container's view) is no hierarchy's root.
func TestHierarchies(t *testing.T) {
	table := []mountinfo.Mount{
		{Point: "/", Root: "/", FSType: "ext4", SuperOpts: "rw"},
		{Point: "/ctr/sys/fs/cgroup", Root: "/system.slice/ctr", FSType: "cgroup2", SuperOpts: "rw"},
		{Point: "/sys/fs/cgroup/unified", Root: "/", FSType: "cgroup2", SuperOpts: "rw,nsdelegate"},
		{Point: "/other/unified", Root: "/", FSType: "cgroup2", SuperOpts: "rw"},
		{Point: "/ctr/sys/fs/cgroup/memory", Root: "/docker", FSType: "cgroup", SuperOpts: "rw,memory"},
		{Point: "/sys/fs/cgroup/memory", Root: "/", FSType: "cgroup", SuperOpts: "rw,memory"},
		{Point: "/sys/fs/cgroup/cpu,cpuacct", Root: "/", FSType: "cgroup", SuperOpts: "rw,cpu,cpuacct"},
		{Point: "/sys/fs/cgroup/pids", Root: "/", FSType: "cgroup", SuperOpts: "rw,nosuid,pids"},
		{Point: "/sys/fs/cgroup/systemd", Root: "/", FSType: "cgroup", SuperOpts: "rw,xattr,name=systemd"},
		{Point: "/again/memory", Root: "/", FSType: "cgroup", SuperOpts: "rw,memory"},
	}
	m := hierarchies(table)
	if m.v2 != "/sys/fs/cgroup/unified" {
		t.Errorf("v2 = %q, want /sys/fs/cgroup/unified", m.v2)
	}
	// Only the controllers limits use (v1Controller).
	want := map[string]string{"memory": "/sys/fs/cgroup/memory", "pids": "/sys/fs/cgroup/pids", "cpuacct": "/sys/fs/cgroup/cpu,cpuacct"}
	for c, p := range want {
		if m.v1[c] != p {
			t.Errorf("v1[%s] = %q, want %q", c, m.v1[c], p)
		}
	}
	for c := range m.v1 {
		if _, ok := want[c]; !ok {
			t.Errorf("v1 has %q (%s), which limits do not use", c, m.v1[c])
		}
	}
}

// KnowMounts is a hint: once this process found the hierarchies, a table
// handed over later changes nothing.
func TestKnowMountsAfterFound(t *testing.T) {
	before, err := findMounts()
	if err != nil {
		t.Fatal(err)
	}
	KnowMounts([]mountinfo.Mount{{Point: "/elsewhere", Root: "/", FSType: "cgroup2"}})
	after, err := findMounts()
	if err != nil {
		t.Fatal(err)
	}
	if after.v2 != before.v2 || len(after.v1) != len(before.v1) {
		t.Errorf("after KnowMounts: %+v, before: %+v", after, before)
	}
}
