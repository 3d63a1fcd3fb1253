package cinit

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// A test binary links this package, so the constructor runs in it too: the
// helper modes below are this same binary re-executed.
func TestMain(m *testing.M) {
	switch os.Getenv("CINIT_TEST_HELPER") {
	case "namespaces":
		fmt.Print(namespaces())
		fmt.Printf("ran=%t\n", Ran())
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func namespaces() string {
	var b strings.Builder
	for _, ns := range []string{"user", "mnt", "ipc", "uts", "net", "pid"} {
		l, _ := os.Readlink("/proc/self/ns/" + ns)
		fmt.Fprintf(&b, "%s\n", l)
	}
	return b.String()
}

// TestRecordLayout checks what MarshalBinary and WriteMsg write, and what
// DecodeMsg reads, against records.h as the C compiler lays it out: every
// field at its offset with its width, and every record at its size. Each
// field gets a value of its own, so a swapped or shifted field shows.
func TestRecordLayout(t *testing.T) {
	layout := cLayout()
	le := binary.LittleEndian
	field := func(b []byte, base int, name string) []byte {
		t.Helper()
		f, ok := layout[name]
		if !ok {
			t.Fatalf("records.h has no field %s", name)
		}
		return b[base+f.off : base+f.off+f.size]
	}
	num := func(b []byte, base int, name string) uint64 {
		t.Helper()
		switch v := field(b, base, name); len(v) {
		case 4:
			return uint64(le.Uint32(v))
		case 8:
			return le.Uint64(v)
		default:
			t.Fatalf("%s is %d bytes in C, not a number Go writes", name, len(v))
			return 0
		}
	}
	size := func(name string) int { return layout[name].size }

	c := Config{Flags: 0x01020304, LandlockABI: 0x05060708, ReportFD: 0x090a0b0c,
		BPF: []byte("12345678"), Fallback: []byte("abcdefghijklmnop"),
		UsernsLimits: []UsernsLimit{{"max_a", 0x1112131415161718}, {"max_bb", 0x2122232425262728}},
		Mounts: []Mount{{Kind: MountShow, Mode: 0x31323334, Size: 0x4142434445464748, Dev: 0x5152535455565758,
			Ino: 0x6162636465666768, Path: "/path", Source: "/source"}},
		Argv: []string{"a", "bc"}, Env: []string{"X=1"}}
	b, err := c.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	h, m := size("ronly_header"), size("ronly_mount")
	tail := string(c.BPF) + string(c.Fallback) + "a\x00bc\x00X=1\x00"
	if len(b) != h+m+len(tail) || string(b[h+m:]) != tail {
		t.Fatalf("records are %d bytes, want a %d-byte header, a %d-byte mount record and %q", len(b), h, m, tail)
	}
	for name, want := range map[string]uint64{
		"ronly_header.magic": magic, "ronly_header.version": recordsVersion, "ronly_header.flags": 0x01020304,
		"ronly_header.n_mounts": 1, "ronly_header.bpf_len": 8, "ronly_header.landlock_abi": 0x05060708,
		"ronly_header.fallback_len": 16, "ronly_header.report_fd": 0x090a0b0c,
		"ronly_header.argv_len": uint64(len("a\x00bc\x00")), "ronly_header.env_len": uint64(len("X=1\x00")),
		"ronly_mount.kind": uint64(MountShow), "ronly_mount.mode": 0x31323334, "ronly_mount.size": 0x4142434445464748,
		"ronly_mount.dev": 0x5152535455565758, "ronly_mount.ino": 0x6162636465666768,
	} {
		base := 0
		if strings.HasPrefix(name, "ronly_mount.") {
			base = h
		}
		if got := num(b, base, name); got != want {
			t.Errorf("%s at offset %d: Go wrote %#x, want %#x", name, base+layout[name].off, got, want)
		}
	}
	if got := cstring(field(b, h, "ronly_mount.path")); got != "/path" {
		t.Errorf("ronly_mount.path: Go wrote %q", got)
	}
	if got := cstring(field(b, h, "ronly_mount.source")); got != "/source" {
		t.Errorf("ronly_mount.source: Go wrote %q", got)
	}
	if size("ronly_mount.path") != pathMax || size("ronly_mount.source") != pathMax {
		t.Errorf("paths are %d and %d bytes in C, %d in Go", size("ronly_mount.path"), size("ronly_mount.source"), pathMax)
	}
	limits, l := layout["ronly_header.userns_limits"], size("ronly_userns_limit")
	if limits.size != MaxUsernsLimits*l || size("ronly_userns_limit.name") != usernsNameLen {
		t.Errorf("user namespace limits are %d bytes in C, Go writes %d of %d", limits.size, MaxUsernsLimits, l)
	}
	for i, want := range append(c.UsernsLimits, UsernsLimit{}) {
		base := limits.off + i*l
		if got := cstring(field(b, base, "ronly_userns_limit.name")); got != want.Name {
			t.Errorf("user namespace limit %d: Go wrote name %q, want %q", i, got, want.Name)
		}
		if got := num(b, base, "ronly_userns_limit.value"); got != want.Value {
			t.Errorf("user namespace limit %d: Go wrote value %#x, want %#x", i, got, want.Value)
		}
	}

	// Messages both ways: WriteMsg as the supervisor sends them, DecodeMsg
	// of one laid out by C's offsets as the init sends them.
	var w bytes.Buffer
	in := Msg{Type: MsgListenerTaken, Err: syscall.EPERM, Value: -3, Flags: 0x71727374, Step: "step", Detail: strings.Repeat("d", 300)}
	if err := WriteMsg(&w, in); err != nil || w.Len() != size("ronly_msg") || w.Len() != MsgSize {
		t.Fatalf("WriteMsg wrote %d bytes (%v), want %d", w.Len(), err, size("ronly_msg"))
	}
	out := w.Bytes()
	for name, want := range map[string]uint64{"ronly_msg.type": uint64(MsgListenerTaken), "ronly_msg.err": uint64(syscall.EPERM),
		"ronly_msg.value": uint64(uint32(0xfffffffd)), "ronly_msg.flags": 0x71727374} {
		if got := num(out, 0, name); got != want {
			t.Errorf("%s: WriteMsg wrote %#x, want %#x", name, got, want)
		}
	}
	step, detail := field(out, 0, "ronly_msg.step"), field(out, 0, "ronly_msg.detail")
	if cstring(step) != "step" || cstring(detail) != strings.Repeat("d", len(detail)-1) {
		t.Errorf("WriteMsg wrote step %q, detail %q", cstring(step), cstring(detail))
	}
	raw := make([]byte, size("ronly_msg"))
	le.PutUint32(field(raw, 0, "ronly_msg.type"), uint32(MsgWarn))
	le.PutUint32(field(raw, 0, "ronly_msg.err"), uint32(syscall.ENOSYS))
	le.PutUint32(field(raw, 0, "ronly_msg.value"), 0x81828384)
	le.PutUint32(field(raw, 0, "ronly_msg.flags"), 0x91929394)
	copy(field(raw, 0, "ronly_msg.step"), "a step")
	copy(field(raw, 0, "ronly_msg.detail"), "a detail")
	got, err := DecodeMsg(raw)
	want := Msg{Type: MsgWarn, Err: syscall.ENOSYS, Value: int32(-0x7e7d7c7c), Flags: 0x91929394, Step: "a step", Detail: "a detail"}
	if err != nil || got != want {
		t.Errorf("DecodeMsg of C's layout: got %+v (%v), want %+v", got, err, want)
	}
	if in.Detail = in.Detail[:len(detail)-1]; mustDecode(t, out) != in {
		t.Errorf("message round trip: got %+v, want %+v", mustDecode(t, out), in)
	}
}

func mustDecode(t *testing.T, b []byte) Msg {
	t.Helper()
	m, err := DecodeMsg(b)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func helper(t *testing.T, env ...string) (*exec.Cmd, *bytes.Buffer, int) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), append([]string{"CINIT_TEST_HELPER=namespaces"}, env...)...)
	cmd.Dir = "/" // there inside (runInvited)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if len(env) == 0 {
		return cmd, &out, -1
	}
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	child := os.NewFile(uintptr(pair[1]), "child")
	cmd.ExtraFiles = []*os.File{child}
	t.Cleanup(func() { unix.Close(pair[0]) })
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	child.Close()
	return cmd, &out, pair[0]
}

func TestUninvitedRunChangesNothing(t *testing.T) {
	cmd, out, _ := helper(t)
	if err := cmd.Run(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	want := namespaces() + "ran=false\n"
	if out.String() != want {
		t.Fatalf("uninvited child's namespaces differ:\n got %s\nwant %s", out, want)
	}
}

func readMsg(t *testing.T, fd int) Msg {
	t.Helper()
	buf := make([]byte, MsgSize)
	for got := 0; got < len(buf); {
		n, err := unix.Read(fd, buf[got:])
		if err != nil || n == 0 {
			t.Fatalf("read message: n=%d err=%v", n, err)
		}
		got += n
	}
	m, err := DecodeMsg(buf)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestInvitedReportsBadRecordsWithErrno(t *testing.T) {
	cmd, out, fd := helper(t, EnvFD+"=3")
	bad := make([]byte, headerSize)
	binary.LittleEndian.PutUint32(bad, 0xdeadbeef)
	unix.Write(fd, bad)
	m := readMsg(t, fd)
	if m.Type != MsgError || m.Err != syscall.EPROTO || m.Step != "read records" {
		t.Fatalf("got %+v, want an EPROTO error from step \"read records\"", m)
	}
	err := cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 125 {
		t.Fatalf("init exit: %v (output %q), want 125", err, out)
	}
	e := &Error{Step: m.Step, Detail: m.Detail, Errno: m.Err}
	if s := e.Error(); strings.Contains(s, "\n") || !strings.Contains(s, "protocol error") {
		t.Fatalf("error line %q is not one readable line with the errno", s)
	}
}

func TestInvitedRefusedIDMapFailsClosed(t *testing.T) {
	if os.Geteuid() != 0 && os.Getenv("CI") == "" {
		t.Skip("needs root for user namespaces with mounts; CI runs as root")
	}
	cmd, _, fd := helper(t, EnvFD+"=3")
	rec, err := (&Config{Flags: FlagUserNS}).MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	unix.Write(fd, rec)
	if m := readMsg(t, fd); m.Type != MsgNeedIDMap {
		t.Fatalf("got %+v, want a request for id maps", m)
	}
	WriteMsg(fdWriter(fd), Msg{Type: MsgIDMapDone, Err: syscall.EPERM, Detail: "refused by test"})
	m := readMsg(t, fd)
	if m.Type != MsgError || m.Err != syscall.EPERM || m.Step != "write id maps" || m.Detail != "refused by test" {
		t.Fatalf("got %+v", m)
	}
	cmd.Wait()
	if cmd.ProcessState.ExitCode() != 125 {
		t.Fatalf("exit %d, want 125", cmd.ProcessState.ExitCode())
	}
}

func TestInvitedBuildsSandbox(t *testing.T) {
	if os.Geteuid() != 0 && os.Getenv("CI") == "" {
		t.Skip("needs root; CI runs as root")
	}
	cmd, out, fd := helper(t, EnvFD+"=3")
	rec, err := (&Config{Flags: FlagUserNS | FlagNetNS,
		Mounts: []Mount{{Kind: MountTmpfs, Path: "/tmp", Size: 1 << 20, Mode: 0o1777}}}).MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	unix.Write(fd, rec)
	if m := readMsg(t, fd); m.Type != MsgNeedIDMap {
		t.Fatalf("got %+v", m)
	}
	pid := cmd.Process.Pid
	os.WriteFile(fmt.Sprintf("/proc/%d/uid_map", pid), []byte("0 0 4294967295"), 0)
	os.WriteFile(fmt.Sprintf("/proc/%d/gid_map", pid), []byte("0 0 4294967295"), 0)
	WriteMsg(fdWriter(fd), Msg{Type: MsgIDMapDone})
	if m := readMsg(t, fd); m.Type != MsgReady {
		t.Fatalf("got %+v, want ready", m)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	lines := strings.Split(out.String(), "\n")
	host := strings.Split(namespaces(), "\n")
	for i, ns := range []string{"user", "mnt", "ipc", "uts", "net"} {
		if lines[i] == host[i] {
			t.Errorf("%s namespace unchanged: %s", ns, lines[i])
		}
	}
	if lines[5] != host[5] {
		t.Errorf("pid namespace changed in the debug profile: %s", lines[5])
	}
	if !strings.Contains(out.String(), "ran=true") {
		t.Errorf("front-end did not see the init ran: %s", out)
	}
}

type fdWriter int

func (w fdWriter) Write(b []byte) (int, error) { return unix.Write(int(w), b) }

func TestTooManyMounts(t *testing.T) {
	c := Config{Mounts: make([]Mount, MaxMounts+1)}
	for i := range c.Mounts {
		c.Mounts[i] = Mount{Kind: MountTmpfs, Path: fmt.Sprintf("/s/%d", i)}
	}
	if _, err := c.MarshalBinary(); err == nil || !strings.Contains(err.Error(), "1025 mount records") {
		t.Errorf("%d records: err = %v, want one naming the count", len(c.Mounts), err)
	}
	c.Mounts = c.Mounts[:MaxMounts]
	if _, err := c.MarshalBinary(); err != nil {
		t.Errorf("%d records: %v", len(c.Mounts), err)
	}
}

// execCase is a command the init execs in place of itself, and what the
// caller sees of it: the command's own output, or ronly's line about why
// it could not run, in the words and with the exit codes of the Go
// front-end that did this before the init did.
type execCase struct {
	name   string
	argv   []string
	path   string // the command's PATH
	dir    string // the init's working directory ("" for /)
	stdout string
	stderr string
	code   int
}

func TestInvitedExecsCommand(t *testing.T) {
	if os.Geteuid() != 0 && os.Getenv("CI") == "" {
		t.Skip("needs root for the mount namespace; CI runs as root")
	}
	// Outside /tmp, which the sandbox below covers with a tmpfs.
	dir, err := os.MkdirTemp("/var/tmp", "ronly-seam-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	write := func(name, body string, mode os.FileMode) string {
		p := dir + "/" + name
		if err := os.WriteFile(p, []byte(body), mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	script := write("tool", "#!/bin/sh\necho \"$0 $1\"\n", 0o755)
	plain := write("plain", "data\n", 0o644)
	garbage := write("garbage", "\x01\x02\x03 not a program\n", 0o755)
	cases := []execCase{
		{name: "environment is exactly the records'", argv: []string{"env"}, path: "/usr/bin:/bin",
			stdout: "PATH=/usr/bin:/bin\nX=1\n"},
		{name: "found on PATH after a missing dir, trailing slash", argv: []string{"tool", "arg"}, path: "/nonexistent:" + dir + "/",
			stdout: script + " arg\n"},
		{name: "not on PATH", argv: []string{"ronly-no-such-command"}, path: "/usr/bin:/bin",
			stderr: "ronly: ronly-no-such-command: executable file not found in $PATH\n", code: 127},
		{name: "no PATH at all", argv: []string{"env"},
			stderr: "ronly: env: executable file not found in $PATH\n", code: 127},
		{name: "empty name", argv: []string{""}, path: "/usr/bin:/bin",
			stderr: "ronly: : executable file not found in $PATH\n", code: 127},
		{name: "missing path", argv: []string{"/nonexistent/ronly-e2e"},
			stderr: "ronly: /nonexistent/ronly-e2e: stat /nonexistent/ronly-e2e: no such file or directory\n", code: 127},
		{name: "directory", argv: []string{"/etc"},
			stderr: "ronly: /etc: is a directory\n", code: 127},
		{name: "not executable", argv: []string{plain},
			stderr: "ronly: " + plain + ": permission denied\n", code: 126},
		{name: "not a program", argv: []string{garbage},
			stderr: "ronly: exec " + garbage + ": exec format error\n", code: 126},
		{name: "relative PATH entry", argv: []string{"tool"}, path: ":/usr/bin:/bin", dir: dir,
			stderr: "ronly: tool: cannot run executable found relative to current directory\n", code: 127},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			env := []string{"X=1"}
			if tc.path != "" {
				env = append([]string{"PATH=" + tc.path}, env...)
			}
			stdout, stderr, code := runInvited(t, tc.dir, &Config{
				Mounts: []Mount{{Kind: MountTmpfs, Path: "/tmp", Size: 1 << 20, Mode: 0o1777}},
				Argv:   tc.argv, Env: env})
			if stdout != tc.stdout || stderr != tc.stderr || code != tc.code {
				t.Errorf("got exit %d, stdout %q, stderr %q\nwant exit %d, stdout %q, stderr %q",
					code, stdout, stderr, tc.code, tc.stdout, tc.stderr)
			}
		})
	}
}

// runInvited runs this test binary invited, with records c, without a user
// namespace (root's own mount namespace), and returns what it printed and
// its exit code.
func runInvited(t *testing.T, dir string, c *Config) (stdout, stderr string, code int) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	rec, err := c.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(pair[0])
	child := os.NewFile(uintptr(pair[1]), "child")
	cmd := exec.Command(exe)
	cmd.Env = []string{EnvFD + "=3", "CINIT_TEST_HELPER=namespaces"}
	// Not the test's own: in a checkout under /tmp, which the sandbox
	// covers, the init would say so before it is ready (MsgWarn).
	cmd.Dir = cmp.Or(dir, "/")
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	cmd.ExtraFiles = []*os.File{child}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	child.Close()
	unix.Write(pair[0], rec)
	if m := readMsg(t, pair[0]); m.Type != MsgReady {
		cmd.Wait()
		t.Fatalf("got %+v, want ready (stderr %q)", m, errOut.String())
	}
	cmd.Wait()
	return out.String(), errOut.String(), cmd.ProcessState.ExitCode()
}
