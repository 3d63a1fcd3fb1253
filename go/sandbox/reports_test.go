package sandbox

import (
	"fmt"
	"io"
	"strings"
	"testing"

	"ronly.dev/ronly/go/policy"
)

func readAll(t *testing.T, p *policy.Policy, in io.Reader) (map[string]map[string]uint64, uint64) {
	t.Helper()
	rr := newReportReader(p)
	got := map[string]map[string]uint64{}
	rr.read(in, func(r Refusal) {
		kind := string(r.Kind)
		if got[kind] == nil {
			got[kind] = map[string]uint64{}
		}
		got[kind][r.What]++
	})
	return got, rr.malformed.Load()
}

var shimPolicy = &policy.Policy{ShimTools: []string{"docker", "kubectl", "systemctl"}}

// Only a command refusal by one of the session's shims counts; the kinds
// the kernel and the supervisor count cannot be sent from inside.
func TestReportsKindAndTool(t *testing.T) {
	in := strings.Join([]string{
		`{"kind":"command","tool":"docker","subcommand":"run"}`,
		`{"kind":"command","tool":"docker","subcommand":"container rm"}`,
		`{"kind":"command","tool":"systemctl","subcommand":"restart"}`,
		`{"kind":"command","tool":"kubectl"}`,
		`{"kind":"syscall","tool":"docker","subcommand":"mount"}`,
		`{"kind":"syscall","what":"mount"}`,
		`{"kind":"api","tool":"docker","subcommand":"run"}`,
		`{"kind":"write","what":"unlink"}`,
		`{"kind":"command","tool":"rm","subcommand":"run"}`,
		`{"kind":"command","tool":"","subcommand":"run"}`,
		`not json`,
		`{"kind":"command","tool":"docker","subcommand":"RUN; drop"}`,
		`{"kind":"command","tool":"docker","subcommand":"` + strings.Repeat("a", 65) + `"}`,
		`{"kind":"command","tool":"docker","subcommand":"a b c"}`,
	}, "\n") + "\n"
	got, malformed := readAll(t, shimPolicy, strings.NewReader(in))
	want := map[string]uint64{"docker run": 1, "docker container rm": 1, "systemctl restart": 1, "kubectl other": 1, "docker other": 3}
	if len(got) != 1 || fmt.Sprint(got["command"]) != fmt.Sprint(want) {
		t.Errorf("counted %v, want only command: %v", got, want)
	}
	if malformed != 7 {
		t.Errorf("malformed = %d, want 7 (four other kinds, two unknown tools, one not JSON)", malformed)
	}
	// --no-shims: no tool is the session's, nothing counts.
	got, malformed = readAll(t, &policy.Policy{ShimTools: []string{"docker"}, NoShims: true},
		strings.NewReader(`{"kind":"command","tool":"docker","subcommand":"run"}`+"\n"))
	if len(got) != 0 || malformed != 1 {
		t.Errorf("--no-shims: counted %v, malformed %d", got, malformed)
	}
}

// 200 distinct subcommands: the first MaxCommandLabels keep their label,
// the rest fold into "TOOL other", and every refusal is still counted.
func TestReportsLabelBound(t *testing.T) {
	var b strings.Builder
	for i := 0; i < 200; i++ {
		fmt.Fprintf(&b, `{"kind":"command","tool":"docker","subcommand":"junk-%d"}`+"\n", i)
		fmt.Fprintf(&b, `{"kind":"command","tool":"kubectl","subcommand":"junk-%d"}`+"\n", i)
	}
	got, malformed := readAll(t, shimPolicy, strings.NewReader(b.String()))
	if malformed != 0 {
		t.Errorf("malformed = %d", malformed)
	}
	cmds := got["command"]
	if len(cmds) != MaxCommandLabels+2 {
		t.Errorf("%d labels, want %d (the bound and one other per tool): %v", len(cmds), MaxCommandLabels+2, cmds)
	}
	var total uint64
	for _, n := range cmds {
		total += n
	}
	if total != 400 || cmds["docker other"]+cmds["kubectl other"] != 400-MaxCommandLabels {
		t.Errorf("total %d, others %d+%d: every refusal must still count", total, cmds["docker other"], cmds["kubectl other"])
	}
}

// A line longer than MaxReportLine is dropped whole, up to its newline:
// its tail is never taken for a line of its own.
func TestReportsLongLines(t *testing.T) {
	tail := `{"kind":"command","tool":"docker","subcommand":"forged"}`
	long := strings.Repeat("x", 3*MaxReportLine) + tail + "\n"
	exact := `{"kind":"command","tool":"docker","subcommand":"run"}`
	exact = exact[:len(exact)-1] + strings.Repeat(" ", MaxReportLine-len(exact)-1) + "}\n" // MaxReportLine bytes
	in := long + exact + long + `{"kind":"command","tool":"docker","subcommand":"ps"}` + "\n" + strings.Repeat("y", 5000)
	got, malformed := readAll(t, shimPolicy, strings.NewReader(in))
	if fmt.Sprint(got["command"]) != fmt.Sprint(map[string]uint64{"docker run": 1, "docker ps": 1}) {
		t.Errorf("counted %v", got)
	}
	if malformed != 3 {
		t.Errorf("malformed = %d, want 3 (two long lines, one unterminated)", malformed)
	}
}

// The reader's memory does not grow with what is written: a stream of
// 64 MiB of junk, one line, allocates about the buffer only.
func TestReportsFloodMemory(t *testing.T) {
	r := io.LimitReader(repeatReader('z'), 64<<20)
	allocs := testing.AllocsPerRun(1, func() { readAll(t, shimPolicy, r) })
	if allocs > 100 {
		t.Errorf("%v allocations reading one 64 MiB line", allocs)
	}
}

type repeatReader byte

func (c repeatReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(c)
	}
	return len(p), nil
}
