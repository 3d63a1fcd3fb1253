package e2e

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// refuse makes raw syscalls that the policy refuses: n unshares of a user
// namespace and m keyctl calls, then prints their errnos.
const refuse = `python3 -c '
import ctypes, sys
libc = ctypes.CDLL(None, use_errno=True)
out = []
for nr, arg, n in ((272, 0x10000000, int(sys.argv[1])), (250, 0, int(sys.argv[2]))):
    for _ in range(n):
        r = libc.syscall(nr, arg)
        out.append(str(ctypes.get_errno() if r < 0 else 0))
print(" ".join(out))
' `

// TestRefusalsAreCountedAndAudited runs known refused calls and checks the
// audit log and the textfile counts, exactly.
func TestRefusalsAreCountedAndAudited(t *testing.T) {
	b := setup(t)
	needTool(t, "python3")
	dir := userDir(t, 0, "ronly-e2e-count-")
	auditLog, textfile := filepath.Join(dir, "audit.jsonl"), filepath.Join(dir, "ronly.prom")
	r := b.sh(t, opts{}, []string{"--audit-log", auditLog, "--metrics-textfile", textfile}, refuse+"3 2")
	if r.code != 0 || strings.TrimSpace(r.stdout) != "1 1 1 1 1" { // EPERM each time
		t.Fatalf("want five EPERMs\n%s", r)
	}
	f, err := os.Open(auditLog)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	counts, sessions := map[string]int{}, map[string]bool{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var e struct {
			Session, Kind, What, Errno, Comm string
			PID                              int
		}
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("audit line %q is not JSON: %v", sc.Text(), err)
		}
		if e.Kind != "syscall" || e.Errno != "EPERM" || e.PID == 0 || e.Comm == "" {
			t.Errorf("incomplete audit line %q", sc.Text())
		}
		counts[e.What]++
		sessions[e.Session] = true
	}
	if counts["unshare"] != 3 || counts["keyctl"] != 2 || len(counts) != 2 || len(sessions) != 1 {
		t.Fatalf("audit log counts %v in sessions %v, want unshare 3, keyctl 2 in one session", counts, sessions)
	}
	prom, err := os.ReadFile(textfile)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`ronly_blocked_syscalls_total{syscall="unshare"} 3`, `ronly_blocked_syscalls_total{syscall="keyctl"} 2`,
		`ronly_sessions_total{result="ok"} 1`, `ronly_seccomp_counting 1`} {
		if !strings.Contains(string(prom), want+"\n") {
			t.Errorf("textfile lacks %q:\n%s", want, prom)
		}
	}
}

// TestSupervisorDeathFailsClosed kills the supervisor while a process of
// the session lives on; that process's refused calls must stay refused
// (the kernel answers ENOSYS for an unanswerable listener).
//
// The orphan is already running, blocked on a FIFO, when the supervisor
// dies, and makes its call the moment the test writes: any ronly starting
// elsewhere on the host sweeps a dead supervisor's cgroup and kills what is
// left in it (go/cgroup.Sweep), so an orphan that still had to start
// python after the kill lost that race under load.
func TestSupervisorDeathFailsClosed(t *testing.T) {
	b := setup(t)
	needTool(t, "python3")
	dir := userDir(t, 0, "ronly-e2e-failclosed-")
	fifo, result := filepath.Join(dir, "go"), filepath.Join(dir, "result")
	orphan := `python3 -c '
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
open(sys.argv[1]).read()
r = libc.syscall(272, 0x10000000)
with open(sys.argv[2] + ".tmp", "w") as f:
    f.write(str(ctypes.get_errno() if r < 0 else 0))
os.rename(sys.argv[2] + ".tmp", sys.argv[2])
' `
	script := `mkfifo ` + fifo + ` && { ` + orphan + fifo + ` ` + result + ` & } && echo started; sleep 1000`
	cmd := exec.Command(b.ronly, "--rw", dir, "--", "/bin/sh", "-c", script)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, _ := bufio.NewReader(out).ReadString('\n')
	if line != "started\n" {
		cmd.Process.Kill()
		t.Fatalf("sandbox did not start: %q", line)
	}
	// Opening the FIFO for writing returns once the orphan has it open
	// for reading: it is then past python's start.
	opened := make(chan *os.File, 1)
	go func() {
		f, err := os.OpenFile(fifo, os.O_WRONLY, 0)
		if err != nil {
			t.Error(err)
		}
		opened <- f
	}()
	var w *os.File
	select {
	case w = <-opened:
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		t.Fatal("the session's orphan never opened its FIFO")
	}
	if w == nil {
		cmd.Process.Kill()
		t.FailNow()
	}
	cmd.Process.Kill() // the supervisor, with the listener
	cmd.Wait()
	w.WriteString("go")
	w.Close()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if b, err := os.ReadFile(result); err == nil {
			if got := strings.TrimSpace(string(b)); got != "38" { // ENOSYS
				t.Fatalf("unshare after the supervisor died: errno %s, want 38 (ENOSYS): the call must not run", got)
			}
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("the orphaned session process never reported")
}

// TestNestedListenerFallsBackToErrno runs ronly under a seccomp filter
// that already has a listener, as in a nested sandbox: ronly must say that
// refused calls are no longer counted, and still refuse them.
func TestNestedListenerFallsBackToErrno(t *testing.T) {
	b := setup(t)
	needTool(t, "python3")
	r := underFilter(t, "listener", b.ronly, "-v", "--", "/bin/sh", "-c", refuse+"1 0")
	if r.code != 0 {
		t.Fatalf("%s", r)
	}
	if !strings.Contains(r.stderr, "seccomp=errno") || !strings.Contains(r.stderr, "not counted") {
		t.Errorf("ronly did not say it fell back to uncounted errnos:\n%s", r)
	}
	if r.stdout != "1\n" {
		t.Errorf("unshare was not refused with EPERM under the fallback:\n%s", r)
	}
}
