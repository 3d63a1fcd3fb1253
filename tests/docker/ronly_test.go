package docker_e2e

import (
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

var ronlyFlag = flag.String("ronly", "", "prebuilt ronly binary (default: go build ./go/cmd/ronly)")

var (
	ronlyOnce sync.Once
	ronlyBin  string
	ronlyErr  error
)

func ronlyBinary(t *testing.T) string {
	t.Helper()
	ronlyOnce.Do(func() {
		if *ronlyFlag != "" {
			ronlyBin, ronlyErr = filepath.Abs(*ronlyFlag)
			return
		}
		ronlyBin = filepath.Join(tmp, "ronly")
		out, err := exec.Command("go", "build", "-o", ronlyBin, "ronly.dev/ronly/go/cmd/ronly").CombinedOutput()
		if err != nil {
			ronlyErr = &buildError{string(out)}
		}
	})
	if ronlyErr != nil {
		t.Fatal(ronlyErr)
	}
	return ronlyBin
}

type buildError struct{ out string }

func (e *buildError) Error() string { return "go build ronly: " + e.out }

// TestInsideRonly runs the docker CLI inside a ronly session whose host
// Docker socket is the test daemon's: reads work, and writes fail whichever
// way they are tried — the shim, the real CLI by absolute path, curl on
// the socket — and the container is still running afterwards.
func TestInsideRonly(t *testing.T) {
	needDocker(t)
	ronly := ronlyBinary(t)
	cli := clients[0]
	textfile := filepath.Join(tmp, "ronly.prom")
	script := `docker ps --format '{{.Names}}'
docker run --rm ` + image + ` /logger once; echo "run=$?"
` + cli + ` rm -f ronly-live >/dev/null 2>&1; echo "rm=$?"
curl -s --unix-socket ` + direct + ` -X POST http://docker/containers/ronly-live/kill; echo
`
	cmd := exec.Command(ronly, "--metrics-textfile", textfile, "--", "/bin/sh", "-c", script)
	cmd.Env = append(cliEnv(), "DOCKER_HOST=unix://"+direct, "PATH="+filepath.Dir(cli)+":/usr/bin:/bin")
	cmd.Dir = "/"
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("ronly: %v\n%s\nstderr:\n%s", err, out, stderr.String())
	}
	got := string(out)
	for _, want := range []string{
		"ronly-live\n", // docker ps through the guard
		"run=1\n",      // the shim
		"rm=1\n",       // the real CLI by absolute path: the guard
		`{"message":"ronly: POST /containers/{id}/kill is blocked (read-only session)"}`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
	if running := strings.TrimSpace(docker(t, cli, direct, "inspect", "-f", "{{.State.Running}}", "ronly-live")); running != "true" {
		t.Errorf("HOST CHANGED: ronly-live running=%s", running)
	}
	prom, err := os.ReadFile(textfile)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`ronly_blocked_commands_total{subcommand="run",tool="docker"} 1`,
		`ronly_blocked_api_calls_total{api="docker",resource="/containers/{id}/kill",verb="POST"} 1`,
		`ronly_blocked_api_calls_total{api="docker",resource="/containers/{id}",verb="DELETE"} 1`,
	} {
		if !strings.Contains(string(prom), want+"\n") {
			t.Errorf("textfile lacks %q:\n%s", want, prom)
		}
	}
}
