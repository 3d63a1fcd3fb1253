package e2e

import (
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
	"testing"

	"golang.org/x/sys/unix"

	"ronly.dev/ronly/go/probe"
)

// canaries are host objects a sandboxed process must not be able to change,
// reach or signal, owned by the user ronly runs as, so that only the
// sandbox stands in the way.
type canaries struct {
	uid    int
	marker string
	root   string // everything on disk lives under here
	dir    string // probe.Targets.Dir
	file   string // probe.Targets.File
	rwDir  string // passed with --rw: the probe's everyday writes go here

	proc     *exec.Cmd // sleeps in dir, holding file open read-write as fd 3
	sockPath string
	sock     *net.UnixListener
	abstract string
	abs      *net.UnixListener
	inherit  []*os.File // file read-write three times, then dir
}

func randomMarker(t *testing.T) string {
	t.Helper()
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func newCanaries(t *testing.T, uid int) *canaries {
	t.Helper()
	c := &canaries{uid: uid, marker: randomMarker(t)}
	c.root = userDir(t, uid, "ronly-e2e-canary-")
	c.dir = filepath.Join(c.root, "dir")
	c.file = filepath.Join(c.root, "canary.txt")
	c.rwDir = filepath.Join(c.root, "rw")
	for _, d := range []string{c.dir, filepath.Join(c.dir, probe.SubName), c.rwDir} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(d, uid, uid); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, uid, c.file, "canary "+c.marker+"\n"+strings.Repeat("x", 8192), 0o644)
	writeFile(t, uid, filepath.Join(c.dir, probe.File2Name), "second canary\n", 0o644)
	writeFile(t, uid, filepath.Join(c.dir, probe.SubName, "inner"), "inner canary\n", 0o644)

	c.startProcess(t)
	c.listen(t)
	for i := 0; i < 3; i++ {
		f, err := os.OpenFile(c.file, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		c.inherit = append(c.inherit, f)
	}
	d, err := os.Open(c.dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	c.inherit = append(c.inherit, d)
	return c
}

func (c *canaries) startProcess(t *testing.T) {
	t.Helper()
	f, err := os.OpenFile(c.file, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	c.proc = exec.Command("sleep", "100000")
	c.proc.Dir = c.dir
	c.proc.ExtraFiles = []*os.File{f}
	if c.uid != 0 {
		c.proc.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(c.uid), Gid: uint32(c.uid)}}
	}
	if err := c.proc.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.proc.Process.Kill()
		c.proc.Wait()
	})
}

func (c *canaries) listen(t *testing.T) {
	t.Helper()
	c.sockPath = "/run/ronly-e2e-" + c.marker + ".sock"
	var err error
	c.sock, err = net.ListenUnix("unix", &net.UnixAddr{Name: c.sockPath, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.sock.Close(); os.Remove(c.sockPath) })
	// Anyone may connect as far as permissions go: only the sandbox hides it.
	if err := os.Chmod(c.sockPath, 0o777); err != nil {
		t.Fatal(err)
	}
	c.abstract = "ronly-e2e-" + c.marker
	c.abs, err = net.ListenUnix("unix", &net.UnixAddr{Name: "@" + c.abstract, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.abs.Close() })
}

// targets describes the canaries for the probe, with the inherited
// descriptors at the numbers they arrive as (ExtraFiles start at 3).
func (c *canaries) targets() probe.Targets {
	return probe.Targets{
		File: c.file, Dir: c.dir, Pid: c.proc.Process.Pid, PidFD: 3,
		Socket: c.sockPath, Abstract: c.abstract,
		FDs: []int{3, 4, 5}, DirFD: 6,
		RWDir: c.rwDir, Marker: c.marker,
	}
}

// hostState is what the host looks like from outside, as far as a sandbox
// could have changed it.
type hostState struct {
	files    map[string]string // path under root (rw dir excluded) -> description
	hostname string
	shm      []string
	mounts   []string
}

// snapshot records the host's state, from outside the sandbox.
func (c *canaries) snapshot(t *testing.T) hostState {
	t.Helper()
	s := hostState{files: map[string]string{}, shm: dirNames(t, "/dev/shm"), mounts: mountLines(t)}
	var err error
	if s.hostname, err = os.Hostname(); err != nil {
		t.Fatal(err)
	}
	err = filepath.WalkDir(c.root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == c.rwDir {
			return filepath.SkipDir
		}
		s.files[p] = describe(p)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// describe says everything about a file that a write could change.
func describe(p string) string {
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

func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

// mountLines is this process's mount table without the per-boot mount ids.
func mountLines(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if f := strings.Fields(l); len(f) > 4 {
			out = append(out, strings.Join(f[2:], " "))
		}
	}
	slices.Sort(out)
	return out
}

// verify checks from outside that the host is as before: canary files
// untouched, nothing new beside them, the canary process alive, the
// sockets never connected to, hostname, /dev/shm and mounts unchanged.
func (c *canaries) verify(t *testing.T, before hostState) {
	t.Helper()
	after := c.snapshot(t)
	for p, d := range before.files {
		if got, ok := after.files[p]; !ok {
			t.Errorf("HOST CHANGED: %s is gone (was %s)", p, d)
		} else if got != d {
			t.Errorf("HOST CHANGED: %s\n  before: %s\n  after:  %s", p, d, got)
		}
	}
	for p, d := range after.files {
		if _, ok := before.files[p]; !ok {
			t.Errorf("HOST CHANGED: new entry %s (%s)", p, d)
		}
	}
	if after.hostname != before.hostname {
		t.Errorf("HOST CHANGED: hostname %q, was %q", after.hostname, before.hostname)
	}
	if added := newEntries(before.shm, after.shm); len(added) > 0 {
		t.Errorf("HOST CHANGED: new in host /dev/shm: %q", added)
	}
	if added := newEntries(before.mounts, after.mounts); len(added) > 0 {
		t.Errorf("HOST CHANGED: new mounts on the host:\n  %s", strings.Join(added, "\n  "))
	}
	if !alive(c.proc.Process.Pid) {
		t.Errorf("HOST CHANGED: canary process %d is dead (%v)", c.proc.Process.Pid, procState(c.proc.Process.Pid))
	}
	if n := drain(c.sock); n > 0 {
		t.Errorf("HOST REACHED: %d connection(s) accepted on the hidden socket %s", n, c.sockPath)
	}
	if n := drain(c.abs); n > 0 {
		t.Errorf("HOST REACHED: %d connection(s) accepted on the abstract socket @%s", n, c.abstract)
	}
}

func newEntries(before, after []string) []string {
	var out []string
	for _, a := range after {
		if !slices.Contains(before, a) {
			out = append(out, a)
		}
	}
	return out
}

// alive says whether pid is running (not gone, not a zombie), and stopped
// counts as changed too: a stopped canary was traced or signalled.
func alive(pid int) bool {
	s := procState(pid)
	return s == "S" || s == "R" || s == "D"
}

func procState(pid int) string {
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

// drain accepts every connection already queued on l, without waiting
// (net's Accept checks deadlines before it looks, so it goes raw).
func drain(l *net.UnixListener) int {
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
