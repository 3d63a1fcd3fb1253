package shims

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// envEcho names a copy of the test binary that plays the real tool: run
// as that path, it prints its argv as JSON and exits.
const envEcho = "SHIMS_TEST_ECHO"

// TestMain lets the test binary play its parts: a shim when it is run
// through a link named like a tool (as ronly's main does), and a fake
// real tool when it is the copy envEcho names.
func TestMain(m *testing.M) {
	if exe, err := os.Executable(); err == nil && exe == os.Getenv(envEcho) {
		json.NewEncoder(os.Stdout).Encode(os.Args)
		os.Exit(0)
	}
	if code, ok := Run(os.Args, os.Stderr); ok {
		os.Exit(code)
	}
	os.Exit(m.Run())
}

// shimDir makes a directory with links named tools to the test binary.
func shimDir(t *testing.T, tools ...string) string {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, tool := range tools {
		if err := os.Symlink(self, filepath.Join(dir, tool)); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// fakeTool puts a copy of the test binary at dir/tool: a real tool that
// prints its argv.
func fakeTool(t *testing.T, dir, tool string) string {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	in, err := os.Open(self)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	p := filepath.Join(dir, tool)
	out, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	return p
}

type shimRun struct {
	code           int
	stdout, stderr string
	reports        []string
}

// runShim runs dir/tool args as a shell would (argv[0] the bare name),
// with PATH path, the report pipe on descriptor 3, and extra environment.
func runShimCmd(t *testing.T, dir, path string, env []string, tool string, args ...string) shimRun {
	t.Helper()
	cmd := exec.Command(filepath.Join(dir, tool), args...)
	cmd.Args[0] = tool
	cmd.Env = append([]string{"PATH=" + path, EnvReportFD + "=3", "HOME=" + t.TempDir()}, env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	cmd.ExtraFiles = []*os.File{pw}
	err = cmd.Run()
	pw.Close()
	rep, _ := io.ReadAll(pr)
	res := shimRun{stdout: stdout.String(), stderr: stderr.String()}
	if s := strings.TrimSuffix(string(rep), "\n"); s != "" {
		res.reports = strings.Split(s, "\n")
	}
	if ee, ok := err.(*exec.ExitError); ok {
		res.code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return res
}

func TestExecRealTool(t *testing.T) {
	shims, shims2, real, dot := shimDir(t, "docker"), t.TempDir(), t.TempDir(), t.TempDir()
	// A second way to the shim: a link to the link.
	if err := os.Symlink(filepath.Join(shims, "docker"), filepath.Join(shims2, "docker")); err != nil {
		t.Fatal(err)
	}
	fake := fakeTool(t, real, "docker")
	fakeTool(t, dot, "docker") // a relative PATH entry is passed over
	t.Chdir(dot)
	path := strings.Join([]string{shims, shims2, ".", "", "nonexistent", real, "/usr/bin"}, ":")
	args := []string{"--context", "x", "ps", "-a", "", "--", "run"}
	res := runShimCmd(t, shims, path, []string{envEcho + "=" + fake}, "docker", args...)
	if res.code != 0 || res.stderr != "" || len(res.reports) != 0 {
		t.Fatalf("%+v", res)
	}
	var argv []string
	if err := json.Unmarshal([]byte(res.stdout), &argv); err != nil {
		t.Fatalf("%q: %v", res.stdout, err)
	}
	if want := append([]string{"docker"}, args...); !reflect.DeepEqual(argv, want) {
		t.Errorf("real docker got %q, want %q", argv, want)
	}
}

func TestExecNotFound(t *testing.T) {
	shims := shimDir(t, "docker")
	res := runShimCmd(t, shims, shims+":/nonexistent", nil, "docker", "ps")
	if res.code != 127 || res.stderr != "ronly: docker: not found on PATH\n" || len(res.reports) != 0 {
		t.Errorf("%+v", res)
	}
	// Not even the shim itself on PATH.
	res = runShimCmd(t, shims, "/nonexistent", nil, "docker", "ps")
	if res.code != 127 {
		t.Errorf("%+v", res)
	}
}

func TestBlocked(t *testing.T) {
	shims, real := shimDir(t, "docker", "kubectl"), t.TempDir()
	fake := fakeTool(t, real, "docker")
	path := shims + ":" + real
	for _, c := range []struct {
		tool   string
		args   []string
		stderr string
		report string
	}{
		{"docker", []string{"run", "-it", "alpine"}, "ronly: docker run is blocked (read-only session)\n",
			`{"kind":"command","tool":"docker","subcommand":"run"}`},
		{"docker", []string{"--weird", "ps"}, "ronly: docker --weird is blocked (read-only session)\n",
			`{"kind":"command","tool":"docker","subcommand":"other"}`},
		{"docker", []string{"-H", "unix:///x", "container", "rm", "c"}, "ronly: docker container rm is blocked (read-only session)\n",
			`{"kind":"command","tool":"docker","subcommand":"container rm"}`},
		{"docker", []string{"frob\x1b[2J"}, "ronly: docker \"frob\\x1b[2J\" is blocked (read-only session)\n",
			`{"kind":"command","tool":"docker","subcommand":"other"}`},
		{"kubectl", []string{"-n", "prod", "delete", "pod", "x"}, "ronly: kubectl delete is blocked (read-only session)\n",
			`{"kind":"command","tool":"kubectl","subcommand":"delete"}`},
	} {
		res := runShimCmd(t, shims, path, []string{envEcho + "=" + fake}, c.tool, c.args...)
		if res.code != 1 || res.stdout != "" || res.stderr != c.stderr || !reflect.DeepEqual(res.reports, []string{c.report}) {
			t.Errorf("%s %q: %+v", c.tool, c.args, res)
		}
	}
}

func TestReportFD(t *testing.T) {
	shims := shimDir(t, "docker")
	// Without RONLY_REPORT_FD, or with one of stdio, nothing is written
	// but the message.
	for _, env := range []string{EnvReportFD + "=", EnvReportFD + "=1", EnvReportFD + "=2", EnvReportFD + "=x", EnvReportFD + "=99"} {
		res := runShimCmd(t, shims, shims, []string{env}, "docker", "rm", "x")
		if res.code != 1 || res.stdout != "" || res.stderr != "ronly: docker rm is blocked (read-only session)\n" || len(res.reports) != 0 {
			t.Errorf("%s: %+v", env, res)
		}
	}
}

func TestExtraRulesEnv(t *testing.T) {
	shims, real, extra := shimDir(t, "systemctl", "docker"), t.TempDir(), t.TempDir()
	fake := fakeTool(t, real, "systemctl")
	write(t, filepath.Join(extra, "systemctl.rules"), systemctlRules)
	env := []string{envEcho + "=" + fake, EnvExtraRules + "=relative:" + extra}
	res := runShimCmd(t, shims, shims+":"+real, env, "systemctl", "--user", "status", "x")
	if res.code != 0 || !strings.Contains(res.stdout, `["systemctl","--user","status","x"]`) {
		t.Errorf("%+v", res)
	}
	res = runShimCmd(t, shims, shims+":"+real, env, "systemctl", "restart", "x")
	if res.code != 1 || res.stderr != "ronly: systemctl restart is blocked (read-only session)\n" ||
		!reflect.DeepEqual(res.reports, []string{`{"kind":"command","tool":"systemctl","subcommand":"restart"}`}) {
		t.Errorf("%+v", res)
	}
	// Without the rules, the name is no shim: the test binary runs as
	// itself (and says so in its usage error).
	res = runShimCmd(t, shims, shims+":"+real, []string{envEcho + "=" + fake}, "systemctl", "-test.run=^$")
	if res.code != 0 || !strings.Contains(res.stdout, "ok") && !strings.Contains(res.stdout, "PASS") {
		t.Errorf("%+v", res)
	}
	// A broken rule file for the tool: the shim fails closed, naming file
	// and line.
	write(t, filepath.Join(extra, "docker.rules"), "tool docker\nallow ps\nallow-all\n")
	res = runShimCmd(t, shims, shims+":"+real, env, "docker", "ps")
	if want := "ronly: " + filepath.Join(extra, "docker.rules") + ":3: unknown directive"; res.code != 125 || !strings.HasPrefix(res.stderr, want) {
		t.Errorf("%+v, want %s", res, want)
	}
}
