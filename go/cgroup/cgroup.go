// Package cgroup gives one ronly session a cgroup of its own: to limit its
// memory, processes and CPU time, to see when it hits a limit, and to kill
// its whole process tree at the end, so nothing outlives it.
//
// Hosts differ. A session always gets a directory in the cgroup v2
// hierarchy when one is mounted and writable (it is what cgroup.kill and
// eBPF's cgroup id need), and for each controller the limits ask for, the
// v2 controller when the host enables it there, else the v1 hierarchy that
// has it (this project's machines mount v1 for memory and pids, and a v2
// hierarchy with no controllers). What cannot be had is an error, never a
// silently missing limit: the caller decides whether to fall back to
// rlimits and say so.
package cgroup

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"ronly.dev/ronly/go/mountinfo"
)

// Limits a session may have; zero means none.
type Limits struct {
	Memory  uint64        // bytes, swap included where the host accounts it
	Pids    int           // processes and threads at once
	CPUTime time.Duration // CPU time summed over the whole tree
}

// Group is a session's cgroup directories: one per hierarchy it uses.
type Group struct {
	v2     string            // the v2 directory, "" when there is none
	v1     map[string]string // controller -> its v1 directory
	limits Limits
	// locks hold an exclusive flock on each directory for as long as
	// the session lives: what tells every ronly on the host, in any PID
	// namespace, that the session is not stale (see Sweep).
	locks []*os.File
}

// parentName is the directory under each hierarchy's root that holds the
// sessions, so that an operator finds all of ronly's in one place.
const parentName = "ronly"

// mounts are the cgroup hierarchies this process can see.
type mounts struct {
	v2 string            // the cgroup2 mount point, "" when none
	v1 map[string]string // v1 controller -> mount point
}

// findMounts is the hierarchies' mount points, found once a process: New
// and Sweep, both at a session's start, would read and parse the whole
// mount table each, and the hierarchies are mounted at boot, not moved
// while a session starts.
func findMounts() (mounts, error) {
	found.once.Do(func() {
		all, err := mountinfo.Read(Hierarchy)
		found.m, found.err = hierarchies(all), err
	})
	return found.m, found.err
}

var found struct {
	once sync.Once
	m    mounts
	err  error
}

// KnowMounts finds the hierarchies in all, a mount table the caller has
// just read (the mounts Hierarchy keeps at least), unless they are found
// already. A session's start reads the
// table anyway (for the credentials it hides), and on a host with
// thousands of mounts, a Kubernetes node's, each read of it costs
// milliseconds.
func KnowMounts(all []mountinfo.Mount) {
	found.once.Do(func() { found.m = hierarchies(all) })
}

// Hierarchy says whether m is the mount of a cgroup hierarchy's root: what
// KnowMounts needs of a mount table.
func Hierarchy(m *mountinfo.Mount) bool {
	// A bind of a sub-cgroup is not a hierarchy's root.
	return m.Root == "/" && (m.FSType == "cgroup2" || m.FSType == "cgroup")
}

func hierarchies(all []mountinfo.Mount) mounts {
	m := mounts{v1: map[string]string{}}
	for _, mt := range all {
		if !Hierarchy(&mt) {
			continue
		}
		switch mt.FSType {
		case "cgroup2":
			if m.v2 == "" {
				m.v2 = mt.Point
			}
		case "cgroup":
			for _, opt := range strings.Split(mt.SuperOpts, ",") {
				if _, seen := m.v1[opt]; !seen && v1Controller(opt) {
					m.v1[opt] = mt.Point
				}
			}
		}
	}
	return m
}

func v1Controller(opt string) bool {
	switch opt {
	case "memory", "pids", "cpuacct":
		return true
	}
	return false
}

// Name is the cgroup name of a session run by supervisor pid, for the
// operator who looks for it: the session id (as in the audit log), the
// supervisor's pid and its start time in clock ticks after boot, as the
// supervisor sees them (in its own PID namespace), with lockMark between
// them: SESSION-PID-flock-START. Nothing decides by the pid: a session is
// alive while its supervisor holds the flock on its directory
// (`flock -n DIR true` fails then).
func Name(session string, pid int) string {
	state, start := procStat(pid)
	if state == 0 {
		start = "0"
	}
	return session + "-" + strconv.Itoa(pid) + "-" + lockMark + "-" + start
}

// lockMark is in the name of every session cgroup whose supervisor holds
// its lock. Sweep leaves other directories alone: those of sessions of a
// ronly from before the locks, which hold none even while they run. In
// that place it also keeps such an older ronly, which judged a session by
// the pid in the second-to-last field, from judging these at all.
const lockMark = "flock"

// sweepable says whether Sweep may judge directory name by its lock.
func sweepable(name string) bool {
	f := strings.Split(name, "-")
	return len(f) >= 4 && f[len(f)-2] == lockMark
}

// procStat reads a process's state letter and start time (clock ticks
// after boot, field 22 of /proc/PID/stat); state 0 when there is no such
// process.
func procStat(pid int) (state byte, start string) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, ""
	}
	// "pid (comm) S ppid ...": comm may hold spaces and parentheses.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, ""
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return 0, ""
	}
	return f[0][0], f[19]
}

// Sweep removes the cgroups of sessions whose supervisor died without
// cleaning up (SIGKILL, a crash, the host's OOM killer), killing whatever
// still runs in them. A cgroup is stale when nothing holds its lock (and
// its name says it has one: see lockMark): a
// live supervisor holds an exclusive flock on each of its session's
// directories (New), through a close-on-exec descriptor the sandbox never
// inherits, and the kernel drops it when the supervisor dies however it
// dies. Every ronly on the host sees a lock the same way, whatever its PID
// namespace; a pid would not be (another namespace cannot see it, and
// reads 0 for it in cgroup.procs). The sweeper holds the lock it took
// while it kills and removes, so two sweepers never both act.
//
// It returns the sessions it swept (each once, whatever the hierarchies
// their directories were in): their supervisors never reported them.
func Sweep() (lost []string) {
	m, err := findMounts()
	if err != nil {
		return nil
	}
	roots := []string{}
	if m.v2 != "" {
		roots = append(roots, m.v2)
	}
	for _, p := range m.v1 {
		roots = append(roots, p)
	}
	seen := map[string]bool{}
	for _, root := range roots {
		for _, s := range sweepParent(filepath.Join(root, parentName)) {
			if !seen[s] {
				seen[s] = true
				lost = append(lost, s)
			}
		}
	}
	return lost
}

// sweepParent sweeps the session directories in parent, and returns the
// sessions of those it removed.
func sweepParent(parent string) (sessions []string) {
	entries, err := os.ReadDir(parent)
	if err != nil {
		return nil
	}
	for _, e := range entries {
		dir := filepath.Join(parent, e.Name())
		if !e.IsDir() || !sweepable(e.Name()) || creatorAlive(e.Name()) {
			continue
		}
		lock, err := lockDir(dir)
		if err != nil {
			continue // alive (locked), or already gone
		}
		if sweepLocked(dir, lock) {
			f := strings.Split(e.Name(), "-")
			sessions = append(sessions, strings.Join(f[:len(f)-3], "-"))
		}
	}
	return sessions
}

// creatorAlive says whether the supervisor a session directory's name
// names (pid and start time, in this PID namespace) still runs. It only
// spares work and never decides that a session is dead: the lock does.
// Sessions starting together would otherwise open and try the lock of
// every other live session's directory, and could take one in the moment
// between its mkdir and its flock (the owner then makes it again): 50
// sessions started at once made 419-481 flock calls, 50 with this check.
// A supervisor in another PID namespace may read as dead here, or its pid
// name a live process of ours: then the lock decides, or the next sweep
// does.
func creatorAlive(name string) bool {
	f := strings.Split(name, "-")
	pid, err := strconv.Atoi(f[len(f)-3])
	if err != nil || pid <= 0 {
		return false
	}
	state, start := procStat(pid)
	return state != 0 && state != 'Z' && start == f[len(f)-1]
}

// sweepLocked kills and removes dir, a dead session's cgroup whose lock
// this process took, and lets go of the lock. It says whether it removed
// the directory.
func sweepLocked(dir string, lock *os.File) bool {
	defer lock.Close()
	// Kill and remove go by path: the path must still name the directory
	// locked. Another sweep may have removed that one between our open and
	// our flock, and a new session made its own at the same path (makeDir
	// retries with the same name): that live session's cgroup was killed,
	// with its init waiting in it (about 1 in 5,000 of 50 concurrent
	// sessions; seen as "send records to init: broken pipe").
	if !holds(lock, dir) {
		return false
	}
	g := &Group{v1: map[string]string{}}
	if isV2(dir) {
		g.v2 = dir
	} else {
		g.v1["any"] = dir
	}
	g.Kill() // what runs in it: remove fails while anything does
	// Swept only once removed: a sweeper that may not remove it (a
	// user's ronly, root's cgroup) or cannot empty it would otherwise
	// report the same session lost at each start, and the sweeper that
	// removes it once more.
	return g.remove() == nil
}

// lockDir opens dir and takes an exclusive flock on it without waiting:
// the lock a live session's supervisor holds. It fails with EWOULDBLOCK
// while another open of the directory holds it. The descriptor is
// close-on-exec, so no process the supervisor starts keeps the lock alive
// after it (and the C init closes every descriptor above 2 anyway).
func lockDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(dir, os.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	for {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("flock %s: %w", dir, err)
	}
	return f, nil
}

// Alive says whether a live supervisor holds the lock of the session
// cgroup dir; false when the directory is gone or nothing holds it.
func Alive(dir string) bool {
	f, err := lockDir(dir)
	if err == nil {
		f.Close()
		return false
	}
	return errors.Is(err, unix.EWOULDBLOCK)
}

// errSwept: a sweeping session locked our new directory between its mkdir
// and our flock, took it for a dead session's, and removes it.
var errSwept = errors.New("taken by a sweep")

// lockNew locks a directory this session has just made. A sweep may have
// locked it first, or locked it, removed it and let go: either way the
// directory at the path must be the one we hold, or we start again.
func lockNew(dir string) (*os.File, error) {
	f, err := lockDir(dir)
	switch {
	case errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.EWOULDBLOCK):
		return nil, errSwept
	case err != nil:
		return nil, err
	}
	if !holds(f, dir) {
		f.Close()
		return nil, errSwept
	}
	return f, nil
}

// holds says whether the directory at path is the one open as f.
func holds(f *os.File, path string) bool {
	var held, now unix.Stat_t
	return unix.Fstat(int(f.Fd()), &held) == nil && unix.Stat(path, &now) == nil && held.Ino == now.Ino && held.Dev == now.Dev
}

// isV2 says whether dir is in a cgroup v2 hierarchy.
func isV2(dir string) bool {
	var st unix.Statfs_t
	return unix.Statfs(dir, &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC
}

// New creates the session's cgroups and sets the limits. It fails when a
// limit asked for has no controller this process can use; with no limits
// it fails only when no cgroup at all can be made.
func New(session string, l Limits) (*Group, error) {
	if session == "" || strings.ContainsAny(session, "/.") {
		return nil, fmt.Errorf("cgroup name %q: must be a plain name", session)
	}
	m, err := findMounts()
	if err != nil {
		return nil, err
	}
	g := &Group{v1: map[string]string{}, limits: l}
	ok := false
	defer func() {
		if !ok {
			g.remove()
		}
	}()
	enabled := map[string]bool{}
	if m.v2 != "" {
		dir, lock, err := makeDir(m.v2, session)
		if err != nil {
			return nil, fmt.Errorf("cgroup v2 at %s: %w", m.v2, err)
		}
		g.v2 = dir
		g.locks = append(g.locks, lock)
		for _, c := range wanted(l) {
			if c == "cpuacct" {
				enabled[c] = true // cpu.stat's usage is there without any controller
				continue
			}
			enabled[c] = enableV2(m.v2, c) == nil
		}
	}
	for _, c := range wanted(l) {
		if enabled[c] {
			continue
		}
		point, found := m.v1[c]
		if !found {
			return nil, fmt.Errorf("no %s controller: not enabled in cgroup v2 (%s) and no v1 hierarchy has it", c, orNone(m.v2))
		}
		dir, lock, err := makeDir(point, session)
		if err != nil {
			return nil, fmt.Errorf("cgroup v1 %s at %s: %w", c, point, err)
		}
		g.v1[c] = dir
		g.locks = append(g.locks, lock)
	}
	if g.v2 == "" && len(g.v1) == 0 {
		return nil, errors.New("no cgroup hierarchy is mounted")
	}
	if err := g.setLimits(); err != nil {
		return nil, err
	}
	ok = true
	return g, nil
}

func orNone(s string) string {
	if s == "" {
		return "not mounted"
	}
	return s
}

// wanted lists the controllers the limits need.
func wanted(l Limits) []string {
	var out []string
	if l.Memory > 0 {
		out = append(out, "memory")
	}
	if l.Pids > 0 {
		out = append(out, "pids")
	}
	if l.CPUTime > 0 {
		out = append(out, "cpuacct")
	}
	return out
}

// makeDir creates root/ronly/session and locks it (lockNew). A concurrent
// session may remove an empty root/ronly between our two mkdirs, or sweep
// our new directory before we lock it (it is empty: nothing is lost); then
// we try again.
func makeDir(root, session string) (string, *os.File, error) {
	parent := filepath.Join(root, parentName)
	dir := filepath.Join(parent, session)
	for try := 0; ; try++ {
		if err := os.Mkdir(parent, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			return "", nil, err
		}
		err := os.Mkdir(dir, 0o755)
		if err == nil {
			var lock *os.File
			if lock, err = lockNew(dir); err == nil {
				return dir, lock, nil
			}
		}
		// ErrNotExist: the parent went; ErrExist: a sweep is still
		// removing our directory; errSwept: it is about to.
		again := errors.Is(err, os.ErrNotExist) || errors.Is(err, os.ErrExist) || errors.Is(err, errSwept)
		if !again || try == 100 {
			return "", nil, err
		}
		time.Sleep(time.Millisecond)
	}
}

// enableV2 makes controller c available to the sessions' cgroups. It fails
// when the host does not give v2 the controller (it is bound to v1).
func enableV2(root, c string) error {
	have, err := os.ReadFile(filepath.Join(root, "cgroup.controllers"))
	if err != nil {
		return err
	}
	if !contains(strings.Fields(string(have)), c) {
		return fmt.Errorf("controller %s not in %s", c, root)
	}
	for _, dir := range []string{root, filepath.Join(root, parentName)} {
		if err := os.WriteFile(filepath.Join(dir, "cgroup.subtree_control"), []byte("+"+c), 0); err != nil {
			return fmt.Errorf("enable %s in %s: %w", c, dir, err)
		}
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// dir is where controller c's files are for this session.
func (g *Group) dir(c string) string {
	if d, ok := g.v1[c]; ok {
		return d
	}
	return g.v2
}

func (g *Group) setLimits() error {
	l := g.limits
	if l.Memory > 0 {
		v := strconv.FormatUint(l.Memory, 10)
		if _, v1 := g.v1["memory"]; v1 {
			if err := write(g.dir("memory"), "memory.limit_in_bytes", v); err != nil {
				return err
			}
			// Where the host accounts swap, the limit covers it too;
			// otherwise a job would page out instead of stopping.
			if exists(filepath.Join(g.dir("memory"), "memory.memsw.limit_in_bytes")) {
				if err := write(g.dir("memory"), "memory.memsw.limit_in_bytes", v); err != nil {
					return err
				}
			}
		} else {
			if err := write(g.v2, "memory.max", v); err != nil {
				return err
			}
			if exists(filepath.Join(g.v2, "memory.swap.max")) {
				if err := write(g.v2, "memory.swap.max", "0"); err != nil {
					return err
				}
			}
		}
	}
	if l.Pids > 0 {
		if err := write(g.dir("pids"), "pids.max", strconv.Itoa(l.Pids)); err != nil {
			return err
		}
	}
	return nil
}

func write(dir, file, value string) error {
	if err := os.WriteFile(filepath.Join(dir, file), []byte(value), 0); err != nil {
		return fmt.Errorf("set %s: %w", file, err)
	}
	return nil
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// Dir opens the group's cgroup v2 directory, for starting a process
// right inside it (clone3's CLONE_INTO_CGROUP): unlike a write to
// cgroup.procs, which waits for an RCU grace period (about 10 ms on this
// project's machines), that costs nothing. nil without v2.
func (g *Group) Dir() (*os.File, error) {
	if g.v2 == "" {
		return nil, nil
	}
	return os.OpenFile(g.v2, os.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
}

// AddV1 moves process pid, with its threads, into the group's v1
// directories, if it has any: the v1 controllers cannot be entered at
// clone time. Call it while the process is still waiting for its
// instructions, so that all it starts later is born inside.
func (g *Group) AddV1(pid int) error {
	for _, d := range g.v1 {
		if err := write(d, "cgroup.procs", strconv.Itoa(pid)); err != nil {
			return fmt.Errorf("move %d into %s: %w", pid, d, err)
		}
	}
	return nil
}

// Add moves process pid, with its threads, into every directory of the
// group (v2 and v1), for a process that was not started inside.
func (g *Group) Add(pid int) error {
	for _, d := range g.dirs() {
		if err := write(d, "cgroup.procs", strconv.Itoa(pid)); err != nil {
			return fmt.Errorf("move %d into %s: %w", pid, d, err)
		}
	}
	return nil
}

func (g *Group) dirs() []string {
	var out []string
	if g.v2 != "" {
		out = append(out, g.v2)
	}
	for _, d := range g.v1 {
		out = append(out, d)
	}
	return out
}

// ID is the cgroup v2 id of the session (the directory's inode number),
// which eBPF programs see as bpf_get_current_cgroup_id(); 0 without v2.
func (g *Group) ID() uint64 {
	if g.v2 == "" {
		return 0
	}
	var st unix.Stat_t
	if err := unix.Stat(g.v2, &st); err != nil {
		return 0
	}
	return st.Ino
}

// Kind says which hierarchies the group uses: "v2", "v1", or "v2+v1"
// (v1 for the controllers a hybrid host keeps there).
func (g *Group) Kind() string {
	switch {
	case g.v2 != "" && len(g.v1) > 0:
		return "v2+v1"
	case g.v2 != "":
		return "v2"
	default:
		return "v1"
	}
}

// Hit says which limit the session has run into, "" when none: "memory"
// once the kernel's OOM killer acted in the group, "pids" once a fork
// failed at the limit, "cpu" once the tree's CPU time passed the limit.
func (g *Group) Hit() string {
	l := g.limits
	if l.Memory > 0 {
		file := "memory.events"
		if _, v1 := g.v1["memory"]; v1 {
			file = "memory.oom_control"
		}
		if field(g.dir("memory"), file, "oom_kill") > 0 {
			return "memory"
		}
	}
	if l.Pids > 0 && field(g.dir("pids"), "pids.events", "max") > 0 {
		return "pids"
	}
	if l.CPUTime > 0 && g.CPUTime() > l.CPUTime {
		return "cpu"
	}
	return ""
}

// CPUTime is the CPU time the group's processes have used so far.
func (g *Group) CPUTime() time.Duration {
	if d, ok := g.v1["cpuacct"]; ok {
		b, err := os.ReadFile(filepath.Join(d, "cpuacct.usage"))
		if err != nil {
			return 0
		}
		ns, _ := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		return time.Duration(ns)
	}
	if g.v2 == "" {
		return 0
	}
	return time.Duration(field(g.v2, "cpu.stat", "usage_usec")) * time.Microsecond
}

// PeakMemory is the most memory the group used at once, 0 when unknown.
func (g *Group) PeakMemory() uint64 {
	if d, ok := g.v1["memory"]; ok {
		b, err := os.ReadFile(filepath.Join(d, "memory.max_usage_in_bytes"))
		if err == nil {
			v, _ := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
			return v
		}
		return 0
	}
	if g.v2 == "" {
		return 0
	}
	b, err := os.ReadFile(filepath.Join(g.v2, "memory.peak"))
	if err != nil {
		return 0
	}
	v, _ := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	return v
}

// field reads "name value" from a flat keyed file such as memory.events.
func field(dir, file, name string) int64 {
	b, err := os.ReadFile(filepath.Join(dir, file))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 2 && f[0] == name {
			v, _ := strconv.ParseInt(f[1], 10, 64)
			return v
		}
	}
	return 0
}

// Kill kills every process in the group and waits until none is left.
// cgroup.kill (v2, Linux 5.14) does it in one step that forks cannot
// outrun; otherwise each round kills what cgroup.procs lists, and the
// pids limit, where set, bounds how many a fork loop can add per round.
// It only ever kills a positive pid: cgroup.procs reads 0 for a process
// this PID namespace cannot see, and kill(0) would be our own process
// group. Such processes only cgroup.kill reaches; without it Kill gives
// up on them at once.
func (g *Group) Kill() error {
	killed := false
	if g.v2 != "" && exists(filepath.Join(g.v2, "cgroup.kill")) {
		if err := write(g.v2, "cgroup.kill", "1"); err != nil {
			return err
		}
		killed = true
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		left, unseen := 0, 0
		for _, d := range g.dirs() {
			for _, pid := range procs(d) {
				left++
				if pid <= 0 {
					unseen++
					continue
				}
				unix.Kill(pid, unix.SIGKILL)
			}
		}
		if left == 0 {
			return nil
		}
		if unseen == left && !killed {
			return fmt.Errorf("%d processes in %s are in another PID namespace, and there is no cgroup.kill", left, strings.Join(g.dirs(), ", "))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d processes still in %s after 5s of SIGKILL", left, strings.Join(g.dirs(), ", "))
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// procs lists cgroup.procs of dir: pids in this PID namespace, 0 for a
// process outside it.
func procs(dir string) []int {
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		return nil
	}
	var out []int
	for _, f := range strings.Fields(string(b)) {
		if pid, err := strconv.Atoi(f); err == nil {
			out = append(out, pid)
		}
	}
	return out
}

// Close kills what is left and removes the directories. A cgroup whose
// last process has just died can stay busy for a moment, so removal is
// retried briefly.
func (g *Group) Close() error {
	kerr := g.Kill()
	rerr := g.remove()
	if kerr != nil {
		return kerr
	}
	return rerr
}

func (g *Group) remove() error {
	var first error
	for _, d := range g.dirs() {
		var err error
		for try := 0; try < 200; try++ {
			err = unix.Rmdir(d)
			if err == nil || err == unix.ENOENT {
				err = nil
				break
			}
			if err != unix.EBUSY {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		if err != nil && first == nil {
			first = fmt.Errorf("remove %s: %w", d, err)
		}
		// The shared parent goes too when this was its last session; a
		// concurrent session's mkdir retries if it loses that race, and
		// any other error means it is still in use.
		unix.Rmdir(filepath.Dir(d))
	}
	// Only now: while a directory exists, its lock says it is in use.
	for _, l := range g.locks {
		l.Close()
	}
	g.v2, g.v1, g.locks = "", map[string]string{}, nil
	return first
}
