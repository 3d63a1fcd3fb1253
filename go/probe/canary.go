package probe

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// CanaryOptions say how NewCanaries makes the host's canaries.
type CanaryOptions struct {
	// UID owns every canary (files, directories, the process), so that only
	// the sandbox, not file permissions, stands in the way. Making them for
	// another user than the caller's needs root.
	UID int
	// Parent is the directory the canary directory is made in. It must be
	// visible inside the sandbox: not /tmp, which ronly replaces.
	// Default /var/tmp.
	Parent string
	// Prefix starts the names of the canary directory ("<Prefix>canary-"),
	// the socket file and the abstract socket. Default "ronly-probe-".
	Prefix string
	// SocketDir is where the listening socket file is made: a directory
	// under /run, which the sandbox hides. Empty: no socket file (the
	// operations that need one are skipped, see Targets.Socket).
	SocketDir string
	// SocketInRoot, when SocketDir is empty, makes the socket files in the
	// canary directory itself: where nothing under /run is writable (the
	// sandbox refuses to connect to them just the same). Left out when
	// their paths would be too long for a socket address.
	SocketInRoot bool
	// Sleeper is the canary process's command line; it must run until
	// killed. Default: sleep 100000.
	Sleeper []string
	// NoGit leaves RWDir an ordinary directory: landlock-only mode cannot
	// keep a repository's hooks and config read-only (they would need a
	// mount), so ronly refuses a --rw repository there and the git
	// operations do not apply.
	NoGit bool
}

// Canaries are host objects a sandboxed process must not be able to
// change, reach or signal: what Targets describes, made for real.
type Canaries struct {
	UID    int
	Marker string
	Root   string // everything on disk lives under here
	Dir    string // Targets.Dir
	File   string // Targets.File
	RWDir  string // to pass with --rw: the probe's everyday writes go here
	// Stdin and Log are files to give ronly as its stdio: Stdin read-only
	// as descriptor 0, Log opened O_APPEND (a `>> log`) as 1 or 2. Their
	// identities go into Targets.Stdio by the runner, which knows where.
	Stdin, Log string

	Proc   *exec.Cmd // sleeps in Dir, holding File open read-write as descriptor 3
	Socket string    // the listening socket file, "" when there is none
	// SocketLink is a hard link to Socket made on the host, and Dgram a
	// datagram socket beside it; "" when there is no Socket.
	SocketLink, Dgram string
	Abstract          string // the listening abstract socket's name, without the NUL
	// Inherit are File opened read-write three times, then Dir: pass them
	// to ronly as descriptors 3, 4, 5 and 6 (ExtraFiles), as Targets says.
	Inherit []*os.File

	sock, abs *net.UnixListener
	dgram     *net.UnixConn
	// reusePort listens on 127.0.0.1 with SO_REUSEPORT, as a host service
	// that shares its port with workers of its own does: Targets.ReusePort.
	reusePort *net.TCPListener
	sleeper   []string
	procs     []*exec.Cmd // every canary process started, for Close
	done      bool
}

// RandomMarker is a fresh random hex string that makes names unique.
func RandomMarker() (string, error) {
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

// NewCanaries makes a fresh set of canaries. On error, whatever it made is
// removed again; on success the caller must Close them.
func NewCanaries(o CanaryOptions) (c *Canaries, err error) {
	if o.Parent == "" {
		o.Parent = "/var/tmp"
	}
	if o.Prefix == "" {
		o.Prefix = "ronly-probe-"
	}
	if len(o.Sleeper) == 0 {
		o.Sleeper = []string{"sleep", "100000"}
	}
	marker, err := RandomMarker()
	if err != nil {
		return nil, err
	}
	c = &Canaries{UID: o.UID, Marker: marker, sleeper: o.Sleeper}
	defer func() {
		if err != nil {
			c.Close()
			c = nil
		}
	}()
	if c.Root, err = os.MkdirTemp(o.Parent, o.Prefix+"canary-"); err != nil {
		return c, err
	}
	if err = chmodChown(c.Root, 0o755, o.UID); err != nil {
		return c, err
	}
	c.Dir = filepath.Join(c.Root, "dir")
	c.File = filepath.Join(c.Root, "canary.txt")
	c.RWDir = filepath.Join(c.Root, "rw")
	c.Stdin = filepath.Join(c.Root, "stdin.txt")
	c.Log = filepath.Join(c.Root, "log.txt")
	for _, d := range []string{c.Dir, filepath.Join(c.Dir, SubName), c.RWDir} {
		if err = os.Mkdir(d, 0o755); err != nil {
			return c, err
		}
		if err = chmodChown(d, 0o755, o.UID); err != nil {
			return c, err
		}
	}
	// RWDir is a repository, whose metadata must stay read-only (git.go);
	// not in landlock-only mode, which refuses a --rw repository.
	if !o.NoGit {
		if err = MakeGitCanary(c.RWDir, o.UID); err != nil {
			return c, err
		}
	}
	for _, f := range []struct{ path, content string }{
		{c.File, "canary " + marker + "\n" + strings.Repeat("x", 8192)},
		{filepath.Join(c.Dir, File2Name), "second canary\n"},
		{filepath.Join(c.Dir, SubName, "inner"), "inner canary\n"},
		{c.Stdin, "stdin canary " + marker + "\n"},
		{c.Log, "log canary " + marker + "\n"},
	} {
		if err = os.WriteFile(f.path, []byte(f.content), 0o644); err != nil {
			return c, err
		}
		if err = chmodChown(f.path, 0o644, o.UID); err != nil {
			return c, err
		}
	}
	if err = c.StartProcess(); err != nil {
		return c, err
	}
	if o.SocketDir == "" && o.SocketInRoot && len(c.Root)+len(o.Prefix)+len(marker)+8 < len(unix.RawSockaddrUnix{}.Path) {
		o.SocketDir = c.Root
	}
	if err = c.listen(o.SocketDir, o.Prefix); err != nil {
		return c, err
	}
	if err = c.listenReusePort(); err != nil {
		return c, err
	}
	for i := 0; i < 3; i++ {
		f, err := os.OpenFile(c.File, os.O_RDWR, 0)
		if err != nil {
			return c, err
		}
		c.Inherit = append(c.Inherit, f)
	}
	d, err := os.Open(c.Dir)
	if err != nil {
		return c, err
	}
	c.Inherit = append(c.Inherit, d)
	return c, nil
}

func chmodChown(path string, mode os.FileMode, uid int) error {
	if err := os.Chmod(path, mode); err != nil {
		return err
	}
	if uid == os.Geteuid() {
		return nil
	}
	return os.Chown(path, uid, uid)
}

// StartProcess starts a canary process (NewCanaries starts the first),
// which becomes Proc: it sleeps in Dir, holding File open read-write as
// descriptor 3, until Close kills it. It dies with the thread that started
// it, so that a killed caller leaves none behind.
func (c *Canaries) StartProcess() error {
	f, err := os.OpenFile(c.File, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("canary process: %w", err)
	}
	defer f.Close()
	p := exec.Command(c.sleeper[0], c.sleeper[1:]...)
	p.Dir = c.Dir
	p.ExtraFiles = []*os.File{f}
	p.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if c.UID != os.Geteuid() {
		p.SysProcAttr.Credential = &syscall.Credential{Uid: uint32(c.UID), Gid: uint32(c.UID)}
	}
	if err := p.Start(); err != nil {
		return fmt.Errorf("canary process: %w", err)
	}
	c.Proc = p
	c.procs = append(c.procs, p)
	return nil
}

func (c *Canaries) listen(socketDir, prefix string) error {
	var err error
	if socketDir != "" {
		c.Socket = filepath.Join(socketDir, prefix+c.Marker+".sock")
		if c.sock, err = net.ListenUnix("unix", &net.UnixAddr{Name: c.Socket, Net: "unix"}); err != nil {
			c.Socket = ""
			return err
		}
		// Anyone may connect as far as permissions go: only the sandbox hides it.
		if err = os.Chmod(c.Socket, 0o777); err != nil {
			return err
		}
		// The same socket under another name: a refusal must not rest
		// on the path.
		c.SocketLink = filepath.Join(socketDir, prefix+c.Marker+".link")
		if err = os.Link(c.Socket, c.SocketLink); err != nil {
			c.SocketLink = ""
			return err
		}
		c.Dgram = filepath.Join(socketDir, prefix+c.Marker+".dgram")
		if c.dgram, err = net.ListenUnixgram("unixgram", &net.UnixAddr{Name: c.Dgram, Net: "unixgram"}); err != nil {
			c.Dgram = ""
			return err
		}
		if err = os.Chmod(c.Dgram, 0o777); err != nil {
			return err
		}
	}
	c.Abstract = prefix + c.Marker
	c.abs, err = net.ListenUnix("unix", &net.UnixAddr{Name: "@" + c.Abstract, Net: "unix"})
	return err
}

// listenReusePort starts the TCP canary: a listener on a free port of
// 127.0.0.1 with SO_REUSEPORT set, which the sandbox must not join.
func (c *Canaries) listenReusePort() error {
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
		})
		if err != nil {
			return err
		}
		return serr
	}}
	l, err := lc.Listen(context.Background(), "tcp4", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("SO_REUSEPORT canary: %w", err)
	}
	c.reusePort = l.(*net.TCPListener)
	return nil
}

// ReusePort is the port of the SO_REUSEPORT canary listener, 0 when none.
func (c *Canaries) ReusePort() int {
	if c.reusePort == nil {
		return 0
	}
	return c.reusePort.Addr().(*net.TCPAddr).Port
}

// Targets describes the canaries for the probe, with the inherited
// descriptors at the numbers they arrive as when Inherit is passed as
// ExtraFiles (from 3). Without a socket file, Socket is empty: RunStream
// then skips the operations that need one.
func (c *Canaries) Targets() Targets {
	return Targets{
		File: c.File, Dir: c.Dir, Pid: c.Proc.Process.Pid, PidFD: 3,
		Socket: c.Socket, SocketLink: c.SocketLink, Dgram: c.Dgram, Abstract: c.Abstract,
		FDs: []int{3, 4, 5}, DirFD: 6,
		RWDir: c.RWDir, Marker: c.Marker, ReusePort: c.ReusePort(),
	}
}

// Close kills and reaps the canary process, closes the sockets and the
// descriptors, and removes everything on disk. It may be called again.
func (c *Canaries) Close() error {
	if c == nil || c.done {
		return nil
	}
	c.done = true
	for _, p := range c.procs {
		p.Process.Kill()
		p.Wait()
	}
	if c.sock != nil {
		c.sock.Close() // removes the socket file
	}
	if c.Socket != "" {
		os.Remove(c.Socket)
	}
	if c.SocketLink != "" {
		os.Remove(c.SocketLink)
	}
	if c.dgram != nil {
		c.dgram.Close()
		os.Remove(c.Dgram)
	}
	if c.abs != nil {
		c.abs.Close()
	}
	if c.reusePort != nil {
		c.reusePort.Close()
	}
	for _, f := range c.Inherit {
		f.Close()
	}
	if c.Marker != "" {
		os.Remove(filepath.Join("/dev/shm", Targets{Marker: c.Marker}.ShmName()))
	}
	if c.Root != "" {
		return os.RemoveAll(c.Root)
	}
	return nil
}

// HostState is what the host looks like from outside, as far as a sandbox
// could have changed it.
type HostState struct {
	Files    map[string]string // path under Root (RWDir excluded) -> description
	Hostname string
	Shm      []string
	Mounts   []string
	// Sched is the canary process's nice value, I/O priority, CPU
	// affinity and scheduling policy.
	Sched string
}

// Snapshot records the host's state, from outside the sandbox.
func (c *Canaries) Snapshot() (HostState, error) {
	s := HostState{Files: map[string]string{}}
	var err error
	if s.Shm, err = DirNames("/dev/shm"); err != nil {
		return s, err
	}
	if s.Mounts, err = MountLines(); err != nil {
		return s, err
	}
	if s.Hostname, err = os.Hostname(); err != nil {
		return s, err
	}
	if c.Proc != nil {
		s.Sched = SchedState(c.Proc.Process.Pid)
	}
	err = filepath.WalkDir(c.Root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == c.RWDir {
			GitState(c.RWDir, s.Files)
			return filepath.SkipDir
		}
		s.Files[p] = Describe(p)
		return nil
	})
	return s, err
}

// Verify checks from outside that the host is as before: canary files
// untouched, nothing new beside them, the canary process alive, the
// sockets never connected to, hostname, /dev/shm and mounts unchanged, the
// probe's file in the sandbox's /dev/shm absent from the host's. It
// returns one line per change, each starting "HOST CHANGED" or "HOST
// REACHED"; none means the host is as it was.
func (c *Canaries) Verify(before HostState) []string { return c.verify(before, false) }

// VerifyOwn is Verify for a host where other programs run meanwhile: only
// new /dev/shm entries and mounts that name the canaries (their marker or
// directory) count.
func (c *Canaries) VerifyOwn(before HostState) []string { return c.verify(before, true) }

func (c *Canaries) verify(before HostState, own bool) []string {
	var out []string
	add := func(format string, a ...any) { out = append(out, fmt.Sprintf(format, a...)) }
	after, err := c.Snapshot()
	if err != nil {
		add("HOST CHANGED?: cannot look at the canaries: %v", err)
	}
	for _, p := range sortedKeys(before.Files) {
		d := before.Files[p]
		if got, ok := after.Files[p]; !ok {
			add("HOST CHANGED: %s is gone (was %s)", p, d)
		} else if got != d {
			add("HOST CHANGED: %s\n  before: %s\n  after:  %s", p, d, got)
		}
	}
	for _, p := range sortedKeys(after.Files) {
		if _, ok := before.Files[p]; !ok {
			add("HOST CHANGED: new entry %s (%s)", p, after.Files[p])
		}
	}
	if after.Sched != before.Sched {
		add("HOST CHANGED: the canary process's scheduling\n  before: %s\n  after:  %s", before.Sched, after.Sched)
	}
	for _, f := range SetIDFiles(c.RWDir) {
		add("HOST CHANGED: %s", f)
	}
	if after.Hostname != before.Hostname {
		add("HOST CHANGED: hostname %q, was %q", after.Hostname, before.Hostname)
	}
	if added := c.filterOwn(NewEntries(before.Shm, after.Shm), own); len(added) > 0 {
		add("HOST CHANGED: new in host /dev/shm: %q", added)
	}
	if added := c.filterOwn(NewEntries(before.Mounts, after.Mounts), own); len(added) > 0 {
		add("HOST CHANGED: new mounts on the host:\n  %s", strings.Join(added, "\n  "))
	}
	if c.Proc != nil && !Alive(c.Proc.Process.Pid) {
		add("HOST CHANGED: canary process %d is dead (%v)", c.Proc.Process.Pid, ProcState(c.Proc.Process.Pid))
	}
	if n := Drain(c.sock); n > 0 {
		add("HOST REACHED: %d connection(s) accepted on the hidden socket %s", n, c.Socket)
	}
	if n := drainDgram(c.dgram); n > 0 {
		add("HOST REACHED: %d datagram(s) received on the hidden socket %s", n, c.Dgram)
	}
	if n := Drain(c.abs); n > 0 {
		add("HOST REACHED: %d connection(s) accepted on the abstract socket @%s", n, c.Abstract)
	}
	return out
}

// SchedState describes what the scheduling calls could change about
// process pid, read from outside: nice value, I/O priority, CPU affinity,
// scheduling policy.
func SchedState(pid int) string {
	prio, err := unix.Getpriority(unix.PRIO_PROCESS, pid)
	if err != nil {
		return "getpriority: " + err.Error()
	}
	const ioprioWhoProcess = 1
	io, _, e := unix.Syscall(unix.SYS_IOPRIO_GET, ioprioWhoProcess, uintptr(pid), 0)
	var set unix.CPUSet
	aff := "?"
	if err := unix.SchedGetaffinity(pid, &set); err == nil {
		aff = fmt.Sprintf("%x", set)
	}
	policy, _, pe := unix.Syscall(unix.SYS_SCHED_GETSCHEDULER, uintptr(pid), 0, 0)
	return fmt.Sprintf("nice=%d ioprio=%#x(%v) affinity=%s policy=%d(%v)", 20-prio, io, e, aff, policy, pe)
}

// SetIDFiles lists, from outside, what under dir is set-user-ID or
// set-group-ID or carries file capabilities: a host user who runs such a
// file from the host's mount gets its owner's privileges. An empty dir
// has none.
func SetIDFiles(dir string) []string {
	if dir == "" {
		return nil
	}
	var out []string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		var st unix.Stat_t
		if unix.Lstat(p, &st) != nil {
			return nil
		}
		if st.Mode&(unix.S_ISUID|unix.S_ISGID) != 0 {
			out = append(out, fmt.Sprintf("set-id file %s (mode %o) in the --rw directory", p, st.Mode))
		}
		if n, err := unix.Lgetxattr(p, "security.capability", nil); err == nil && n > 0 {
			out = append(out, fmt.Sprintf("file capabilities on %s in the --rw directory", p))
		}
		return nil
	})
	return out
}

// filterOwn keeps, when own is set, only the entries that name the
// canaries.
func (c *Canaries) filterOwn(entries []string, own bool) []string {
	if !own {
		return entries
	}
	var out []string
	for _, e := range entries {
		if strings.Contains(e, c.Marker) || (c.Root != "" && strings.Contains(e, c.Root)) {
			out = append(out, e)
		}
	}
	return out
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// Describe says everything about a file that a write could change.
func Describe(p string) string {
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		return "lstat: " + err.Error()
	}
	d := fmt.Sprintf("mode=%o uid=%d gid=%d size=%d mtime=%d.%09d ctime=%d.%09d ino=%d nlink=%d",
		st.Mode, st.Uid, st.Gid, st.Size, st.Mtim.Sec, st.Mtim.Nsec, st.Ctim.Sec, st.Ctim.Nsec, st.Ino, st.Nlink)
	if st.Mode&unix.S_IFMT == unix.S_IFREG {
		b, err := os.ReadFile(p)
		if err != nil {
			return d + " read: " + err.Error()
		}
		sum := sha256.Sum256(b)
		d += " sha256=" + hex.EncodeToString(sum[:])
	}
	if xs, err := listxattr(p); err == nil && len(xs) > 0 {
		d += " xattrs=" + strings.Join(xs, ",")
	}
	return d
}

func listxattr(p string) ([]string, error) {
	buf := make([]byte, 4096)
	n, err := unix.Llistxattr(p, buf)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, x := range strings.Split(string(buf[:n]), "\x00") {
		if x != "" {
			out = append(out, x)
		}
	}
	return out, nil
}

// DirNames lists the names in dir.
func DirNames(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out, nil
}

// MountLines is this process's mount table without the per-boot mount ids.
func MountLines() ([]string, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	var out []string
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if f := strings.Fields(l); len(f) > 4 {
			out = append(out, strings.Join(f[2:], " "))
		}
	}
	slices.Sort(out)
	return out, nil
}

// NewEntries are the strings in after that are not in before.
func NewEntries(before, after []string) []string {
	var out []string
	for _, a := range after {
		if !slices.Contains(before, a) {
			out = append(out, a)
		}
	}
	return out
}

// Alive says whether pid is running (not gone, not a zombie); stopped
// counts as changed too: a stopped canary was traced or signalled.
func Alive(pid int) bool {
	s := ProcState(pid)
	return s == "S" || s == "R" || s == "D"
}

// ProcState is the state letter of pid in /proc ("S", "Z"...), "gone"
// when it does not exist.
func ProcState(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "gone"
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+3 > len(s) {
		return "?"
	}
	return s[i+2 : i+3]
}

// Drain accepts every connection already queued on l, without waiting
// (net's Accept checks deadlines before it looks, so it goes raw), and
// says how many there were. A nil l has none.
func Drain(l *net.UnixListener) int {
	if l == nil {
		return 0
	}
	rc, err := l.SyscallConn()
	if err != nil {
		return 0
	}
	n := 0
	rc.Control(func(fd uintptr) {
		for {
			nfd, _, err := unix.Accept4(int(fd), unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
			if err != nil {
				return
			}
			unix.Close(nfd)
			n++
		}
	})
	return n
}
