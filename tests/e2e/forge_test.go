package e2e

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// forgeScript writes to the shims' report pipe as anything inside can: one
// real refusal by the docker shim first, then forged lines claiming the
// kinds only the kernel and the supervisor count, then 200 junk
// subcommands and lines for tools that are not the session's shims.
const forgeScript = `F=/proc/self/fd/$RONLY_REPORT_FD
docker run x 2>/dev/null
for k in syscall api write; do
  printf '{"kind":"%s","tool":"docker","subcommand":"forged%s","what":"forged%s"}\n' $k $k $k > $F
done
printf '{"kind":"syscall","what":"mount"}\n{"kind":"api","what":"POST /forged"}\n' > $F
i=0; while [ $i -lt 200 ]; do
  printf '{"kind":"command","tool":"docker","subcommand":"junk-%d"}\n' $i
  printf '{"kind":"command","tool":"junk%d","subcommand":"run"}\n' $i
  i=$((i+1))
done > $F
echo wrote`

// maxCommandLabels mirrors go/sandbox.MaxCommandLabels.
const maxCommandLabels = 16

// TestForgedReports: what a session writes to the report pipe can only add
// to its own counts of refused commands. From outside, the --report and
// the --metrics-textfile show no forged syscall, api or write counts, no
// tool that is not a shim, at most maxCommandLabels command labels plus
// "other" per shim, and the real refusal under its own label.
func TestForgedReports(t *testing.T) {
	b := setup(t)
	dir := userDir(t, 0, "ronly-e2e-forge-")
	rep, textfile := filepath.Join(dir, "report.json"), filepath.Join(dir, "ronly.prom")
	r := b.sh(t, opts{}, []string{"--report", rep, "--metrics-textfile", textfile}, forgeScript)
	if r.code != 0 || !strings.Contains(r.stdout, "wrote") {
		t.Fatalf("the script must run:\n%s", r)
	}
	got := readReport(t, rep)
	for _, kind := range []string{"syscall", "api", "write"} {
		for what := range got.Refused[kind] {
			if strings.Contains(what, "forged") || (kind == "syscall" && what == "mount") {
				t.Errorf("forged %s count in the report: %q", kind, what)
			}
		}
	}
	cmds := got.Refused["command"]
	var total uint64
	for label, n := range cmds {
		total += n
		if tool, _, _ := strings.Cut(label, " "); tool != "docker" && tool != "kubectl" {
			t.Errorf("a tool that is not one of the session's shims was counted: %q", label)
		}
	}
	if cmds["docker run"] != 1 {
		t.Errorf("the real refusal lost its label: %v", cmds)
	}
	if len(cmds) > maxCommandLabels+2 || total != 201 {
		t.Errorf("%d command labels (want at most %d) counting %d refusals (want 201): %v", len(cmds), maxCommandLabels+2, total, cmds)
	}

	f, err := os.Open(textfile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	series, malformed := 0, ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		if v, ok := strings.CutPrefix(line, "ronly_shim_reports_malformed_total "); ok {
			malformed = v
		}
		if strings.Contains(line, "forged") || strings.Contains(line, `syscall="mount"`) || strings.Contains(line, `tool="junk`) {
			t.Errorf("forged series in the textfile: %s", line)
		}
		if strings.HasPrefix(line, "ronly_blocked_commands_total{") {
			series++
		}
	}
	if series == 0 || series > maxCommandLabels+2 {
		t.Errorf("%d command series in the textfile, want 1 to %d", series, maxCommandLabels+2)
	}
	// Five lines of other kinds and 200 of tools that are not shims.
	if malformed != "205" {
		t.Errorf("ronly_shim_reports_malformed_total = %q, want 205", malformed)
	}
}

// floodBound is the supervisor's peak resident set the flood must stay
// under: it idles at about 20 MiB, reads the pipe through one 1 KiB buffer
// and keeps at most maxCommandLabels labels per session (the code before
// these bounds reached 96 MiB on this very flood, and grew with it).
const floodBound = 48 << 20

// TestReportPipeFlood: a session under --memory 64M floods the report pipe
// with a 300 MB line, 300,000 distinct subcommands and a million forged
// syscall lines. The supervisor's peak RSS, read from outside while it
// runs (VmHWM), stays under floodBound, and its counts stay bounded.
func TestReportPipeFlood(t *testing.T) {
	b := setup(t)
	needTool(t, "awk")
	dir := userDir(t, 0, "ronly-e2e-flood-")
	rep := filepath.Join(dir, "report.json")
	script := `F=/proc/self/fd/$RONLY_REPORT_FD
head -c 300000000 /dev/zero > $F
awk 'BEGIN { for (i = 0; i < 300000; i++) printf "{\"kind\":\"command\",\"tool\":\"docker\",\"subcommand\":\"j%d\"}\n", i }' > $F
yes '{"kind":"syscall","what":"mount"}' | head -n 1000000 > $F
echo flooded`
	cmd := exec.Command(b.ronly, "--memory", "64M", "--report", rep, "--", "/bin/sh", "-c", script)
	cmd.Dir = "/"
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var peak uint64
	deadline := time.After(hangGuard)
poll:
	for {
		if kb := vmHWM(cmd.Process.Pid); kb > peak {
			peak = kb
		}
		select {
		case err := <-done:
			if err != nil || !strings.Contains(out.String(), "flooded") {
				t.Fatalf("the flood must run to its end: %v\n%s", err, out.String())
			}
			break poll
		case <-deadline:
			cmd.Process.Kill()
			t.Fatalf("the flooded session did not end within %v", hangGuard)
		case <-time.After(20 * time.Millisecond):
		}
	}
	if peak == 0 {
		t.Fatal("never read the supervisor's VmHWM")
	}
	t.Logf("supervisor peak RSS %d KiB", peak)
	if peak*1024 > floodBound {
		t.Errorf("supervisor peak RSS %d KiB, more than the bound %d KiB", peak, floodBound/1024)
	}
	got := readReport(t, rep)
	if n := len(got.Refused["command"]); n > maxCommandLabels+1 || got.Refused["command"]["docker other"] == 0 {
		t.Errorf("%d command labels after the flood: %v", n, got.Refused["command"])
	}
	if len(got.Refused["syscall"]) != 0 {
		t.Errorf("forged syscall counts: %v", got.Refused["syscall"])
	}
}

// vmHWM is the peak resident set of pid in KiB; 0 when it cannot be read.
func vmHWM(pid int) uint64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			n, _ := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return n
		}
	}
	return 0
}
