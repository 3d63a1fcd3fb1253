package sandbox

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	cinit "ronly.dev/ronly/init"
)

// These tests stand in for the command: they write to and read from the
// descriptors newStdio made for it (Child), with real pipes and files,
// and look at what reached the caller's streams.

func osPipe(t *testing.T) (r, w *os.File) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close(); w.Close() })
	return r, w
}

// startRelay makes the relay for the caller's streams and starts it as the
// supervisor does once the sandbox is built.
func startRelay(t *testing.T, caller [3]*os.File) (*stdio, [3]*os.File) {
	t.Helper()
	var warnings []string
	x, err := newStdio(caller, func(m string) { warnings = append(warnings, m) })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(x.close)
	if x.Flags != 0 {
		t.Fatalf("flags %#x for streams that are not terminals, want none", x.Flags)
	}
	// The command's ends, as the init would have them; childStarted then
	// closes ours, as after the clone.
	var child [3]*os.File
	for i, f := range x.Child {
		if f == nil {
			t.Fatalf("descriptor %d: no pipe for the command", i)
		}
		fd, err := unix.FcntlInt(f.Fd(), unix.F_DUPFD_CLOEXEC, 0) // not another test's child's
		if err != nil {
			t.Fatal(err)
		}
		child[i] = os.NewFile(uintptr(fd), "child")
	}
	x.childStarted()
	if err := x.start(); err != nil {
		t.Fatal(err)
	}
	return x, child
}

func readAllTimeout(t *testing.T, r io.Reader) string {
	t.Helper()
	got := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(r)
		got <- b
	}()
	select {
	case b := <-got:
		return string(b)
	case <-time.After(10 * time.Second):
		t.Fatal("no EOF within 10s")
	}
	return ""
}

func TestStdioPipesRelayBothWays(t *testing.T) {
	inR, inW := osPipe(t)
	outR, outW := osPipe(t)
	errR, errW := osPipe(t)
	x, child := startRelay(t, [3]*os.File{inR, outW, errW})

	// stdin, then its EOF, reaches the command.
	inW.WriteString("abc")
	inW.Close()
	if got := readAllTimeout(t, child[0]); got != "abc" {
		t.Errorf("the command read %q, want abc and EOF", got)
	}
	child[1].WriteString("out")
	child[2].WriteString("err")
	for _, f := range child {
		f.Close()
	}
	x.finish()
	outW.Close() // the caller's: open until the relay is done with it
	errW.Close()
	if got := readAllTimeout(t, outR); got != "out" {
		t.Errorf("stdout %q, want out", got)
	}
	if got := readAllTimeout(t, errR); got != "err" {
		t.Errorf("stderr %q, want err", got)
	}
}

// The command's descriptors are never the caller's: a file given as stdin
// or stdout is not what the command holds.
func TestStdioCommandNeverGetsCallerFiles(t *testing.T) {
	dir := t.TempDir()
	in, err := os.Create(filepath.Join(dir, "in"))
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(filepath.Join(dir, "log"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	_, child := startRelay(t, [3]*os.File{in, out, out})
	for i, f := range child {
		var st unix.Stat_t
		if err := unix.Fstat(int(f.Fd()), &st); err != nil {
			t.Fatal(err)
		}
		if st.Mode&unix.S_IFMT != unix.S_IFIFO {
			t.Errorf("the command's descriptor %d is mode %o, want a pipe", i, st.Mode)
		}
		f.Close()
	}
}

// An O_APPEND file refuses splice (EINVAL): the relay copies instead, and
// appends. stdout and stderr being one file share one pipe, so the order
// the command wrote in is kept.
func TestStdioAppendFileAndSharedOrder(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	if err := os.WriteFile(path, []byte("before\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	log, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer devnull.Close()
	x, child := startRelay(t, [3]*os.File{devnull, log, log})
	if !x.errToOut {
		t.Errorf("stdout and stderr are one file but got two pipes")
	}
	var want strings.Builder
	want.WriteString("before\n")
	for i := 0; i < 50; i++ {
		child[1].WriteString("out\n")
		child[2].WriteString("err\n")
		want.WriteString("out\nerr\n")
	}
	for _, f := range child {
		f.Close()
	}
	x.finish()
	b, _ := os.ReadFile(path)
	if string(b) != want.String() {
		t.Errorf("log is %q..., want the 50 pairs in order after %q", firstBytes(b, 60), "before\n")
	}
}

func firstBytes(b []byte, n int) []byte {
	if len(b) > n {
		return b[:n]
	}
	return b
}

// When the caller's output goes away (`| head -1`), the command's next
// write fails with EPIPE (SIGPIPE, which the test ignores here).
func TestStdioBrokenCallerOutputReachesTheCommand(t *testing.T) {
	outR, outW := osPipe(t)
	devnull, _ := os.Open(os.DevNull)
	defer devnull.Close()
	_, errW := osPipe(t)
	x, child := startRelay(t, [3]*os.File{devnull, outW, errW})
	outW.Close()
	outR.Close()
	defer x.finish()
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := unix.Write(int(child[1].Fd()), []byte("y\n"))
		if errors.Is(err, syscall.EPIPE) {
			break
		}
		if err != nil {
			t.Fatalf("write: %v, want EPIPE", err)
		}
		if time.Now().After(deadline) {
			t.Fatal("the command could still write after its reader went away")
		}
		time.Sleep(time.Millisecond)
	}
	for _, f := range child {
		f.Close()
	}
}

// A process that escaped the reaping and still holds the output must not
// hold the session open: finish takes what was written and returns.
func TestStdioFinishDoesNotWaitForALeftoverHolder(t *testing.T) {
	outR, outW := osPipe(t)
	errR, errW := osPipe(t)
	devnull, _ := os.Open(os.DevNull)
	defer devnull.Close()
	x, child := startRelay(t, [3]*os.File{devnull, outW, errW})
	defer errR.Close()
	child[1].WriteString("written before the end")
	// child[1] stays open: the leftover.
	done := make(chan struct{})
	go func() {
		x.finish()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("finish waited for a leftover holder of the output")
	}
	outW.Close()
	if got := readAllTimeout(t, outR); got != "written before the end" {
		t.Errorf("stdout %q, want what was written before the end", got)
	}
	for _, f := range child {
		f.Close()
	}
}

// A lot of output is drained whole, through splice, to a file.
func TestStdioDrainsLargeOutput(t *testing.T) {
	path := filepath.Join(t.TempDir(), "out")
	out, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	devnull, _ := os.Open(os.DevNull)
	defer devnull.Close()
	_, errW := osPipe(t)
	x, child := startRelay(t, [3]*os.File{devnull, out, errW})
	chunk := bytes.Repeat([]byte("0123456789abcdef"), 4096)
	const rounds = 256 // 16 MiB
	for i := 0; i < rounds; i++ {
		if _, err := child[1].Write(chunk); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range child {
		f.Close()
	}
	x.finish()
	fi, err := os.Stat(path)
	if err != nil || fi.Size() != int64(rounds*len(chunk)) {
		t.Fatalf("output file has %v bytes (%v), want %d", fi.Size(), err, rounds*len(chunk))
	}
}

// A caller at a terminal gets the pty flags, and no pipe where the pty goes.
func TestStdioTerminalAsksForAPTY(t *testing.T) {
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pty here: %v", err)
	}
	defer m.Close()
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	sfd, err := unix.IoctlRetInt(int(m.Fd()), unix.TIOCGPTPEER)
	if err != nil {
		t.Fatal(err)
	}
	s := os.NewFile(uintptr(sfd), "pts")
	defer s.Close()
	_, outW := osPipe(t)
	x, err := newStdio([3]*os.File{s, outW, s}, func(string) {})
	if err != nil {
		t.Fatal(err)
	}
	defer x.close()
	if want := cinit.FlagPTY | cinit.FlagPTYErr; x.Flags != want {
		t.Errorf("flags %#x, want %#x (pty on stdin and stderr, a pipe on stdout)", x.Flags, want)
	}
	if x.Child[0] != nil || x.Child[2] != nil || x.Child[1] == nil {
		t.Errorf("command's descriptors %v: want /dev/null (the init's pty) on 0 and 2, a pipe on 1", x.Child)
	}
	if x.ttyOut != s {
		t.Errorf("the pty's output goes to %v, want the caller's terminal", x.ttyOut)
	}
}
