package e2e

import (
	"os/exec"
	"strings"
	"testing"
)

// ptyDriver runs ronly ARGS on a new pseudo-terminal, waits for "ready",
// types KEYS, and prints the output and then ronly's exit status.
const ptyDriver = `
import os, pty, select, signal, sys, time
ronly, keys, args = sys.argv[1], sys.argv[2].encode().decode('unicode_escape').encode(), sys.argv[3:]
pid, fd = pty.fork()
if pid == 0:
    # A login terminal starts with Ctrl-C's SIGINT at its default; a test
    # runner may have left it ignored, which exec would pass on.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    os.execv(ronly, [ronly] + args)
out, deadline, typed, done = b'', time.time() + 30, False, 0
while time.time() < deadline:
    r, _, _ = select.select([fd], [], [], 0.2)
    if r:
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    if not typed and b'ready' in out:
        os.write(fd, keys)
        typed = True
    done, status = os.waitpid(pid, os.WNOHANG)
    if done:
        break
if not done:
    if time.time() >= deadline:
        os.kill(pid, 9)
    done, status = os.waitpid(pid, 0)
sys.stdout.write(out.decode(errors='replace'))
print('\nEXIT %d' % os.waitstatus_to_exitcode(status))
`

func onPTY(t *testing.T, ronly, keys string, args ...string) (string, string) {
	t.Helper()
	needTool(t, "python3")
	out, err := exec.Command("python3", append([]string{"-c", ptyDriver, ronly, keys}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("pty driver: %v\n%s", err, out)
	}
	s := string(out)
	i := strings.LastIndex(s, "\nEXIT ")
	if i < 0 {
		t.Fatalf("no exit status:\n%s", s)
	}
	return s[:i], strings.TrimSpace(s[i+len("\nEXIT "):])
}

// TestCtrlCReachesTheCommand: Ctrl-C on ronly's terminal interrupts the
// foreground command, and ronly survives to report 128+SIGINT.
func TestCtrlCReachesTheCommand(t *testing.T) {
	b := setup(t)
	// The shell traps SIGINT before it says ready: a plain "echo ready;
	// sleep" races dash's fork of sleep against the keystroke under load,
	// with or without ronly.
	out, code := onPTY(t, b.ronly, `\x03`, "--", "/bin/sh", "-c", `trap "exit 130" INT; echo ready; sleep 100 & wait; echo not-interrupted`)
	if code != "130" || strings.Contains(out, "not-interrupted") {
		t.Fatalf("want exit 130 from an interrupted sleep, got %s:\n%s", code, out)
	}
}

// TestInteractiveShellWithJobControl drives an interactive bash: a job is
// started in the background, listed and killed, and the exit status of the
// shell comes back.
func TestInteractiveShellWithJobControl(t *testing.T) {
	b := setup(t)
	needTool(t, "bash")
	keys := `sleep 300 \&\nkill %1; wait; echo killed-$((40+2))\nexit 4\n`
	out, code := onPTY(t, b.ronly, strings.ReplaceAll(keys, `\&`, "&"), "--", "/bin/bash", "--norc", "--noprofile", "-i", "-c",
		`echo ready; exec bash --norc --noprofile -i`)
	if code != "4" || !strings.Contains(out, "killed-42") {
		t.Fatalf("want the job killed and exit 4, got %s:\n%s", code, out)
	}
}
