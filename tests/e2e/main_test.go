// Package e2e runs the built ronly binary as root against the real kernel:
// the probe battery of hostile and everyday operations inside the sandbox,
// real tools doing normal work, the command line's error handling, and
// after each, the host checked from outside.
//
// go test ./tests/e2e builds ronly, ronly-writewatch and the probe itself;
// Bazel passes prebuilt binaries with -ronly, -writewatch and -probe. The tests need root: they skip
// without it, except under CI (CI set), where they fail.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	ronlyFlag = flag.String("ronly", "", "prebuilt ronly binary (default: go build ./go/cmd/ronly)")
	probeFlag = flag.String("probe", "", "prebuilt probe helper binary (default: go build ./tests/e2e/probebin)")
	wwFlag    = flag.String("writewatch", "", "prebuilt ronly-writewatch binary (default: go build ./go/cmd/ronly-writewatch), put beside ronly as --count-writes wants it")
)

// nobody is the unprivileged user the rootless runs use.
const nobody = 65534

// hangGuard bounds one ronly run, so that a hung sandbox fails the test
// instead of the whole suite. It is not a timing assertion.
const hangGuard = 3 * time.Minute

// bins are the binaries under test, copied into a directory every user can
// read that is visible inside the sandbox (not under /tmp, which ronly
// replaces with an empty tmpfs).
type bins struct {
	dir, ronly, probe string
}

var (
	binsOnce sync.Once
	theBins  bins
	binsErr  error
)

func TestMain(m *testing.M) {
	if name := os.Getenv(envFilter); name != "" {
		for i, a := range os.Args {
			if a == "--" {
				execUnderFilter(name, os.Args[i+1:])
			}
		}
	}
	flag.Parse()
	code := m.Run()
	if theBins.dir != "" {
		os.RemoveAll(theBins.dir)
	}
	os.Exit(code)
}

// requireRoot skips the test when not root, or fails it under CI, where
// these tests must run.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	msg := "the end-to-end tests need root (they run ronly as root and as an unprivileged user, and check the host from outside); run them with sudo"
	if os.Getenv("CI") != "" {
		t.Fatal(msg + " (CI is set, so this fails instead of skipping)")
	}
	t.Skip(msg)
}

// needTool skips a test whose tool is missing, or fails it under CI, where
// tools/install-deps installs every tool these tests use.
func needTool(t *testing.T, name string) {
	t.Helper()
	if _, err := exec.LookPath(name); err == nil {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s is not installed, but CI must run this test (add it to tools/install-deps)", name)
	}
	t.Skipf("%s is not installed", name)
}

// setup returns the binaries, building them on first use.
func setup(t *testing.T) bins {
	t.Helper()
	requireRoot(t)
	binsOnce.Do(func() { theBins, binsErr = prepareBins() })
	if binsErr != nil {
		t.Fatalf("prepare binaries: %v", binsErr)
	}
	return theBins
}

func prepareBins() (bins, error) {
	dir, err := os.MkdirTemp("/var/tmp", "ronly-e2e-bin-")
	if err != nil {
		return bins{}, err
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return bins{}, err
	}
	b := bins{dir: dir, ronly: filepath.Join(dir, "ronly"), probe: filepath.Join(dir, "probebin")}
	for _, x := range []struct{ flag, pkg, dst string }{
		{*ronlyFlag, "ronly.dev/ronly/go/cmd/ronly", b.ronly},
		{*probeFlag, "ronly.dev/ronly/tests/e2e/probebin", b.probe},
		{*wwFlag, "ronly.dev/ronly/go/cmd/ronly-writewatch", filepath.Join(dir, "ronly-writewatch")},
	} {
		if x.flag != "" {
			if err := copyFile(x.flag, x.dst); err != nil {
				return b, err
			}
			continue
		}
		// Linked as Bazel's //:ronly is: static, with pure-Go DNS and user
		// lookups, so TestStaticBinary holds for both builds.
		// The version is stamped as tools/workspace_status.sh does for Bazel.
		version, _ := exec.Command("git", "describe", "--always", "--dirty").Output()
		stamp := "-X main.version=" + strings.TrimSpace(string(version))
		cmd := exec.Command("go", "build", "-tags", "netgo,osusergo",
			"-ldflags", "-linkmode=external -extldflags=-static "+stamp, "-o", x.dst, x.pkg)
		if out, err := cmd.CombinedOutput(); err != nil {
			return b, fmt.Errorf("go build %s: %v\n%s", x.pkg, err, out)
		}
	}
	return b, nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// opts are how one ronly run is started.
type opts struct {
	uid   int        // 0: as root; else as this user (and its group)
	stdin string     // fed to the command
	env   []string   // added to the environment
	extra []*os.File // passed on as descriptors 3, 4, ...
	dir   string     // working directory; "" is /
	// stdinFile and stderrFile, when set, are ronly's stdin and stderr
	// instead of stdin and a buffer (result.stderr is then empty).
	stdinFile, stderrFile *os.File
}

// result is what one ronly run did.
type result struct {
	code           int
	stdout, stderr string
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
}

// run runs the ronly binary with args and returns its exit code and output.
func (b bins) run(t *testing.T, o opts, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	cmd := exec.CommandContext(ctx, b.ronly, args...)
	cmd.Dir = "/"
	if o.dir != "" {
		cmd.Dir = o.dir
	}
	cmd.Env = append(os.Environ(), o.env...)
	if o.uid != 0 {
		cmd.Env = append(cmd.Env, "HOME=/", "USER=nobody", "LOGNAME=nobody")
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(o.uid), Gid: uint32(o.uid)}}
	}
	cmd.Stdin = strings.NewReader(o.stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if o.stdinFile != nil {
		cmd.Stdin = o.stdinFile
	}
	if o.stderrFile != nil {
		cmd.Stderr = o.stderrFile
	}
	cmd.ExtraFiles = o.extra
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("ronly %q did not finish within %v (hang guard)\nstdout:\n%s\nstderr:\n%s", args, hangGuard, stdout.String(), stderr.String())
	}
	r := result{stdout: stdout.String(), stderr: stderr.String()}
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("start ronly %q: %v", args, err)
		}
		r.code = ee.ExitCode()
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			t.Fatalf("ronly %q itself was killed by %v\n%s", args, ws.Signal(), r)
		}
	}
	return r
}

// sh runs a shell script inside ronly, with flags before the command.
func (b bins) sh(t *testing.T, o opts, flags []string, script string) result {
	t.Helper()
	return b.run(t, o, append(append([]string{}, flags...), "--", "/bin/sh", "-c", script)...)
}

// startReady starts cmd, a session whose command prints "ready" once it
// is set up and then waits for its stdin to close, and waits up to 30 s
// for that line. The caller closes stdin to let it end; the rest of its
// stdout is discarded, its stderr collected. On a failure the session is
// killed and reaped.
func startReady(t *testing.T, cmd *exec.Cmd) (stdin io.WriteCloser, stderr *strings.Builder) {
	t.Helper()
	stdin, stdout, stderr := startPiped(t, cmd)
	ready := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(stdout).ReadString('\n')
		ready <- line
		io.Copy(io.Discard, stdout)
	}()
	fail := func(format string, args ...any) {
		t.Helper()
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf(format, args...)
	}
	select {
	case line := <-ready:
		if line != "ready\n" {
			fail("session said %q; stderr:\n%s", line, stderr.String())
		}
	case <-time.After(30 * time.Second):
		fail("session not ready after 30 s; stderr:\n%s", stderr.String())
	}
	return stdin, stderr
}

// startPiped starts cmd with pipes to its stdin and from its stdout, and
// its stderr collected.
func startPiped(t *testing.T, cmd *exec.Cmd) (stdin io.WriteCloser, stdout io.ReadCloser, stderr *strings.Builder) {
	t.Helper()
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if stdout, err = cmd.StdoutPipe(); err != nil {
		t.Fatal(err)
	}
	stderr = &strings.Builder{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return stdin, stdout, stderr
}

// userDir makes a fresh directory under /var/tmp owned by uid (so that only
// the sandbox, not file permissions, can stop that user writing in it).
func userDir(t *testing.T, uid int, pattern string) string {
	t.Helper()
	return userDirIn(t, uid, "/var/tmp", pattern)
}

// userDirIn is userDir in parent.
func userDirIn(t *testing.T, uid int, parent, pattern string) string {
	t.Helper()
	dir, err := os.MkdirTemp(parent, pattern)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dir, uid, uid); err != nil {
		t.Fatal(err)
	}
	return dir
}

// writeFile writes a file owned by uid.
func writeFile(t *testing.T, uid int, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(path, uid, uid); err != nil {
		t.Fatal(err)
	}
}

// unchanged fails the test when the host's file path no longer holds
// want: a write the sandbox should have refused went through.
func unchanged(t *testing.T, path, want string) {
	t.Helper()
	if got, err := os.ReadFile(path); err != nil || string(got) != want {
		t.Errorf("HOST CHANGED: %s holds %q (%v), want %q", path, got, err, want)
	}
}

// users are the two ways ronly is run: by root (an identity-mapped user
// namespace) and by an unprivileged user (--rootless, only its own id
// mapped).
var users = []struct {
	name  string
	uid   int
	flags []string
}{
	{"root", 0, nil},
	{"rootless", nobody, []string{"--rootless"}},
}
