package e2e

import (
	"archive/tar"
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"ronly.dev/ronly/go/probe"
)

// setidScript makes set-id files in the --rw directory DIR every way an
// agent would: chmod, install -m, cp -p of a set-user-ID program, tar xp of
// an archive that holds set-id files, Python's os.open and os.mknod (a
// regular file), and file capabilities. Each step prints its exit status;
// the file each makes must exist afterwards, without the bits.
const setidScript = `
cd DIR || exit 99
cp /bin/true chmod-u && chmod 4755 chmod-u; echo "chmod 4755: $?"
cp /bin/true chmod-us && chmod u+s chmod-us; echo "chmod u+s: $?"
cp /bin/true chmod-g && chmod 2755 chmod-g; echo "chmod 2755: $?"
install -m 4755 /bin/true install-u; echo "install -m 4755: $?"
cp -p /usr/bin/su cp-p; echo "cp -p su: $?"
mkdir tar && tar xpf setid.tar -C tar; echo "tar xpf: $?"
/usr/bin/python3 -c 'import os; os.open("py-open", os.O_CREAT|os.O_WRONLY, 0o4755)'; echo "os.open 04755: $?"
/usr/bin/python3 -c 'import os, stat; os.mknod("py-mknod", stat.S_IFREG|0o4755)'; echo "os.mknod S_IFREG|04755: $?"
cp /bin/true cap && setfattr -n security.capability -v 0sAQAAAgAgAAAAAAAAAAAAAAAAAAA= cap; echo "setfattr security.capability: $?"
/usr/bin/python3 -c 'import os; os.setxattr("cap", "security.capability", bytes.fromhex("0100000200200000"+"00"*12))'; echo "os.setxattr security.capability: $?"
touch /tmp/x && setfattr -n user.ronly -v 1 /tmp/x && getfattr -n user.ronly --only-values /tmp/x; echo " setfattr user.ronly: $?"
exit 0`

// setidSteps are the refused steps of setidScript, by what they print.
var setidSteps = []string{
	"chmod 4755", "chmod u+s", "chmod 2755", "install -m 4755", "cp -p su", "tar xpf",
	"os.open 04755", "os.mknod S_IFREG|04755", "setfattr security.capability", "os.setxattr security.capability",
}

// setidFiles are the files setidScript makes before it tries the bits on
// them (each must exist, plainly); Python's creations are refused whole.
var setidFiles = []string{"chmod-u", "chmod-us", "chmod-g", "install-u", "cp-p", "tar/suid", "tar/sgid", "cap"}

// writeSetIDTar writes an archive holding a set-user-ID and a set-group-ID
// program, as a tarball from elsewhere would.
func writeSetIDTar(t *testing.T, path string, uid int) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := tar.NewWriter(f)
	body := []byte("#!/bin/sh\nid\n")
	for name, mode := range map[string]int64{"suid": 0o4755, "sgid": 0o2755} {
		h := &tar.Header{Name: name, Mode: mode, Size: int64(len(body)), Uid: 0, Gid: 0, ModTime: time.Unix(1, 0), Typeflag: tar.TypeReg}
		if err := w.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(body); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(path, uid, uid); err != nil {
		t.Fatal(err)
	}
}

// auditEntry is one line of --audit-log.
type auditEntry struct{ Kind, What, Errno, Reason, Comm, Path string }

func readAudit(t *testing.T, path string) []auditEntry {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("audit log: %v", err)
	}
	defer f.Close()
	var out []auditEntry
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var e auditEntry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("audit line %q: %v", sc.Text(), err)
		}
		out = append(out, e)
	}
	return out
}

// TestSetIDFilesRefused is the red team's attack: root (or the user) inside
// makes set-id files in a --rw directory. From outside afterwards no file
// there is set-id or has file capabilities, the files themselves were made
// (so the sandbox did write there), and the audit log has a line for each
// refusal. The bits are checked on disk, not by running the file inside:
// the session's bind of the directory is nosuid, but the host's mount that
// a host user runs the file from is not.
func TestSetIDFilesRefused(t *testing.T) {
	b := setup(t)
	needTool(t, "setfattr")
	needTool(t, "python3")
	modes := []struct {
		name  string
		uid   int
		flags []string
	}{
		{"root", 0, nil},
		{"privileged", 0, []string{"--privileged"}},
		{"rootless", nobody, []string{"--rootless"}},
	}
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			dir := userDir(t, m.uid, "ronly-e2e-setid-")
			logDir := userDir(t, m.uid, "ronly-e2e-setid-log-")
			auditLog := filepath.Join(logDir, "audit.jsonl")
			writeSetIDTar(t, filepath.Join(dir, "setid.tar"), m.uid)
			flags := append(append([]string{}, m.flags...), "--rw", dir, "--audit-log", auditLog)
			r := b.sh(t, opts{uid: m.uid}, flags, strings.ReplaceAll(setidScript, "DIR", dir))
			if r.code != 0 {
				t.Fatalf("script failed:\n%s", r)
			}
			for _, step := range setidSteps {
				if !strings.Contains(r.stdout, step+": ") || strings.Contains(r.stdout, step+": 0\n") {
					t.Errorf("%s was not refused:\n%s", step, r)
				}
			}
			if !strings.Contains(r.stdout, "1 setfattr user.ronly: 0") {
				t.Errorf("setfattr -n user.ronly in /tmp did not work:\n%s", r)
			}

			// From outside: the files are there, none of them set-id.
			for _, f := range setidFiles {
				var st unix.Stat_t
				if err := unix.Lstat(filepath.Join(dir, f), &st); err != nil {
					t.Errorf("%s was not made (the sandbox must write in --rw): %v", f, err)
				}
			}
			for _, found := range probe.SetIDFiles(dir) {
				t.Errorf("HOST CHANGED: %s", found)
			}

			refused := map[string]int{}
			for _, e := range readAudit(t, auditLog) {
				if e.Kind == "syscall" && e.Errno == "EPERM" {
					refused[e.What]++
					if e.Reason == "" {
						t.Errorf("incomplete audit line %+v", e)
					}
					if e.What == "setxattr" && e.Path != "cap" {
						t.Errorf("the audit line of the refused setxattr names %q, not the file (cap)", e.Path)
					}
				}
			}
			n := 0
			for _, c := range refused {
				n += c
			}
			// tar tries each of its two members; cp -p also tries the
			// mode again without the bits it cannot keep.
			if n < len(setidSteps) {
				t.Errorf("%d refusals audited for %d refused steps: %v", n, len(setidSteps), refused)
			}
			for _, what := range []string{"fchmodat", "openat", "mknodat", "setxattr"} {
				if refused[what] == 0 {
					t.Errorf("no audit line for a refused %s: %v", what, refused)
				}
			}
			t.Logf("audited refusals: %v", refused)
		})
	}
}

// niceOf is the nice value of pid, as the host sees it.
func niceOf(t *testing.T, pid int) int {
	t.Helper()
	prio, err := unix.Getpriority(unix.PRIO_PROCESS, pid)
	if err != nil {
		t.Fatal(err)
	}
	return 20 - prio
}

// TestSchedulingStaysInside: setpriority and ioprio_set on "my user" and
// "my process group", and on a host process by pid, are refused; the host
// processes of the same user keep their nice value, checked from outside;
// nice, ionice, taskset and renice of the caller itself keep working, by
// pid 0 and by its own pid or thread id.
func TestSchedulingStaysInside(t *testing.T) {
	b := setup(t)
	needTool(t, "python3")
	// The ci profile's own PID namespace: the ids the calls name are the
	// namespace's, the supervisor translates the caller's.
	type mode struct {
		name  string
		uid   int
		flags []string
	}
	modes := []mode{{"ci", 0, []string{"--profile", "ci", "--workspace", userDir(t, 0, "ronly-e2e-sched-ws-")}}}
	for _, u := range users {
		modes = append(modes, mode{u.name, u.uid, u.flags})
	}
	for _, u := range modes {
		t.Run(u.name, func(t *testing.T) {
			// A host process of the same user, started in the test's
			// process group (which the supervisor shares). The group and
			// user calls set nice 1 (and best-effort I/O level 4, about
			// the default): should one get through, the other processes
			// of the user that it reaches change little, and the canary's
			// nice 0 shows it.
			canary := exec.Command("sleep", "600")
			canary.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
			if u.uid != 0 {
				canary.SysProcAttr.Credential = &syscall.Credential{Uid: uint32(u.uid), Gid: uint32(u.uid)}
			}
			if err := canary.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() { canary.Process.Kill(); canary.Wait() }()
			pid := canary.Process.Pid
			before, sched, self := niceOf(t, pid), probe.SchedState(pid), niceOf(t, os.Getpid())
			// The self calls lower the priority from where the test
			// runs (a niced CI run included): raising it needs
			// CAP_SYS_NICE, which no session has.
			script := fmt.Sprintf(`up=%d; up1=%d
py() { /usr/bin/python3 -c "import os; $1" 2>/dev/null; echo "$2: $?"; }
py 'os.setpriority(os.PRIO_USER, 0, 1)' "PRIO_USER 0"
py 'os.setpriority(os.PRIO_PGRP, 0, 1)' "PRIO_PGRP 0"
py 'os.setpriority(os.PRIO_PROCESS, %d, 19)' "PRIO_PROCESS host pid"
py 'os.sched_setaffinity(%d, {0})' "sched_setaffinity host pid"
renice -n 1 -u %d >/dev/null 2>&1; echo "renice -u: $?"
ionice -c2 -n4 -u %d >/dev/null 2>&1; echo "ionice -u: $?"
nice -n 5 true; echo "ok nice: $?"
ionice -c3 true; echo "ok ionice: $?"
taskset -c 0 true; echo "ok taskset: $?"
sh -c "exec renice -n $up -p 0" >/dev/null; echo "ok renice self: $?"
py "os.setpriority(os.PRIO_PROCESS, 0, $up1)" "ok setpriority self"
sh -c "exec renice -n $up -p \$\$" >/dev/null; echo "ok renice own pid: $?"
sh -c 'exec taskset -p 1 $$' >/dev/null; echo "ok taskset -p own pid: $?"
sh -c 'exec ionice -c3 -p $$'; echo "ok ionice -p own pid: $?"
py 'os.sched_setaffinity(os.getpid(), {0})' "ok sched_setaffinity own pid"
py 'import threading; r=[]; t=threading.Thread(target=lambda: r.append(os.sched_setaffinity(threading.get_native_id(), {0}))); t.start(); t.join(); assert r' "ok sched_setaffinity own thread id"
py 'import resource; resource.prlimit(os.getpid(), resource.RLIMIT_NOFILE, resource.getrlimit(resource.RLIMIT_NOFILE))' "ok prlimit own pid"
py 'os.sched_setaffinity(os.getppid(), {0})' "sched_setaffinity parent"
`, min(self+3, 19), min(self+4, 19), pid, pid, u.uid, u.uid)
			r := b.sh(t, opts{uid: u.uid}, u.flags, script)
			if r.code != 0 {
				t.Fatalf("script failed:\n%s", r)
			}
			for _, line := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
				what, status, _ := strings.Cut(line, ": ")
				if strings.HasPrefix(what, "ok ") != (status == "0") {
					t.Errorf("%s: exit status %s", what, status)
				}
			}
			if got := niceOf(t, pid); got != before {
				t.Errorf("HOST CHANGED: the host process %d of the same user has nice %d, was %d", pid, got, before)
			}
			if got := probe.SchedState(pid); got != sched {
				t.Errorf("HOST CHANGED: the host process %d's scheduling\n  before: %s\n  after:  %s", pid, sched, got)
			}
			if got := niceOf(t, os.Getpid()); got != self {
				t.Errorf("HOST CHANGED: the test's own nice value is %d, was %d", got, self)
			}
		})
	}
}

// TestReusePortRefused: a root service on the host listens on 127.0.0.1 with
// SO_REUSEPORT; the session (root, as the red team's) cannot join its port,
// the refusal is audited, and every client connection still reaches the
// service. A listener of the session's own on a free port works.
func TestReusePortRefused(t *testing.T) {
	b := setup(t)
	needTool(t, "python3")
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1) })
		return serr
	}}
	l, err := lc.Listen(context.Background(), "tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port
	accepted := make(chan int)
	go func() {
		n := 0
		for {
			c, err := l.Accept()
			if err != nil {
				accepted <- n
				return
			}
			n++
			c.Close()
		}
	}()

	logDir := userDir(t, 0, "ronly-e2e-reuseport-")
	auditLog := filepath.Join(logDir, "audit.jsonl")
	// The session joins (if it can) and, while it listens, makes 20
	// client connections to the port, which must all reach the host's
	// service.
	script := fmt.Sprintf(`
import socket, sys
s = socket.socket()
try:
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    s.bind(("127.0.0.1", %d))
    s.listen(64)
    print("joined", flush=True)
except PermissionError:
    print("refused", flush=True)
# Clients on the host's loopback, while the session's socket (if any) listens.
for i in range(20):
    socket.create_connection(("127.0.0.1", %d)).close()
own = socket.socket()
own.bind(("127.0.0.1", 0))
own.listen(1)
c = socket.create_connection(own.getsockname())
a, _ = own.accept()
c.sendall(b"hi")
print("own listener:", a.recv(2).decode(), flush=True)
`, port, port)
	r := b.run(t, opts{}, "--audit-log", auditLog, "--", "/usr/bin/python3", "-c", script)
	if r.code != 0 {
		t.Fatalf("session failed:\n%s", r)
	}
	if !strings.Contains(r.stdout, "refused\n") {
		t.Errorf("SO_REUSEPORT on the host service's port was not refused:\n%s", r)
	}
	if !strings.Contains(r.stdout, "own listener: hi") {
		t.Errorf("the session's own listener did not work:\n%s", r)
	}
	// Every client reached the host service.
	time.Sleep(100 * time.Millisecond)
	l.Close()
	if n := <-accepted; n != 20 {
		t.Errorf("the host service accepted %d of 20 connections", n)
	}
	found := false
	for _, e := range readAudit(t, auditLog) {
		if e.Kind == "syscall" && e.What == "setsockopt" && e.Errno == "EPERM" && strings.Contains(e.Reason, "SO_REUSEPORT") {
			found = true
		}
	}
	if !found {
		t.Errorf("no audit line for the refused setsockopt")
	}
}
