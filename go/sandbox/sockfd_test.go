package sandbox

import (
	"os"
	"os/exec"
	"testing"

	"golang.org/x/sys/unix"
)

func inode(t *testing.T, fd int) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

// TestSockFDsLookupAndSweep runs the table against the kernel, with a
// child process as the caller, holding a socket the table has a copy of
// (3), a pipe's write end (4), a regular file (5) and another socket (6):
// the socket is found by the child's number, the other socket is EACCES, the
// pipe ENOTSOCK but passable as a new open of its write end, the file not
// passable; once the child is gone, a sweep closes the copy.
func TestSockFDsLookupAndSweep(t *testing.T) {
	f := newSockFDs()
	mine, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	// Close-on-exec, as every descriptor of the supervisor's: a plain dup
	// would be the child's too, at the same number (a socket the table
	// holds, where the test expects a closed number when that is 9).
	cp, err := unix.FcntlInt(uintptr(mine), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.add(cp)
	other, _ := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(p[0])
	file, err := os.CreateTemp(t.TempDir(), "f")
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	child := exec.Command("sleep", "60")
	child.ExtraFiles = []*os.File{os.NewFile(uintptr(mine), "mine"), os.NewFile(uintptr(p[1]), "pipe"), file, os.NewFile(uintptr(other), "other")}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	defer child.Wait()
	defer child.Process.Kill()
	for _, x := range child.ExtraFiles[:2] {
		x.Close()
	}
	child.ExtraFiles[3].Close()
	pid := child.Process.Pid

	got, e := f.lookup(pid, 3)
	if e != 0 {
		t.Fatalf("lookup of a socket the table holds: %v", e)
	}
	if inode(t, got) != inode(t, cp) {
		t.Errorf("lookup gave another socket")
	}
	unix.Close(got)
	if _, e := f.lookup(pid, 6); e != unix.EACCES {
		t.Errorf("lookup of a socket the table does not hold: %v, want EACCES", e)
	}
	if _, e := f.lookup(pid, 4); e != unix.ENOTSOCK {
		t.Errorf("lookup of a pipe: %v, want ENOTSOCK", e)
	}
	if _, e := f.lookup(pid, 9); e != unix.EBADF {
		t.Errorf("lookup of a closed number: %v, want EBADF", e)
	}
	// The pipe passes as a new open of the same pipe, with its access mode.
	w, e := f.passable(pid, 4)
	if e != 0 {
		t.Fatalf("passable of a pipe's write end: %v", e)
	}
	if fl, _ := unix.FcntlInt(uintptr(w), unix.F_GETFL, 0); fl&unix.O_ACCMODE != unix.O_WRONLY {
		t.Errorf("the passed pipe has flags %#o, want O_WRONLY", fl)
	}
	if _, err := unix.Write(w, []byte("x")); err != nil {
		t.Errorf("write through the passed pipe: %v", err)
	}
	unix.Close(w)
	b := make([]byte, 1)
	if n, err := unix.Read(p[0], b); n != 1 || err != nil || b[0] != 'x' {
		t.Errorf("the pipe got %q, %v", b[:n], err)
	}
	if _, e := f.passable(pid, 5); e != unix.EACCES {
		t.Errorf("passable of a regular file: %v, want EACCES", e)
	}

	f.sweep()
	if f.len() != 1 {
		t.Fatalf("a sweep while the child holds the socket left %d copies, want 1", f.len())
	}
	child.Process.Kill()
	child.Wait()
	f.sweep()
	if f.len() != 0 {
		t.Errorf("a sweep after the child is gone left %d copies, want 0", f.len())
	}
}

func TestSocketInode(t *testing.T) {
	for link, want := range map[string]uint64{"socket:[12345]": 12345, "pipe:[7]": 0, "socket:[x]": 0, "/tmp/socket:[1]": 0} {
		got, ok := socketInode(link)
		if got != want || ok != (want != 0) {
			t.Errorf("socketInode(%q) = %d, %v", link, got, ok)
		}
	}
}
