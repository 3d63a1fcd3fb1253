package e2e

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"
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
	out, code := onPTY(t, b.ronly, `\x03`, "--", "/bin/sh", "-c", `trap "exit 130" INT; echo ready; sleep 100 & wait; echo not-$((0+1))-interrupted`)
	if code != "130" || strings.Contains(out, "not-1-interrupted") {
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

// callerPTY is a terminal the test owns, as a user's: ronly runs on its
// slave, as the session leader with it as the controlling terminal, and
// the test types into and reads from its master.
type callerPTY struct {
	t      *testing.T
	master *os.File
	slave  *os.File // kept open: the caller's terminal, checked after the session
	before ttyState // the caller's terminal before ronly started
	cmd    *exec.Cmd

	mu     sync.Mutex
	out    []byte
	seen   int  // expect's position in out
	closed bool // read to the end
	read   chan struct{}
}

func startOnCallerPTY(t *testing.T, ronly string, args ...string) *callerPTY {
	t.Helper()
	return startOnCallerPTYOut(t, ronly, nil, args...)
}

// startOnCallerPTYOut is startOnCallerPTY with stdout, when not nil, a file
// (`ronly ... > out` at a terminal).
func startOnCallerPTYOut(t *testing.T, ronly string, stdout *os.File, args ...string) *callerPTY {
	t.Helper()
	m, s, err := pty.Open()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close(); s.Close() })
	if err := pty.Setsize(m, &pty.Winsize{Rows: 30, Cols: 100}); err != nil {
		t.Fatal(err)
	}
	c := &callerPTY{t: t, master: m, slave: s, read: make(chan struct{}, 1)}
	c.cmd = exec.Command(ronly, args...)
	c.cmd.Dir = "/"
	c.cmd.Env = append(os.Environ(), "TERM=xterm", "PS1=$ ")
	c.cmd.Stdin, c.cmd.Stdout, c.cmd.Stderr = s, s, s
	if stdout != nil {
		c.cmd.Stdout = stdout
	}
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	c.before = stateOf(t, s)
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if c.cmd.ProcessState == nil {
			c.cmd.Process.Kill()
			c.cmd.Wait()
		}
	})
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := m.Read(buf)
			c.mu.Lock()
			c.out = append(c.out, buf[:n]...)
			if err != nil {
				c.closed = true // the caller's terminal has no session on it any more
			}
			c.mu.Unlock()
			select {
			case c.read <- struct{}{}:
			default:
			}
			if err != nil {
				return
			}
		}
	}()
	return c
}

// expect waits until the output after the last match holds want.
func (c *callerPTY) expect(want string) {
	c.t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		c.mu.Lock()
		i := strings.Index(string(c.out[c.seen:]), want)
		if i >= 0 {
			c.seen += i + len(want)
		}
		out, closed := string(c.out), c.closed
		c.mu.Unlock()
		if i >= 0 {
			return
		}
		if closed {
			c.t.Fatalf("no %q before ronly left the terminal; it shows:\n%s", want, out)
		}
		select {
		case <-c.read:
		case <-deadline:
			c.t.Fatalf("no %q within 30s; the terminal shows:\n%s", want, out)
		}
	}
}

func (c *callerPTY) send(s string) {
	c.t.Helper()
	if _, err := c.master.WriteString(s); err != nil {
		c.t.Fatal(err)
	}
}

// wait returns ronly's exit code.
func (c *callerPTY) wait() int {
	c.t.Helper()
	done := make(chan error, 1)
	go func() { done <- c.cmd.Wait() }()
	select {
	case err := <-done:
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			c.t.Fatal(err)
		}
		return c.cmd.ProcessState.ExitCode()
	case <-time.After(hangGuard):
		c.t.Fatalf("ronly did not end within %v", hangGuard)
	}
	return -1
}

// ttyState is what a session could change of the caller's terminal.
type ttyState struct {
	mode, uid uint32
	ldisc     int
	termios   unix.Termios
}

func stateOf(t *testing.T, f *os.File) ttyState {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	ldisc, err := unix.IoctlGetInt(int(f.Fd()), unix.TIOCGETD)
	if err != nil {
		t.Fatal(err)
	}
	tio, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	if err != nil {
		t.Fatal(err)
	}
	return ttyState{mode: st.Mode, uid: st.Uid, ldisc: ldisc, termios: *tio}
}

var ttyProfiles = []struct {
	name  string
	flags []string
}{
	{"debug", nil},
	{"ci", []string{"--profile", "ci", "--workspace", "/var/tmp"}},
}

// TestPTYIsTheSessionsOwn: a caller at a terminal gives the session a pty
// of its own: `tty` names it, the window size follows the caller's, and a
// chmod 4777 and TIOCSETD N_NULL of the session's terminal leave the
// caller's terminal as it was (mode, line discipline), whose settings are
// restored after the session; the exit code passes through.
func TestPTYIsTheSessionsOwn(t *testing.T) {
	b := setup(t)
	needTool(t, "python3")
	for _, p := range ttyProfiles {
		t.Run(p.name, func(t *testing.T) {
			if p.name == "ci" {
				p.flags = []string{"--profile", "ci", "--workspace", userDir(t, 0, "ronly-e2e-tty-")}
			}
			c := startOnCallerPTY(t, b.ronly, append(p.flags, "--", "/bin/sh", "-c",
				`tty; stty size; echo ready-$((1+1)); read x; `+
					// SIGWINCH to ronly, its TIOCSWINSZ here: give it 10s under load.
					`n=0; while [ "$(stty size)" != "41 132" ] && [ $n -lt 100 ]; do sleep 0.1; n=$((n+1)); done; `+
					`stty size; chmod 4777 /proc/self/fd/0 $(tty); `+
					`python3 -c 'import fcntl,struct,termios; fcntl.ioctl(0, termios.TIOCSETD, struct.pack("i", 27))'; exit 7`)...)
			before := c.before
			c.expect("/dev/pts/")
			c.expect("30 100")
			c.expect("ready-2")
			if err := pty.Setsize(c.master, &pty.Winsize{Rows: 41, Cols: 132}); err != nil {
				t.Fatal(err)
			}
			c.send("\n")
			c.expect("41 132")
			if code := c.wait(); code != 7 {
				t.Errorf("exit code %d, want the command's 7", code)
			}
			after := stateOf(t, c.slave)
			if after.mode != before.mode || after.uid != before.uid {
				t.Errorf("HOST CHANGED: the caller's terminal is mode %o uid %d, was %o uid %d", after.mode, after.uid, before.mode, before.uid)
			}
			if after.ldisc != before.ldisc {
				t.Errorf("HOST CHANGED: the caller's terminal has line discipline %d, was %d", after.ldisc, before.ldisc)
			}
			if after.termios != before.termios {
				t.Errorf("the caller's terminal settings were not restored:\n  before %+v\n  after  %+v", before.termios, after.termios)
			}
		})
	}
}

// TestPTYCtrlCAndJobControl drives an interactive bash on the session's pty:
// Ctrl-C ends a foreground sleep and the shell goes on, Ctrl-Z stops one,
// the shell lists it, fg brings it back and Ctrl-C ends it, and the
// shell's exit code comes back.
func TestPTYCtrlCAndJobControl(t *testing.T) {
	b := setup(t)
	needTool(t, "bash")
	for _, p := range ttyProfiles {
		t.Run(p.name, func(t *testing.T) {
			if p.name == "ci" {
				p.flags = []string{"--profile", "ci", "--workspace", userDir(t, 0, "ronly-e2e-tty-")}
			}
			start := time.Now()
			c := startOnCallerPTY(t, b.ronly, append(p.flags, "--", "/bin/bash", "--norc", "--noprofile", "-i")...)
			before := c.before
			c.send("echo ready-$((1+1))\n")
			c.expect("ready-2")
			c.send("sleep 100; echo not-$((0+1))-interrupted\n")
			time.Sleep(500 * time.Millisecond) // bash forks and execs sleep
			c.send("\x03")
			c.send("echo after-$((2+3))\n")
			c.expect("after-5")
			c.send("sleep 200\n")
			time.Sleep(500 * time.Millisecond)
			c.send("\x1a")
			c.expect("Stopped")
			c.send("jobs; echo listed-$((2+2))\n")
			c.expect("listed-4")
			// Back to the foreground (bash names the job), then ended
			// there: no stopped job is left for exit to refuse.
			c.send("fg\n")
			c.expect("sleep 200")
			time.Sleep(500 * time.Millisecond)
			c.send("\x03")
			c.send("echo after-fg-$((3+3))\n")
			c.expect("after-fg-6")
			c.send("exit 6\n")
			code := c.wait()
			c.mu.Lock()
			out := string(c.out)
			c.mu.Unlock()
			if code != 6 {
				t.Errorf("exit code %d, want the shell's 6; the terminal shows:\n%s", code, out)
			}
			if strings.Contains(out, "not-1-interrupted") {
				t.Errorf("Ctrl-C did not interrupt the sleep:\n%s", out)
			}
			if d := time.Since(start); d > 90*time.Second {
				t.Errorf("the session took %v: a sleep was not interrupted", d)
			}
			if after := stateOf(t, c.slave); after != before {
				t.Errorf("the caller's terminal is not as before:\n  before %+v\n  after  %+v", before, after)
			}
		})
	}
}

// TestPTYWithStdoutToFile: `ronly -- cmd > out` at a terminal: stdin and
// stderr are the session's pty, stdout a pipe whose bytes reach the file.
func TestPTYWithStdoutToFile(t *testing.T) {
	b := setup(t)
	dir := userDir(t, 0, "ronly-e2e-tty-")
	out, err := os.Create(dir + "/out")
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	// ls's own descriptors are the command's: no redirection in between.
	c := startOnCallerPTYOut(t, b.ronly, out, "--", "/bin/sh", "-c", `ls -l /proc/self/fd/; echo done-$((1+1)) >&2`)
	c.expect("done-2")
	if code := c.wait(); code != 0 {
		t.Errorf("exit %d, want 0", code)
	}
	got, _ := os.ReadFile(dir + "/out")
	if !strings.Contains(string(got), " 0 -> /dev/pts/") || !strings.Contains(string(got), " 2 -> /dev/pts/") ||
		!strings.Contains(string(got), " 1 -> pipe:") {
		t.Errorf("want stdin and stderr on the session's pty and stdout a pipe into the file, which holds:\n%s", got)
	}
}

// TestPTYCtrlZSuspendsRonly: at a shell, Ctrl-Z of a command that is not
// a shell stops the command and ronly, as it stops any job, and fg resumes
// both. The kernel would drop the stop: the session leader's group inside
// is orphaned, its parent (the supervisor) being in another session.
func TestPTYCtrlZSuspendsRonly(t *testing.T) {
	b := setup(t)
	needTool(t, "bash")
	c := startOnCallerPTY(t, "/bin/bash", "--norc", "--noprofile", "-i")
	c.send(b.ronly + " --no-metrics -- /bin/sh -c 'echo ready-$((1+1)); read line; echo got-$line'\n")
	c.expect("ready-2")
	c.send("\x1a")
	c.expect("Stopped")
	c.send("echo outside-$((2+3))\n")
	c.expect("outside-5")
	c.send("fg\n")
	time.Sleep(500 * time.Millisecond)
	c.send("hello\n")
	c.expect("got-hello")
	c.expect("$ ") // the shell's prompt: what is typed before it is ronly's stdin
	c.send("echo rc-$?\n")
	c.expect("rc-0")
	c.send("exit 0\n")
	if code := c.wait(); code != 0 {
		t.Errorf("the caller's shell exited %d", code)
	}
}
