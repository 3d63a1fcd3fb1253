package sandbox

import (
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// TestNonsPrefix loads the landlock-only prefix in front of an allow-all
// program, in its fallback form (errno instead of notify: no supervisor
// here), in a child process, and checks against the kernel what it
// refuses: the metadata calls and chattr's ioctls fail with EPERM, other
// calls run, truncate(2) is caught only below Landlock ABI 3.
func TestNonsPrefix(t *testing.T) {
	if dir := os.Getenv("RONLY_NONS_PREFIX_CHILD"); dir != "" {
		nonsPrefixChild(t, dir)
		return
	}
	for _, abi := range []string{"2", "7"} {
		t.Run("abi"+abi, func(t *testing.T) {
			dir := t.TempDir()
			f := filepath.Join(dir, "f")
			if err := os.WriteFile(f, []byte("x"), 0o644); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(os.Args[0], "-test.run=^TestNonsPrefix$", "-test.v")
			cmd.Env = append(os.Environ(), "RONLY_NONS_PREFIX_CHILD="+dir, "RONLY_NONS_PREFIX_ABI="+abi)
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("child: %v\n%s", err, out)
			}
			for _, want := range []string{"chmod=EPERM", "fchmod=EPERM", "utimensat=EPERM", "setxattr=EPERM", "ioctl=EPERM", "shmget=EPERM", "getpid=ok", "open=ok"} {
				if !strings.Contains(string(out), want) {
					t.Errorf("want %s:\n%s", want, out)
				}
			}
			wantTrunc := "truncate=EPERM"
			if abi == "7" {
				wantTrunc = "truncate=ok"
			}
			if !strings.Contains(string(out), wantTrunc) {
				t.Errorf("want %s:\n%s", wantTrunc, out)
			}
			if fi, err := os.Stat(f); err != nil || fi.Mode().Perm() != 0o644 {
				t.Errorf("the file's mode changed from inside the filter: %v %v", fi.Mode(), err)
			}
		})
	}
}

func nonsPrefixChild(t *testing.T, dir string) {
	abi := 2
	if os.Getenv("RONLY_NONS_PREFIX_ABI") == "7" {
		abi = 7
	}
	prog := append(nonsPrefix(false, abi), make([]byte, 8)...)
	binary.NativeEndian.PutUint16(prog[len(prog)-8:], unix.BPF_RET|unix.BPF_K)
	binary.NativeEndian.PutUint32(prog[len(prog)-4:], unix.SECCOMP_RET_ALLOW)
	filters := make([]unix.SockFilter, len(prog)/8)
	for i := range filters {
		b := prog[i*8:]
		filters[i] = unix.SockFilter{Code: binary.NativeEndian.Uint16(b), Jt: b[2], Jf: b[3], K: binary.NativeEndian.Uint32(b[4:])}
	}
	runtime.LockOSThread() // the filter holds for this thread only
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		t.Fatal(err)
	}
	fprog := unix.SockFprog{Len: uint16(len(filters)), Filter: &filters[0]}
	if _, _, e := unix.RawSyscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, 0, uintptr(unsafe.Pointer(&fprog))); e != 0 {
		t.Fatalf("seccomp: %v", e)
	}
	f := filepath.Join(dir, "f")
	say := func(name string, err error) {
		switch err {
		case nil:
			t.Logf("%s=ok", name)
		case unix.EPERM:
			t.Logf("%s=EPERM", name)
		default:
			t.Logf("%s=%v", name, err)
		}
	}
	say("chmod", unix.Chmod(f, 0o600))
	fd, err := unix.Open(f, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	say("open", err)
	say("fchmod", unix.Fchmod(fd, 0o600))
	say("utimensat", unix.UtimesNanoAt(unix.AT_FDCWD, f, nil, 0))
	say("setxattr", unix.Setxattr(f, "user.ronly", []byte("x"), 0))
	_, err = unix.IoctlGetInt(fd, 0x40086602) // FS_IOC_SETFLAGS (its value is read as a pointer: refused first)
	say("ioctl", err)
	say("truncate", unix.Truncate(f, 1))
	_, err = unix.SysvShmGet(unix.IPC_PRIVATE, 4096, unix.IPC_CREAT|0o600)
	say("shmget", err)
	say("getpid", nil)
	unix.Close(fd)
}

func TestUnderByPathString(t *testing.T) {
	s := &sockets{byPath: []string{"/tmp/ronly-x/tmp", "/srv/rw"}}
	for p, want := range map[string]bool{
		"/tmp/ronly-x/tmp/a":           true,
		"/srv/rw/d/e":                  true,
		"/tmp/ronly-x/tmp":             false, // the directory itself is not the session's to change
		"/tmp/ronly-x/shims/docker":    false,
		"/srv/rwx":                     false,
		"/tmp/ronly-x/tmp/a (deleted)": false,
		"pipe:[123]":                   false,
		"/etc/passwd":                  false,
	} {
		if got := s.underByPathString(p); got != want {
			t.Errorf("%s: %t, want %t", p, got, want)
		}
	}
}

func TestCallerCreds(t *testing.T) {
	cr, err := callerCreds(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if cr.fsuid != os.Geteuid() || cr.fsgid != os.Getegid() {
		t.Errorf("creds %+v, want fsuid %d fsgid %d", cr, os.Geteuid(), os.Getegid())
	}
}

// TestSweepNons: a session directory whose supervisor died (not locked,
// older than a minute) is removed; a live one (locked), a young one and
// other names are left alone.
func TestSweepNons(t *testing.T) {
	dir := t.TempDir()
	old := time.Now().Add(-time.Hour)
	mk := func(name string, age time.Time) string {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Join(p, "tmp"), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, age, age); err != nil {
			t.Fatal(err)
		}
		return p
	}
	dead := mk("ronly-0123456789abcdef-1", old)
	live := mk("ronly-0123456789abcdef-2", old)
	young := mk("ronly-0123456789abcdef-3", time.Now())
	other := mk("ronly-docker-4", old)
	f, err := os.Open(live)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	sweepNons(dir)
	if _, err := os.Stat(dead); err == nil {
		t.Errorf("%s is still there", dead)
	}
	for _, p := range []string{live, young, other} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("%s was removed", p)
		}
	}
}
