package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"ronly.dev/ronly/go/probe"
	"ronly.dev/ronly/go/report"
)

// stdioModes are the ways the stdio tests run ronly: a root-owned file is
// writable by root inside (the user namespace maps root to root), a
// nobody-owned one by nobody (--rootless), and the ci profile has its own
// PID 1 in between.
var stdioModes = []struct {
	name  string
	uid   int
	flags []string
}{
	{"root", 0, nil},
	{"rootless", nobody, []string{"--rootless"}},
	{"ci", 0, []string{"--profile", "ci"}},
	{"privileged", 0, []string{"--privileged"}},
}

// runStdio runs ronly with the given files as its stdin and stdout (stderr
// is kept), as uid, and returns the exit code and stderr.
func (b bins) runStdio(t *testing.T, uid int, stdin, stdout *os.File, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	cmd := exec.CommandContext(ctx, b.ronly, args...)
	cmd.Dir = "/"
	cmd.Env = os.Environ()
	if uid != 0 {
		cmd.Env = append(cmd.Env, "HOME=/", "USER=nobody", "LOGNAME=nobody")
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid)}}
	}
	var stderr bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, stdout, &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("ronly %q did not finish within %v (hang guard)\nstderr:\n%s", args, hangGuard, stderr.String())
	}
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("start ronly %q: %v", args, err)
		}
		return ee.ExitCode(), stderr.String()
	}
	return 0, stderr.String()
}

// TestStdioHostFilesUnchanged hands ronly host objects as stdio and lets
// the command attack them through its descriptors 0 and 1: a file of its
// own user as stdin (reopened for writing, chmod, touch, setfattr), a log
// opened with >> as stdout (reopened with O_TRUNC), and a character device
// with /dev/null's numbers as stdin (chmod 600). From outside, nothing of
// them may have changed: contents, mode, times, xattrs.
func TestStdioHostFilesUnchanged(t *testing.T) {
	b := setup(t)
	needTool(t, "setfattr")
	for _, m := range stdioModes {
		t.Run(m.name, func(t *testing.T) {
			dir := userDir(t, m.uid, "ronly-e2e-stdio-")
			in := filepath.Join(dir, "in")
			writeFile(t, m.uid, in, "stdin canary\n", 0o644)
			logPath := filepath.Join(dir, "log")
			writeFile(t, m.uid, logPath, "log line 1\n", 0o644)
			dev := filepath.Join(dir, "null")
			if err := unix.Mknod(dev, unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(dev, 0o666); err != nil {
				t.Fatal(err)
			}
			if err := os.Chown(dev, m.uid, m.uid); err != nil {
				t.Fatal(err)
			}
			before := map[string]string{in: probe.Describe(in), logPath: probe.Describe(logPath), dev: probe.Describe(dev)}

			stdin, err := os.Open(in)
			if err != nil {
				t.Fatal(err)
			}
			defer stdin.Close()
			log, err := os.OpenFile(logPath, os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer log.Close()
			flags := m.flags
			if m.name == "ci" {
				flags = append(append([]string{}, m.flags...), "--workspace", userDir(t, m.uid, "ronly-e2e-stdio-ws-"))
			}
			// Every attack runs, whatever the one before did.
			script := `echo x > /proc/self/fd/0; echo rewritten 1<> /proc/self/fd/0; chmod 4777 /proc/self/fd/0; ` +
				`touch -d 2000-01-01 /proc/self/fd/0; setfattr -n user.ronly-e2e -v x /proc/self/fd/0; ` +
				`: > /proc/self/fd/1; chmod 600 /proc/self/fd/1; exit 0`
			code, stderr := b.runStdio(t, m.uid, stdin, log, append(flags, "--", "/bin/sh", "-c", script)...)
			if code != 0 {
				t.Fatalf("ronly exit %d, want 0:\n%s", code, stderr)
			}

			devIn, err := os.Open(dev)
			if err != nil {
				t.Fatal(err)
			}
			defer devIn.Close()
			code, stderr = b.runStdio(t, m.uid, devIn, log, append(flags, "--", "/bin/sh", "-c",
				`chmod 600 /proc/self/fd/0; touch /proc/self/fd/0; exit 0`)...)
			if code != 0 {
				t.Fatalf("ronly exit %d, want 0:\n%s", code, stderr)
			}

			for _, p := range []string{in, logPath, dev} {
				if after := probe.Describe(p); after != before[p] {
					t.Errorf("HOST CHANGED: %s given as stdio\n  before: %s\n  after:  %s", p, before[p], after)
				}
			}
			if b, _ := os.ReadFile(logPath); string(b) != "log line 1\n" {
				t.Errorf("HOST CHANGED: the >> log holds %q, want %q", b, "log line 1\n")
			}
		})
	}
}

// TestStdioPipes: the command's stdio are pipes the supervisor relays;
// input, its EOF, output, exit codes and the order of stdout and stderr
// in one file come through as without ronly.
func TestStdioPipes(t *testing.T) {
	b := setup(t)
	for _, m := range stdioModes {
		t.Run(m.name, func(t *testing.T) {
			flags := m.flags
			if m.name == "ci" {
				flags = append(append([]string{}, m.flags...), "--workspace", userDir(t, 0, "ronly-e2e-stdio-ws-"))
			}
			r := b.run(t, opts{uid: m.uid, stdin: "abc"}, append(flags, "--", "cat")...)
			if r.code != 0 || r.stdout != "abc" {
				t.Errorf("printf abc | ronly -- cat: want abc and exit 0, got:\n%s", r)
			}
			// EOF reaches the command: the loop ends and says so.
			r = b.sh(t, opts{uid: m.uid, stdin: "a\nb\n"}, flags, `while read l; do echo "got $l"; done; echo eof; exit 3`)
			if r.code != 3 || r.stdout != "got a\ngot b\neof\n" {
				t.Errorf("want both lines, eof and exit 3, got:\n%s", r)
			}
			r = b.sh(t, opts{uid: m.uid}, flags, `ls -l /proc/$$/fd/0 /proc/$$/fd/1 /proc/$$/fd/2`)
			if r.code != 0 || strings.Count(r.stdout, "pipe:") != 3 {
				t.Errorf("want fds 0-2 to be pipes inside, got:\n%s", r)
			}
			r = b.sh(t, opts{uid: m.uid}, flags, `kill -TERM $$`)
			if r.code != 128+int(syscall.SIGTERM) {
				t.Errorf("a command killed by SIGTERM: want exit %d, got:\n%s", 128+int(syscall.SIGTERM), r)
			}
		})
	}
}

// TestStdioOrderAndVolume: stdout and stderr to one file keep the order
// the command wrote in; 50 MB of output arrives whole; a background
// process left holding stdout neither loses what was written nor holds
// ronly open.
func TestStdioOrderAndVolume(t *testing.T) {
	b := setup(t)
	dir := userDir(t, 0, "ronly-e2e-stdio-")
	out := filepath.Join(dir, "out")
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// No metrics: a warning of ronly's own would land in the same file.
	cmd := exec.Command(b.ronly, "--no-metrics", "--", "/bin/sh", "-c", `i=0; while [ $i -lt 200 ]; do echo out$i; echo err$i >&2; i=$((i+1)); done`)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	var want strings.Builder
	for i := 0; i < 200; i++ {
		want.WriteString("out" + strconv.Itoa(i) + "\nerr" + strconv.Itoa(i) + "\n")
	}
	if got, _ := os.ReadFile(out); string(got) != want.String() {
		t.Errorf("stdout and stderr to one file came out of order or incomplete (%d bytes, want %d)", len(got), want.Len())
	}

	r := b.sh(t, opts{}, nil, `head -c 50000000 /dev/zero`)
	if r.code != 0 || len(r.stdout) != 50000000 {
		t.Errorf("want 50000000 bytes of output, got %d (exit %d): %s", len(r.stdout), r.code, r.stderr)
	}

	start := time.Now()
	r = b.sh(t, opts{}, []string{"--profile", "ci", "--workspace", dir}, `(sleep 100; echo late) & echo early`)
	if r.code != 0 || r.stdout != "early\n" {
		t.Errorf("want early only and exit 0, got:\n%s", r)
	}
	if d := time.Since(start); d > 60*time.Second {
		t.Errorf("ronly took %v: the leftover sleep held it open", d)
	}
}

// TestStdioBrokenPipe: `ronly -- yes | head -1` ends, with yes killed by
// SIGPIPE (141), as without ronly; ronly itself does not die of it.
func TestStdioBrokenPipe(t *testing.T) {
	b := setup(t)
	needTool(t, "bash")
	for _, m := range stdioModes {
		t.Run(m.name, func(t *testing.T) {
			// The report is written only by a ronly that survived, and
			// says how the command ended: 141 alone could be ronly's own
			// death by SIGPIPE.
			dir := userDir(t, m.uid, "ronly-e2e-stdio-")
			rep := filepath.Join(dir, "report.json")
			// No metrics: ronly's own warnings would mix into the output.
			flags := strings.Join(m.flags, " ") + " --no-metrics --report " + rep
			if m.name == "ci" {
				flags += " --workspace " + dir
			}
			ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
			defer cancel()
			cmd := exec.CommandContext(ctx, "bash", "-c", b.ronly+" "+flags+` -- yes | head -1; echo "status ${PIPESTATUS[0]}"`)
			cmd.Dir = "/"
			if m.uid != 0 {
				cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(m.uid), Gid: uint32(m.uid)}}
			}
			out, err := cmd.CombinedOutput()
			if ctx.Err() != nil {
				t.Fatalf("ronly -- yes | head -1 hung:\n%s", out)
			}
			if err != nil || string(out) != "y\nstatus 141\n" {
				t.Errorf("want y and status 141, got %v:\n%s", err, out)
			}
			doc, err := os.ReadFile(rep)
			if err != nil {
				t.Fatalf("ronly wrote no report (did it die itself?): %v", err)
			}
			var r report.Report
			// (In the ci profile the command's PID 1 passes its death on
			// as the exit status 141, so the report names no signal.)
			if err := json.Unmarshal(doc, &r); err != nil || r.Exit.Code != 141 || (m.name != "ci" && r.Exit.Signal != "SIGPIPE") {
				t.Errorf("report: want the command's exit 141 by SIGPIPE, got %+v (%v)", r.Exit, err)
			}
		})
	}
}
