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
func TestSupervisorDeathFailsClosed(t *testing.T) {
	b := setup(t)
	needTool(t, "python3")
	dir := userDir(t, 0, "ronly-e2e-failclosed-")
	result := filepath.Join(dir, "result")
	script := `(while [ ! -e ` + dir + `/go ]; do sleep 0.05; done; ` + refuse + `1 0 > ` + result + `.tmp; mv ` + result + `.tmp ` + result + `) &
echo started; sleep 1000`
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
	cmd.Process.Kill() // the supervisor, with the listener
	cmd.Wait()
	os.WriteFile(filepath.Join(dir, "go"), nil, 0o644)
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if b, err := os.ReadFile(result); err == nil {
			if got := strings.TrimSpace(string(b)); got != "38" { // ENOSYS
				t.Fatalf("unshare after the supervisor died: errno %s, want 38 (ENOSYS): the call must not run", got)
			}
			return
		}
		time.Sleep(50 * time.Millisecond)
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
