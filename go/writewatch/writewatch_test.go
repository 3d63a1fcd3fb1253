package writewatch

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"ronly.dev/ronly/go/writewatch/rawtp"
)

// The tests need root (BPF, cgroups, mounts). They run in a copy of the test
// binary in a private mount namespace, so that the tmpfs mounts go away with
// it however it ends; the parent removes the cgroups it made once it exits,
// and cgroups left by a run that was killed outright are removed by the next.

const (
	envNS    = "WRITEWATCH_TEST_NS"    // set in the copy in the private mount namespace
	envChild = "WRITEWATCH_TEST_CHILD" // a child that runs a measurement loop
	prefix   = "ronly-test-"           // cgroups made by these tests: ronly-test-<pid>-<random>
)

// testHooks are the hooks the tests' Watches may use:
// RONLY_WRITEWATCH_HOOKS=fexit or =tracepoint pins one (on a kernel with
// fexit, run the tests once with each); by default the one Start would
// choose.
var testHooks = map[string]Hooks{"fexit": FexitOnly, "tracepoint": TracepointOnly}[os.Getenv("RONLY_WRITEWATCH_HOOKS")]

func TestMain(m *testing.M) {
	if h := os.Getenv("RONLY_WRITEWATCH_HOOKS"); h == "" {
		testHooks = FexitOrTracepoint
	} else if h != "fexit" && h != "tracepoint" {
		fmt.Fprintf(os.Stderr, "RONLY_WRITEWATCH_HOOKS=%q: want fexit or tracepoint\n", h)
		os.Exit(2)
	}
	if os.Getenv(envChild) != "" {
		os.Exit(childLoop())
	}
	if os.Geteuid() == 0 && os.Getenv(envNS) == "" {
		os.Exit(inMountNamespace())
	}
	if os.Getenv(envNS) != "" {
		// Mounts made here must not propagate to the host's namespace.
		if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
			fmt.Fprintln(os.Stderr, "make / private:", err)
			os.Exit(1)
		}
	}
	os.Exit(m.Run())
}

// inMountNamespace runs the tests in a copy of this binary in a new mount
// namespace and cleans up its cgroups after it.
func inMountNamespace() int {
	mnt, err := cgroup2Mount()
	if err == nil {
		sweepCgroups(mnt, func(pid int) bool { return unix.Kill(pid, 0) == unix.ESRCH })
	}
	runtime.LockOSThread() // Pdeathsig follows the thread that started the child
	cmd := exec.Command(os.Args[0], os.Args[1:]...)
	cmd.Env = append(os.Environ(), envNS+"=1")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: unix.CLONE_NEWNS, Pdeathsig: syscall.SIGKILL}
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, unix.SIGINT, unix.SIGTERM, unix.SIGQUIT, unix.SIGHUP)
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "start tests in a mount namespace:", err)
		return 1
	}
	go func() {
		for s := range sigs {
			cmd.Process.Signal(s)
		}
	}()
	err = cmd.Wait()
	if mnt != "" {
		child := cmd.Process.Pid
		sweepCgroups(mnt, func(pid int) bool { return pid == child })
	}
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			if ee.ExitCode() > 0 {
				return ee.ExitCode()
			}
			return 1
		}
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// sweepCgroups removes the test cgroups whose maker matches.
func sweepCgroups(mnt string, stale func(pid int) bool) {
	dirs, _ := filepath.Glob(filepath.Join(mnt, prefix+"*"))
	for _, d := range dirs {
		f := strings.SplitN(strings.TrimPrefix(filepath.Base(d), prefix), "-", 2)
		if pid, err := strconv.Atoi(f[0]); err == nil && stale(pid) {
			if err := removeCgroup(d); err != nil {
				fmt.Fprintln(os.Stderr, "remove leftover test cgroup:", err)
			}
		}
	}
}

func needRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("these tests need root (BPF, cgroups, mounts); CI=true, so this fails instead of skipping")
	}
	t.Skip("needs root")
}

// cgroup2Mount finds where the cgroup v2 hierarchy is mounted
// (/sys/fs/cgroup, or /sys/fs/cgroup/unified on hybrid systems).
func cgroup2Mount() (string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", err
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		pre, post, ok := strings.Cut(s.Text(), " - ")
		fields, after := strings.Fields(pre), strings.Fields(post)
		if ok && len(fields) >= 5 && len(after) >= 1 && after[0] == "cgroup2" {
			return strings.ReplaceAll(fields[4], `\040`, " "), nil
		}
	}
	if err := s.Err(); err != nil {
		return "", err
	}
	return "", errors.New("no cgroup2 mount in /proc/self/mountinfo")
}

type cgroup struct {
	dir string
	id  uint64
	fd  int // for SysProcAttr.CgroupFD
}

// newCgroup makes a cgroup under parent ("" for a new one at the top of the
// hierarchy) and removes it at the end of the test.
func newCgroup(t testing.TB, parent string) cgroup {
	t.Helper()
	if parent == "" {
		mnt, err := cgroup2Mount()
		if err != nil {
			t.Fatal(err)
		}
		parent = mnt
	}
	b := make([]byte, 6)
	rand.Read(b)
	dir := filepath.Join(parent, fmt.Sprintf("%s%d-%s", prefix, os.Getpid(), hex.EncodeToString(b)))
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		removeCgroup(dir)
		t.Fatal(err)
	}
	t.Cleanup(func() {
		unix.Close(fd)
		if err := removeCgroup(dir); err != nil {
			t.Error(err)
		}
	})
	id, err := CgroupID(dir)
	if err != nil {
		t.Fatal(err)
	}
	return cgroup{dir: dir, id: id, fd: fd}
}

// removeCgroup kills what runs in a cgroup and removes it, children first.
func removeCgroup(dir string) error {
	subs, _ := os.ReadDir(dir)
	for _, s := range subs {
		if s.IsDir() {
			removeCgroup(filepath.Join(dir, s.Name()))
		}
	}
	os.WriteFile(filepath.Join(dir, "cgroup.kill"), []byte("1"), 0)
	var err error
	for range 100 {
		if err = os.Remove(dir); err == nil || errors.Is(err, os.ErrNotExist) {
			return nil
		}
		time.Sleep(10 * time.Millisecond) // EBUSY until the killed processes are gone
	}
	return err
}

// readOnlyDir is a tmpfs holding the file "existing", mounted read-only.
func readOnlyDir(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			t.Error(err)
		}
	})
	if err := os.WriteFile(filepath.Join(dir, "existing"), []byte("hi\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("", dir, "", unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
		t.Fatal(err)
	}
	return dir
}

// writableDir is a tmpfs for the write benchmark.
func writableDir(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=64m"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
	return dir
}

// command runs in cgroup g, or where the test runs if g is nil.
func command(g *cgroup, name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	if g != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: g.fd}
	}
	return cmd
}

// writes is a script whose refused calls were found with strace (dash,
// coreutils 9.1): touch openat(O_CREAT), mkdir mkdir, rm unlinkat, the
// shell's own openat for the redirection, mv renameat2, ln -s symlinkat,
// ln linkat. It names dir (a read-only directory) absolutely and
// relatively, from its parent and from dir itself; wantEvents has the
// paths the calls name.
func writes(dir string) string {
	return strings.NewReplacer("{dir}", dir, "{parent}", filepath.Dir(dir), "{base}", filepath.Base(dir)).Replace(
		`cd {parent}; touch {dir}/a; mkdir {base}/b; cd {base} && rm -f existing; echo x > {dir}/existing; ` +
			`mv existing c; ln -s /x {dir}/l; ln existing h; true`)
}

var wantCounts = map[string]uint64{"openat": 2, "mkdir": 1, "unlinkat": 1, "renameat2": 1, "symlinkat": 1, "linkat": 1}

type wantEvent struct{ comm, syscall, path string }

// wantEvents are the events of writes(dir), with the path argument of
// each call: mkdirat's second (si), mkdir's first (di), symlinkat's
// linkpath, the third (dx), linkat's new path, the fourth (r10), and
// renameat2's old path.
func wantEvents(dir string) []wantEvent {
	return []wantEvent{
		{"touch", "openat", dir + "/a"},
		{"mkdir", "mkdir", filepath.Base(dir) + "/b"},
		{"rm", "unlinkat", "existing"},
		{"sh", "openat", dir + "/existing"},
		{"mv", "renameat2", "existing"},
		{"ln", "symlinkat", dir + "/l"},
		{"ln", "linkat", "h"},
	}
}

type collector struct {
	mu  sync.Mutex
	evs []Event
}

func (c *collector) add(e Event) {
	c.mu.Lock()
	c.evs = append(c.evs, e)
	c.mu.Unlock()
}

func (c *collector) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.evs)
}

func (c *collector) take() []Event {
	c.mu.Lock()
	defer c.mu.Unlock()
	evs := c.evs
	c.evs = nil
	return evs
}

func start(t testing.TB) *Watch {
	t.Helper()
	w, err := Start(testHooks)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := w.Close(); err != nil {
			t.Error(err)
		}
	})
	return w
}

// countKeys lists what the counts map holds, for tests that need to see
// that nothing was counted.
func countKeys(t testing.TB, w *Watch) []countKey {
	t.Helper()
	keys, err := w.countKeys(func(uint64) bool { return true })
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

func TestCountsAndEvents(t *testing.T) {
	needRoot(t)
	ro := readOnlyDir(t)
	g := newCgroup(t, "")
	w := start(t)
	var c collector
	w.Events(c.add)
	if err := w.Add(g.id); err != nil {
		t.Fatal(err)
	}
	before := time.Now()

	// Outside the cgroup: refused all the same, but not counted.
	out := command(nil, "/bin/sh", "-c", writes(ro))
	if b, err := out.CombinedOutput(); err != nil || !bytes.Contains(b, []byte("Read-only file system")) {
		t.Fatalf("script outside the cgroup: %v\n%s", err, b)
	}
	if keys := countKeys(t, w); len(keys) != 0 {
		t.Errorf("counted outside the cgroup: %+v", keys)
	}

	in := command(&g, "/bin/sh", "-c", writes(ro))
	if b, err := in.CombinedOutput(); err != nil || !bytes.Contains(b, []byte("Read-only file system")) {
		t.Fatalf("script in the cgroup: %v\n%s", err, b)
	}
	// The reader goroutine delivers them on its own, within readEvery.
	want := wantEvents(ro)
	deadline := time.Now().Add(10 * readEvery)
	for c.len() < len(want) && time.Now().Before(deadline) {
		time.Sleep(readEvery / 10)
	}
	if n := c.len(); n != len(want) {
		t.Errorf("%d events after %v, want %d", n, 10*readEvery, len(want))
	}
	counts, err := w.Remove(g.id)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(counts, wantCounts) {
		t.Errorf("counts = %v, want %v", counts, wantCounts)
	}
	if keys := countKeys(t, w); len(keys) != 0 {
		t.Errorf("Remove left counts behind: %+v", keys)
	}

	evs := c.take()
	var got []wantEvent
	for _, e := range evs {
		got = append(got, wantEvent{e.Comm, e.Syscall, e.Path})
		if e.CgroupID != g.id {
			t.Errorf("event %+v: cgroup %d, want %d", e, e.CgroupID, g.id)
		}
		if e.PID == out.Process.Pid {
			t.Errorf("event %+v from the process outside the cgroup", e)
		}
		if e.Time.Before(before.Add(-time.Millisecond)) || e.Time.After(time.Now()) {
			t.Errorf("event %+v: time %v not between %v and now", e, e.Time, before)
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("events (comm, syscall, path):\n got %q\nwant %q", got, want)
	}
	for _, e := range evs {
		if e.Comm == "sh" && e.PID != in.Process.Pid {
			t.Errorf("shell's event has pid %d, want %d", e.PID, in.Process.Pid)
		}
		if e.Comm != "sh" && e.PID == in.Process.Pid {
			t.Errorf("%s's event has the shell's pid %d", e.Comm, e.PID)
		}
	}

	// No longer watched: not counted again.
	if b, err := command(&g, "/bin/sh", "-c", writes(ro)).CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	if keys := countKeys(t, w); len(keys) != 0 {
		t.Errorf("counted after Remove: %+v", keys)
	}
	if _, err := w.Remove(g.id); err == nil {
		t.Error("second Remove: no error")
	}
	if ev, n, err := w.Dropped(); err != nil || ev != 0 || n != 0 {
		t.Errorf("Dropped() = %d, %d, %v; want 0, 0, nil", ev, n, err)
	}
}

// longPath names dir/long with more than 255 bytes.
func longPath(dir string) string { return dir + strings.Repeat("/.", 200) + "/long" }

// TestPaths: calls by file descriptor have no path, nor does utimensat
// with a NULL one; a path relative to a directory fd is reported as given;
// a long one is cut at 255 bytes.
func TestPaths(t *testing.T) {
	needRoot(t)
	ro := readOnlyDir(t)
	g := newCgroup(t, "")
	w := start(t)
	var c collector
	w.Events(c.add)
	if err := w.Add(g.id); err != nil {
		t.Fatal(err)
	}
	measure(t, &g, "paths", 1, ro)
	if _, err := w.Remove(g.id); err != nil {
		t.Fatal(err)
	}
	type sp struct{ syscall, path string }
	var got []sp
	for _, e := range c.take() {
		got = append(got, sp{e.Syscall, e.Path})
	}
	want := []sp{
		{"fchmod", ""},
		{"utimensat", ""},
		{"mkdirat", "sub"},
		{"faccessat", ro + "/existing"},
		{"mkdirat", longPath(ro)[:pathMax-1]},
		{"renameat2", "existing"},
	}
	if !slices.Equal(got, want) {
		t.Errorf("events (syscall, path):\n got %q\nwant %q", got, want)
	}
}

// The fast path is what every syscall on the host pays (with the
// tracepoint; with fexit, every write-class call): it must stay a load and
// a compare before the exit. And the paths map must hold every number
// pathArgs names.
func TestFastPath(t *testing.T) {
	for _, p := range []*builder{program(true, nil), program(false, nil),
		program(true, &target{nr: unix.SYS_MKDIRAT}), program(false, &target{nr: unix.SYS_MKDIRAT})} {
		fastPath(t, p)
	}
	for nr, off := range pathArgs {
		if nr < 0 || nr >= maxNr {
			t.Errorf("syscall %d (%s) does not fit the paths map", nr, rawtp.SyscallName(uint32(nr), 0))
		}
		if !slices.Contains([]uint32{ptRegsDI, ptRegsSI, ptRegsDX, ptRegsR10}, off) {
			t.Errorf("syscall %s: offset %d is no argument's", rawtp.SyscallName(uint32(nr), 0), off)
		}
	}
}

func fastPath(t *testing.T, p *builder) {
	first, cmp := p.insns[0], p.insns[1]
	if first.OpCode != asm.LoadMemOp(asm.DWord) || first.Dst != asm.R2 || first.Src != asm.R1 || first.Offset != 8 {
		t.Errorf("first instruction %v, want r2 = *(u64 *)(r1 + 8)", first)
	}
	if cmp.OpCode != asm.JNE.Op(asm.ImmSource) || cmp.Dst != asm.R2 || cmp.Constant != errEROFS || p.symbol(cmp.Reference()) != p.symbol("out") {
		t.Errorf("second instruction %v, want if r2 != -EROFS goto out", cmp)
	}
	found := false
	for pc, i := range p.insns {
		if i.Symbol() != "" && i.Symbol() == p.symbol("out") {
			found = true
			if pc+1 >= len(p.insns) || i.OpCode != asm.Mov.Op(asm.ImmSource) || i.Dst != asm.R0 || i.Constant != 0 ||
				p.insns[pc+1].OpCode != asm.Return().OpCode {
				t.Errorf("out: %v, want r0 = 0; exit", p.insns[pc:])
			}
		}
	}
	if !found {
		t.Error("no instruction is labelled out")
	}
}

// Several ronly processes each have their own Watch: each counts alone.
func TestTwoWatches(t *testing.T) {
	needRoot(t)
	ro := readOnlyDir(t)
	g := newCgroup(t, "")
	w1, w2 := start(t), start(t)
	for _, w := range []*Watch{w1, w2} {
		if err := w.Add(g.id); err != nil {
			t.Fatal(err)
		}
	}
	if b, err := command(&g, "/bin/sh", "-c", writes(ro)).CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	for i, w := range []*Watch{w1, w2} {
		counts, err := w.Remove(g.id)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(counts, wantCounts) {
			t.Errorf("watch %d: counts = %v, want %v", i+1, counts, wantCounts)
		}
	}
}

// Shared Watches, one per ronly process and cgroup, use one program: each
// counts its own cgroup alone, and the program goes with the last of them.
func TestSharedWatches(t *testing.T) {
	needRoot(t)
	ro := readOnlyDir(t)
	g1, g2 := newCgroup(t, ""), newCgroup(t, "")
	w1, err := Shared(testHooks)
	if err != nil {
		t.Fatal(err)
	}
	w2, err := Shared(testHooks)
	if err != nil {
		w1.Close()
		t.Fatal(err)
	}
	if progID(t, w1) != progID(t, w2) {
		t.Errorf("the second Shared Watch loaded a program of its own")
	}
	if err := w1.Add(g1.id); err != nil {
		t.Fatal(err)
	}
	if err := w2.Add(g2.id); err != nil {
		t.Fatal(err)
	}
	// Twice in the second cgroup, so that mixed-up counts would show.
	for _, g := range []*cgroup{&g1, &g2, &g2} {
		if b, err := command(g, "/bin/sh", "-c", writes(ro)).CombinedOutput(); err != nil {
			t.Fatalf("%v\n%s", err, b)
		}
	}
	for i, x := range []struct {
		w    *Watch
		g    *cgroup
		runs uint64
	}{{w1, &g1, 1}, {w2, &g2, 2}} {
		counts, err := x.w.Remove(x.g.id)
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]uint64{}
		for k, v := range wantCounts {
			want[k] = v * x.runs
		}
		if !reflect.DeepEqual(counts, want) {
			t.Errorf("watch %d: counts = %v, want %v", i+1, counts, want)
		}
	}
	// The links the two held, by id: other ronly sessions on the host may
	// hold a shared program of their own meanwhile, so finding none by
	// name would prove nothing here.
	var ids []link.ID
	for _, l := range w1.links {
		info, err := l.Info()
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, info.ID)
	}
	if len(ids) == 0 {
		t.Fatal("the Shared Watch holds no link")
	}
	for _, w := range []*Watch{w1, w2} {
		if err := w.Close(); err != nil {
			t.Error(err)
		}
	}
	if w1.joined {
		t.Logf("the first Shared Watch joined another process's programs: whether the last holder detaches them is not seen here")
		ids = nil
	}
	for _, id := range ids {
		if l, err := link.NewFromID(id); err == nil {
			l.Close()
			t.Errorf("link %d is still attached after the last Watch closed", id)
		} else if !errors.Is(err, unix.ENOENT) {
			t.Errorf("link %d: %v", id, err)
		}
	}
}

// A Shared Watch whose process was killed leaves its cgroup in the shared
// maps; the next one to join forgets it once the cgroup is gone, and only
// it.
func TestSharedPrunesGoneCgroups(t *testing.T) {
	checkJoinPrunes(t, testHooks, func() (close func()) {
		w2, err := Shared(testHooks)
		if err != nil {
			t.Fatal(err)
		}
		return func() { w2.Close() }
	})
}

// checkJoinPrunes has a Shared Watch of hooks watch two cgroups, one of
// which refuses writes and then goes away, forgotten by the Watch as if
// its process had been killed; then join has another Watch join the shared
// program, and the shared maps must have lost the gone cgroup, with its
// counts, and kept the live one. join returns what closes its Watch.
func checkJoinPrunes(t *testing.T, hooks Hooks, join func() (close func())) {
	needRoot(t)
	ro := readOnlyDir(t)
	keep, g := newCgroup(t, ""), newCgroup(t, "")
	w, err := Shared(hooks)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	for _, id := range []uint64{keep.id, g.id} {
		if err := w.Add(id); err != nil {
			t.Fatal(err)
		}
	}
	if b, err := command(&g, "/bin/sh", "-c", writes(ro)).CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	delete(w.added, g.id) // as if killed: it never removes g
	if err := removeCgroup(g.dir); err != nil {
		t.Fatal(err)
	}
	defer join()()
	var v uint32
	if err := w.maps[mapSessions].Lookup(g.id, &v); !errors.Is(err, ebpf.ErrKeyNotExist) {
		t.Errorf("the removed cgroup is still watched: %v", err)
	}
	if err := w.maps[mapSessions].Lookup(keep.id, &v); err != nil {
		t.Errorf("a live cgroup is no longer watched: %v", err)
	}
	for _, k := range countKeys(t, w) {
		if k.Cgroup == g.id {
			t.Errorf("counts of the removed cgroup are left: %+v", k)
		}
	}
}

// progID is the kernel's id of the program a Watch holds.
func progID(t *testing.T, w *Watch) ebpf.ProgramID {
	t.Helper()
	info, err := w.progs[0].Info()
	if err != nil {
		t.Fatal(err)
	}
	id, ok := info.ID()
	if !ok {
		t.Fatal("the kernel gave the program no id")
	}
	return id
}

// A signal handled right after a refused call returns through
// rt_sigreturn, which restores the call's -EROFS as its own result: that is
// no second refusal, and must not be counted as one.
func TestSignalsAreNoRefusals(t *testing.T) {
	needRoot(t)
	ro := readOnlyDir(t)
	g := newCgroup(t, "")
	w := start(t)
	if err := w.Add(g.id); err != nil {
		t.Fatal(err)
	}
	const n = 20000
	measure(t, &g, "erofs-signals", n, ro)
	counts, err := w.Remove(g.id)
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]uint64{"mkdirat": n + n/10}; !reflect.DeepEqual(counts, want) {
		t.Errorf("counts = %v, want %v", counts, want)
	}
}

// When nobody reads the ring buffer it fills up: events are lost and
// counted as such, counts are exact.
func TestRingFull(t *testing.T) {
	needRoot(t)
	ro := readOnlyDir(t)
	g := newCgroup(t, "")
	w := start(t)
	if err := w.Add(g.id); err != nil {
		t.Fatal(err)
	}
	// Records are as long as their path: twice what the ring holds.
	path := filepath.Join(ro, "x") // what the child's mkdirat names
	record := (recordLen + len(path) + 1 + unix.BPF_RINGBUF_HDR_SZ + 7) &^ 7
	n := 2 * ringSize / record
	measure(t, &g, "erofs", n, ro)
	var delivered uint64
	var badPaths []string
	w.Events(func(e Event) {
		delivered++
		if e.Path != path && len(badPaths) < 5 {
			badPaths = append(badPaths, e.Path)
		}
	})
	counts, err := w.Remove(g.id)
	if err != nil {
		t.Fatal(err)
	}
	lost, uncounted, err := w.Dropped()
	if err != nil {
		t.Fatal(err)
	}
	if uncounted != 0 {
		t.Errorf("%d refusals not counted", uncounted)
	}
	calls := uint64(n + n/10) // childLoop warms up with n/10 more
	if counts["mkdirat"] != calls || len(counts) != 1 {
		t.Errorf("counts = %v, want mkdirat: %d", counts, calls)
	} else {
		t.Logf("counts = %v", counts)
	}
	if lost == 0 || delivered+lost != calls {
		t.Errorf("%d events delivered and %d lost, want %d in all, some lost", delivered, lost, calls)
	}
	if len(badPaths) > 0 {
		t.Errorf("events with paths %q, want %q", badPaths, path)
	}
	t.Logf("ring buffer held %d events of %d bytes", delivered, record)
}

// A process in a cgroup below a watched one counts for the nearest watched
// cgroup above it.
func TestDescendants(t *testing.T) {
	needRoot(t)
	ro := readOnlyDir(t)
	top := newCgroup(t, "")
	mid := newCgroup(t, top.dir)
	leaf := newCgroup(t, mid.dir)
	w := start(t)
	var c collector
	w.Events(c.add)
	for _, id := range []uint64{top.id, leaf.id} {
		if err := w.Add(id); err != nil {
			t.Fatal(err)
		}
	}
	run := func(g cgroup, script string) {
		t.Helper()
		if b, err := command(&g, "/bin/sh", "-c", script).CombinedOutput(); err != nil {
			t.Fatalf("%v\n%s", err, b)
		}
	}
	run(mid, "mkdir "+ro+"/x; true")                         // counts for top
	run(leaf, "mkdir "+ro+"/x; rm -f "+ro+"/existing; true") // counts for leaf
	leafCounts, err := w.Remove(leaf.id)
	if err != nil {
		t.Fatal(err)
	}
	run(leaf, "mkdir "+ro+"/x; true") // leaf unwatched: counts for top now
	topCounts, err := w.Remove(top.id)
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]uint64{"mkdir": 1, "unlinkat": 1}; !reflect.DeepEqual(leafCounts, want) {
		t.Errorf("leaf counts = %v, want %v", leafCounts, want)
	}
	if want := map[string]uint64{"mkdir": 2}; !reflect.DeepEqual(topCounts, want) {
		t.Errorf("top counts = %v, want %v", topCounts, want)
	}
	var ids []uint64
	for _, e := range c.take() {
		ids = append(ids, e.CgroupID)
	}
	if want := []uint64{top.id, leaf.id, leaf.id, top.id}; !slices.Equal(ids, want) {
		t.Errorf("event cgroups = %v, want %v", ids, want)
	}
}

// Calls through the i386 ABI have i386 numbers (mkdir is 39, getpid on
// x86_64): they must be counted as "other", not misnamed. Two hand-made
// static programs call mkdir(path, 0755) with int $0x80 and exit: a 32-bit
// one, and a 64-bit one (whose registers say x86_64, but its call is i386).
func TestI386(t *testing.T) {
	needRoot(t)
	ro := readOnlyDir(t)
	g := newCgroup(t, "")
	w := start(t)
	var c collector
	w.Events(c.add)
	if err := w.Add(g.id); err != nil {
		t.Fatal(err)
	}
	bin := t.TempDir()
	// The 32-bit program first: it asks the kernel whether it has an i386
	// entry at all.
	for _, p := range []struct {
		name string
		prog []byte
	}{
		{"mkdir32", elf32Mkdir(ro + "/i386")},
		{"mkdir64", elf64Int80Mkdir(ro + "/int80")},
	} {
		path := filepath.Join(bin, p.name)
		if err := os.WriteFile(path, p.prog, 0o755); err != nil {
			t.Fatal(err)
		}
		if b, err := command(&g, path).CombinedOutput(); err != nil {
			if p.name == "mkdir32" && errors.Is(err, unix.ENOEXEC) {
				// Booted without IA32 emulation (ia32_emulation=0, as
				// hardened distributions do): no i386 call can be made,
				// so there is nothing to count. Not applicable; the
				// program's own refusal is the kernel's answer.
				t.Logf("not applicable: the kernel runs no i386 program (%v), so no i386 call reaches the counter", err)
				return
			}
			t.Fatalf("%s: %v\n%s", p.name, err, b)
		}
	}
	counts, err := w.Remove(g.id)
	if err != nil {
		t.Fatal(err)
	}
	// The tracepoint sees an i386 number, which names another call in the
	// x86_64 table: "other". An fexit program sits on __ia32_sys_mkdir and
	// knows which call it is.
	name := "other"
	if w.Hook() == "fexit" {
		name = "mkdir"
	}
	if want := map[string]uint64{name: 2}; !reflect.DeepEqual(counts, want) {
		t.Errorf("counts = %v, want %v (%s)", counts, want, w.Hook())
	}
	var comms []string
	for _, e := range c.take() {
		comms = append(comms, e.Comm+":"+e.Syscall)
		if e.Path != "" {
			t.Errorf("%s: path %q for an i386 call, want none", e.Comm, e.Path)
		}
	}
	slices.Sort(comms)
	if want := []string{"mkdir32:" + name, "mkdir64:" + name}; !slices.Equal(comms, want) {
		t.Errorf("events = %v, want %v", comms, want)
	}
}

// elf32Mkdir is an i386 static executable: mkdir(path, 0755); exit(0).
func elf32Mkdir(path string) []byte {
	const base, hdr = 0x08048000, 52 + 32
	code := []byte{
		0xb8, 39, 0, 0, 0, // mov eax, 39 (mkdir)
		0xbb, 0, 0, 0, 0, // mov ebx, path
		0xb9, 0xed, 0x01, 0, 0, // mov ecx, 0755
		0xcd, 0x80, // int 0x80
		0xb8, 1, 0, 0, 0, // mov eax, 1 (exit)
		0x31, 0xdb, // xor ebx, ebx
		0xcd, 0x80, // int 0x80
	}
	binary.LittleEndian.PutUint32(code[6:], uint32(base+hdr+len(code)))
	size := hdr + len(code) + len(path) + 1
	le := binary.LittleEndian
	b := []byte{0x7f, 'E', 'L', 'F', 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	b = le.AppendUint16(b, 2) // ET_EXEC
	b = le.AppendUint16(b, 3) // EM_386
	b = le.AppendUint32(b, 1)
	b = le.AppendUint32(b, base+hdr) // entry
	b = le.AppendUint32(b, 52)       // phoff
	b = le.AppendUint32(b, 0)        // shoff
	b = le.AppendUint32(b, 0)        // flags
	b = le.AppendUint16(b, 52)       // ehsize
	b = le.AppendUint16(b, 32)       // phentsize
	b = le.AppendUint16(b, 1)        // phnum
	b = append(b, 0, 0, 0, 0, 0, 0)  // shentsize, shnum, shstrndx
	b = le.AppendUint32(b, 1)        // PT_LOAD
	b = le.AppendUint32(b, 0)        // offset
	b = le.AppendUint32(b, base)     // vaddr
	b = le.AppendUint32(b, base)     // paddr
	b = le.AppendUint32(b, uint32(size))
	b = le.AppendUint32(b, uint32(size))
	b = le.AppendUint32(b, 5) // R+X
	b = le.AppendUint32(b, 0x1000)
	b = append(b, code...)
	return append(append(b, path...), 0)
}

// elf64Int80Mkdir is an x86_64 static executable that calls mkdir through
// int $0x80, then exits with the x86_64 syscall.
func elf64Int80Mkdir(path string) []byte {
	const base, hdr = 0x400000, 64 + 56
	code := []byte{
		0xb8, 39, 0, 0, 0, // mov eax, 39 (i386 mkdir)
		0xbb, 0, 0, 0, 0, // mov ebx, path
		0xb9, 0xed, 0x01, 0, 0, // mov ecx, 0755
		0xcd, 0x80, // int 0x80
		0xb8, 60, 0, 0, 0, // mov eax, 60 (exit)
		0x31, 0xff, // xor edi, edi
		0x0f, 0x05, // syscall
	}
	binary.LittleEndian.PutUint32(code[6:], uint32(base+hdr+len(code)))
	size := hdr + len(code) + len(path) + 1
	le := binary.LittleEndian
	b := []byte{0x7f, 'E', 'L', 'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	b = le.AppendUint16(b, 2)    // ET_EXEC
	b = le.AppendUint16(b, 0x3e) // EM_X86_64
	b = le.AppendUint32(b, 1)
	b = le.AppendUint64(b, base+hdr) // entry
	b = le.AppendUint64(b, 64)       // phoff
	b = le.AppendUint64(b, 0)        // shoff
	b = le.AppendUint32(b, 0)        // flags
	b = le.AppendUint16(b, 64)       // ehsize
	b = le.AppendUint16(b, 56)       // phentsize
	b = le.AppendUint16(b, 1)        // phnum
	b = append(b, 0, 0, 0, 0, 0, 0)  // shentsize, shnum, shstrndx
	b = le.AppendUint32(b, 1)        // PT_LOAD
	b = le.AppendUint32(b, 5)        // R+X
	b = le.AppendUint64(b, 0)        // offset
	b = le.AppendUint64(b, base)     // vaddr
	b = le.AppendUint64(b, base)     // paddr
	b = le.AppendUint64(b, uint64(size))
	b = le.AppendUint64(b, uint64(size))
	b = le.AppendUint64(b, 0x1000)
	b = append(b, code...)
	return append(append(b, path...), 0)
}

// Without CAP_BPF (and CAP_SYS_ADMIN) Start fails at its first step, and
// says so. The capabilities are dropped on one locked thread, which then
// dies with its goroutine.
func TestStartWithoutCapabilities(t *testing.T) {
	needRoot(t)
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread exits with the goroutine
		hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
		var data [2]unix.CapUserData
		if err := unix.Capget(&hdr, &data[0]); err != nil {
			errc <- fmt.Errorf("capget: %w", err)
			return
		}
		for _, c := range []uint{unix.CAP_BPF, unix.CAP_PERFMON, unix.CAP_SYS_ADMIN} {
			data[c/32].Effective &^= 1 << (c % 32)
		}
		if err := unix.Capset(&hdr, &data[0]); err != nil {
			errc <- fmt.Errorf("capset: %w", err)
			return
		}
		w, err := Start(testHooks)
		if err == nil {
			w.Close()
			errc <- errors.New("Start succeeded without CAP_BPF")
			return
		}
		errc <- fmt.Errorf("Start: %w", err)
	}()
	err := <-errc
	if !errors.Is(err, unix.EPERM) {
		t.Fatalf("want EPERM, got %v", err)
	}
	for _, want := range []string{"create map sessions", "needs root"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	t.Log(err)
}

// A program the verifier rejects comes back with the verifier's reason.
func TestVerifierLogInError(t *testing.T) {
	needRoot(t)
	insns := asm.Instructions{asm.Return()} // r0 never set
	prog, err := loadProgram("bad", insns)
	if err == nil {
		prog.Close()
		t.Fatal("loaded a program that exits without setting r0")
	}
	if !strings.Contains(err.Error(), "verifier log") || !strings.Contains(err.Error(), "R0 !read_ok") {
		t.Errorf("error lacks the verifier's reason: %v", err)
	}
}

func TestCgroupIDRejectsOtherFileSystems(t *testing.T) {
	if _, err := CgroupID(t.TempDir()); err == nil || !strings.Contains(err.Error(), "not on a cgroup2") {
		t.Errorf("CgroupID(temp dir) = %v, want a cgroup2 error", err)
	}
}

func TestCloseTwice(t *testing.T) {
	needRoot(t)
	w, err := Start(testHooks)
	if err != nil {
		t.Fatal(err)
	}
	w.Events(func(Event) {})
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Add(1); err == nil {
		t.Error("Add after Close: no error")
	}
}

// childLoop is a measurement run in a child process (placed in a cgroup by
// its parent): it prints nanoseconds per operation.
func childLoop() int {
	n, _ := strconv.Atoi(os.Getenv("WW_N"))
	dir := os.Getenv("WW_DIR")
	var op func(i int)
	switch os.Getenv(envChild) {
	case "getppid":
		op = func(int) { unix.Getppid() }
	case "erofs":
		p := filepath.Join(dir, "x")
		op = func(int) { unix.Mkdir(p, 0o755) }
	case "erofs-signals": // the same, with signals landing on the calling thread
		p := filepath.Join(dir, "x")
		runtime.LockOSThread()
		tid := unix.Gettid()
		signal.Notify(make(chan os.Signal, 1), unix.SIGUSR1)
		go func() {
			for {
				unix.Tgkill(os.Getpid(), tid, unix.SIGUSR1)
				time.Sleep(time.Microsecond)
			}
		}()
		op = func(int) { unix.Mkdir(p, 0o755) }
	case "paths": // refused calls whose paths are not plain ones, for TestPaths
		op = func(int) {
			existing := filepath.Join(dir, "existing")
			fd, err := unix.Open(existing, unix.O_RDONLY|unix.O_CLOEXEC, 0)
			if err != nil {
				panic(err)
			}
			dfd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
			if err != nil {
				panic(err)
			}
			for i, call := range []func() error{
				func() error { return unix.Fchmod(fd, 0o600) }, // by fd: no path argument
				func() error { // futimens: utimensat with a NULL path
					_, _, e := unix.Syscall6(unix.SYS_UTIMENSAT, uintptr(fd), 0, 0, 0, 0, 0)
					if e != 0 {
						return e
					}
					return nil
				},
				func() error { return unix.Mkdirat(dfd, "sub", 0o755) },  // relative to a directory fd
				func() error { return unix.Access(existing, unix.W_OK) }, // faccessat
				func() error { return unix.Mkdir(longPath(dir), 0o755) }, // cut at 255 bytes
				func() error { return unix.Renameat2(dfd, "existing", dfd, "y", 0) },
			} {
				if err := call(); err != unix.EROFS {
					panic(fmt.Sprintf("call %d: %v, want EROFS", i, err))
				}
			}
			unix.Close(dfd)
			unix.Close(fd)
		}
	case "files": // create and remove a file: openat, close, unlinkat
		op = func(i int) {
			p := filepath.Join(dir, strconv.Itoa(i))
			fd, err := unix.Open(p, unix.O_CREAT|unix.O_WRONLY|unix.O_CLOEXEC, 0o644)
			if err != nil {
				panic(err)
			}
			unix.Close(fd)
			if err := unix.Unlink(p); err != nil {
				panic(err)
			}
		}
	default:
		return 2
	}
	runtime.LockOSThread()
	for i := range n / 10 { // warm up
		op(i)
	}
	t0 := time.Now()
	for i := range n {
		op(i)
	}
	fmt.Println(float64(time.Since(t0).Nanoseconds()) / float64(n))
	return 0
}

func measure(t *testing.T, g *cgroup, op string, n int, dir string) float64 {
	t.Helper()
	cmd := command(g, os.Args[0])
	cmd.Env = append(os.Environ(), envChild+"="+op, "WW_N="+strconv.Itoa(n), "WW_DIR="+dir)
	b, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: %v", op, err)
	}
	v, err := strconv.ParseFloat(strings.TrimSpace(string(b)), 64)
	if err != nil {
		t.Fatalf("%s: %q", op, b)
	}
	return v
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

// TestOverhead logs what an attached program costs: per getppid (never
// -EROFS: the fast path), per refused mkdir outside and inside a watched
// cgroup (Go calls mkdirat), and per file created and removed in a tmpfs. Every configuration
// runs in a fresh child process, rounds interleave the configurations, and
// the medians are logged.
func TestOverhead(t *testing.T) {
	needRoot(t)
	if testing.Short() {
		t.Skip("takes a few seconds")
	}
	ro := readOnlyDir(t)
	rw := writableDir(t)
	g := newCgroup(t, "")
	type config struct {
		name    string
		op      string
		n       int
		dir     string
		watches int  // programs attached; negative: that many Shared Watches
		inside  bool // the child runs in the watched cgroup
		empty   bool // attach a program that only returns, instead
	}
	configs := []config{
		{"getppid, no program", "getppid", 2_000_000, "", 0, false, false},
		{"getppid, empty program", "getppid", 2_000_000, "", 0, false, true},
		{"getppid, 1 program, outside", "getppid", 2_000_000, "", 1, false, false},
		{"getppid, 1 program, inside", "getppid", 2_000_000, "", 1, true, false},
		{"getppid, 4 programs, outside", "getppid", 2_000_000, "", 4, false, false},
		{"getppid, 4 Shared Watches, outside", "getppid", 2_000_000, "", -4, false, false},
		{"refused mkdirat, no program", "erofs", 200_000, ro, 0, false, false},
		{"refused mkdirat, 1 program, outside", "erofs", 200_000, ro, 1, false, false},
		{"refused mkdirat, 1 program, inside", "erofs", 200_000, ro, 1, true, false},
		{"create+unlink, no program", "files", 20_000, rw, 0, false, false},
		{"create+unlink, 1 program", "files", 20_000, rw, 1, true, false},
	}
	const rounds = 7
	results := make([][]float64, len(configs))
	var dropped uint64
	once := func(c config) float64 {
		start, n := Start, c.watches
		if n < 0 {
			start, n = Shared, -n
		}
		for range n {
			w, err := start(testHooks)
			if err != nil {
				t.Fatal(err)
			}
			defer func() {
				ev, _, _ := w.Dropped()
				dropped += ev
				if err := w.Close(); err != nil {
					t.Error(err)
				}
			}()
			if err := w.Add(g.id); err != nil {
				t.Fatal(err)
			}
			w.Events(func(Event) {}) // the reader goroutine runs, as it would in use
		}
		if c.empty {
			defer attachEmpty(t)()
		}
		var where *cgroup
		if c.inside {
			where = &g
		}
		return measure(t, where, c.op, c.n, c.dir)
	}
	for range rounds {
		for i, c := range configs {
			results[i] = append(results[i], once(c))
		}
	}
	for i, c := range configs {
		t.Logf("%-36s median %8.1f ns/op  (rounds: %s)", c.name, median(results[i]), fmtAll(results[i]))
	}
	t.Logf("events lost to a full ring buffer during the inside runs: %d", dropped)

	// The program's own time per run, from the kernel's BPF statistics
	// (which add two clock reads per run, so these are upper bounds). It
	// also runs for every other task's syscalls meanwhile, a small share.
	stats := enableStats(t)
	defer stats.Close()
	for _, c := range configs {
		if c.watches != 1 {
			continue
		}
		w := start(t)
		if err := w.Add(g.id); err != nil {
			t.Fatal(err)
		}
		w.Events(func(Event) {})
		var where *cgroup
		if c.inside {
			where = &g
		}
		ns0, n0 := progStats(t, w.progs[0])
		measure(t, where, c.op, c.n, c.dir)
		ns1, n1 := progStats(t, w.progs[0])
		t.Logf("%-36s program: %8.1f ns/run over %d runs", c.name, float64(ns1-ns0)/float64(n1-n0), n1-n0)
		if _, err := w.Remove(g.id); err != nil {
			t.Fatal(err)
		}
		w.Close()
	}
}

// attachEmpty attaches "r0 = 0; exit" to sys_exit: what any program there
// costs, however short.
func attachEmpty(t testing.TB) (detach func()) {
	t.Helper()
	prog, err := loadProgram("empty", asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()})
	if err != nil {
		t.Fatal(err)
	}
	l, err := link.AttachRawTracepoint(link.RawTracepointOptions{Name: "sys_exit", Program: prog})
	if err != nil {
		prog.Close()
		t.Fatal(err)
	}
	return func() { l.Close(); prog.Close() }
}

// enableStats turns on run time statistics for all BPF programs until the
// returned fd is closed (BPF_ENABLE_STATS, BPF_STATS_RUN_TIME).
func enableStats(t testing.TB) io.Closer {
	t.Helper()
	c, err := ebpf.EnableStats(unix.BPF_STATS_RUN_TIME)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// progStats reads the program's run time and run count.
func progStats(t testing.TB, p *ebpf.Program) (ns, runs uint64) {
	t.Helper()
	st, err := p.Stats()
	if err != nil {
		t.Fatal(err)
	}
	return uint64(st.Runtime.Nanoseconds()), st.RunCount
}

func fmtAll(v []float64) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = strconv.FormatFloat(x, 'f', 0, 64)
	}
	return strings.Join(s, " ")
}

// BenchmarkGetppid: the fast path, for the benchmark process (never in a
// watched cgroup).
func BenchmarkGetppid(b *testing.B) {
	needRoot(b)
	for _, attached := range []bool{false, true} {
		b.Run(map[bool]string{false: "detached", true: "attached"}[attached], func(b *testing.B) {
			if attached {
				start(b)
			}
			for b.Loop() {
				unix.Getppid()
			}
		})
	}
}

// CgroupID returns the id of a cgroup v2 directory, which is its inode
// number: what bpf_get_current_cgroup_id returns for the tasks in it. The
// tests check events against it; the package itself takes ids from
// go/cgroup (Group.ID).
func CgroupID(dir string) (uint64, error) {
	var fs unix.Statfs_t
	if err := unix.Statfs(dir, &fs); err != nil {
		return 0, fmt.Errorf("writewatch: cgroup id of %s: %w", dir, err)
	}
	if fs.Type != unix.CGROUP2_SUPER_MAGIC {
		return 0, fmt.Errorf("writewatch: cgroup id of %s: not on a cgroup2 file system", dir)
	}
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return 0, fmt.Errorf("writewatch: cgroup id of %s: %w", dir, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return 0, fmt.Errorf("writewatch: cgroup id of %s: not a directory", dir)
	}
	return st.Ino, nil
}

// TestDetachLater hands links to the kernel (raw tracepoint links: fexit
// ones cannot be made on every kernel that runs these tests, and the
// hand-over does not depend on the link's type) and checks that they are
// detached soon after, with no fd of this process left on them, and that
// the bpffs instance that held them was mounted nowhere.
func TestDetachLater(t *testing.T) {
	needRoot(t)
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.RawTracepoint, License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()}})
	if err != nil {
		t.Fatal(err)
	}
	defer prog.Close()
	var links []link.Link
	var ids []link.ID
	for range 3 {
		l, err := link.AttachRawTracepoint(link.RawTracepointOptions{Name: "sys_enter", Program: prog})
		if err != nil {
			t.Fatal(err)
		}
		links = append(links, l)
		info, err := l.Info()
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, info.ID)
	}
	mounts := func() string {
		b, err := os.ReadFile("/proc/self/mountinfo")
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	before := mounts()
	handed, err := detachLater(links)
	if err != nil {
		t.Fatal(err)
	}
	if handed != len(links) {
		t.Fatalf("handed over %d of %d links", handed, len(links))
	}
	if after := mounts(); after != before {
		t.Errorf("mount table changed:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	// The kernel's worker detaches them after an RCU grace period.
	deadline := time.Now().Add(10 * time.Second)
	for _, id := range ids {
		for {
			l, err := link.NewFromID(id)
			if errors.Is(err, os.ErrNotExist) {
				break
			}
			if err == nil {
				l.Close()
			} else {
				t.Fatalf("link %d: %v", id, err)
			}
			if time.Now().After(deadline) {
				t.Fatalf("link %d still there 10 s after it was handed over", id)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}
