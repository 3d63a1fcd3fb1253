package cinit

import (
	"bytes"
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

func TestRecordSizes(t *testing.T) {
	h, m, msg, maxMounts := cSizes()
	if maxMounts != MaxMounts {
		t.Errorf("Go takes %d mount records, C %d", MaxMounts, maxMounts)
	}
	if got := binary.Size(header{}); got != h {
		t.Errorf("Go header is %d bytes, C is %d", got, h)
	}
	if got := binary.Size(mountRecord{}); got != m {
		t.Errorf("Go mount record is %d bytes, C is %d", got, m)
	}
	if got := binary.Size(msgRecord{}); got != msg || MsgSize != msg {
		t.Errorf("Go message is %d (MsgSize %d) bytes, C is %d", got, MsgSize, msg)
	}
}

func helper(t *testing.T, env ...string) (*exec.Cmd, *bytes.Buffer, int) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), append([]string{"CINIT_TEST_HELPER=namespaces"}, env...)...)
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
	bad := make([]byte, binary.Size(header{}))
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
