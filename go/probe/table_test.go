package probe

import (
	"strings"
	"testing"
)

var tableLayers = []string{"mount+caps", "userns", "landlock", "seccomp"}

// tableOp is an operation with one result per layer: an errno name, "ok",
// "-" (went through), "skip", "err" (an error without an errno) or "det"
// (went through, with a detail).
func tableOp(name string, kind Kind, outcomes ...string) Operation {
	var rs []Result
	for _, e := range outcomes {
		r := Result{Name: name, Kind: kind, Want: []string{"EPERM"}}
		switch e {
		case "ok":
			r.Pass = true
		case "-":
		case "skip":
			r.Skipped = "not here"
		case "err":
			r.Error = "it broke\nsecond line"
		case "det":
			r.Detail = "went through: it wrote the canary"
		default:
			r.Errno, r.Error = e, strings.ToLower(e)
		}
		rs = append(rs, r)
	}
	return NewOperation(Op{Name: name, Kind: kind}, rs, tableLayers)
}

func tableReport(ops []Operation, changes map[int][]string, notes ...string) *Report {
	rep := &Report{Version: ReportVersion, Kernel: "6.x", LandlockABI: 7, Operations: ops, Notes: notes}
	for i, l := range tableLayers {
		rep.Configurations = append(rep.Configurations, Configuration{Name: l, Runs: i + 1, Description: "what " + l + " has ", HostChanges: changes[i]})
	}
	rep.Summary = Summarize(ops, len(changes[len(tableLayers)-1]) > 0)
	rep.OK = rep.Summary.Good()
	return rep
}

// A clean report, whole: the layout people read and scripts grep.
func TestTableLinesClean(t *testing.T) {
	rep := tableReport([]Operation{
		tableOp("write", Hostile, "EROFS", "EROFS", "EROFS", "EROFS"),
		tableOp("read", Everyday, "ok", "ok", "ok", "ok"),
		tableOp("kill", Hostile, "-", "-", "EPERM", "EPERM"),
	}, nil)
	want := `ronly probe: Linux 6.x, Landlock ABI 7, uid 0

The battery ran in 4 cumulative sandboxes; each operation is blocked by the layer from which on it is refused.
BY CONFIG has its result in each: R refused, - went through, e the kernel rejected its deliberately invalid
argument before any layer refused it, + ok, F failed, s skipped (or the kernel lacks the call: n/a).
  1 mount+caps         what mount+caps has
  2 userns             what userns has
  3 landlock           what landlock has
  4 seccomp            what seccomp has

OPERATION  KIND      RESULT   ERRNO  BLOCKED BY  BY CONFIG 1234
write      hostile   refused  EROFS  mount+caps  RRRR
== mount+caps: 1 hostile operation(s) refused
kill       hostile   refused  EPERM  landlock    --RR
== landlock: 1 hostile operation(s) refused
read       everyday  ok       -      -           ++++
== everyday: 1 ok, 0 failed, 0 skipped

Host seen from outside after each configuration (changes are expected only where a layer is missing):
  mount+caps: canaries unchanged (1 session(s))
  userns: canaries unchanged (2 session(s))
  landlock: canaries unchanged (3 session(s))
  seccomp: canaries unchanged (4 session(s))

Summary: 2 hostile operations, blocked by: mount+caps 1, landlock 1, NONE 0; 1 everyday: 1 ok, 0 failed, 0 skipped.
OK: the full sandbox refused every hostile operation, every everyday one worked, and the host did not change.`
	if got := strings.Join(TableLines(rep), "\n"); got != want {
		t.Errorf("table:\n%s\nwant:\n%s", got, want)
	}
}

// A report with a finding in every section: grouped and sorted rows,
// breaches, findings, broken everyday operations, no OK.
func TestTableLinesFindings(t *testing.T) {
	rep := tableReport([]Operation{
		tableOp("write", Hostile, "EROFS", "EROFS", "EROFS", "EROFS"),
		tableOp("leak", Hostile, "-", "-", "-", "-"),
		tableOp("kill", Hostile, "-", "-", "EPERM", "EPERM"),
		tableOp("clock", Hostile, "EINVAL", "EINVAL", "EINVAL", "EPERM"),
		tableOp("nosys", Hostile, "ENOSYS", "ENOSYS", "ENOSYS", "ENOSYS"),
		tableOp("weird", Hostile, "-", "-", "err", "err"),
		tableOp("leak-detail", Hostile, "-", "-", "-", "det"),
		tableOp("read", Everyday, "ok", "ok", "ok", "ok"),
		tableOp("a-long-everyday-name", Everyday, "ok", "ok", "ok", "EACCES"),
		tableOp("absent", Everyday, "skip", "skip", "skip", "skip"),
	}, map[int][]string{0: {"file changed\nits second line", "pid gone"}, 3: {"shm file made"}}, "note one")
	lines := TableLines(rep)
	out := strings.Join(lines, "\n")
	for _, want := range []string{
		"  note: note one\n",
		"\n== mount+caps: 1 hostile operation(s) refused\n",
		"\n== landlock: 1 hostile operation(s) refused\n",
		"\n== seccomp: 1 hostile operation(s) refused\n",
		"\n== NONE: 2 hostile operation(s) NOT REFUSED by any layer\n",
		"\n== unknown: 1 hostile operation(s) failed without an errno\n",
		"\n== n/a: 1 hostile operation(s) not applicable here\n",
		"\n== everyday: 1 ok, 1 failed, 1 skipped\n",
		"  mount+caps: 2 change(s) (1 session(s)):\n    file changed\n    its second line\n    pid gone\n",
		"  userns: canaries unchanged (2 session(s))\n",
		"  seccomp: SANDBOX BREACH: 1 change(s) (4 session(s)):\n    shm file made\n",
		"Summary: 7 hostile operations, blocked by: mount+caps 1, landlock 1, seccomp 1, NONE 2, unknown 1, n/a 1; 3 everyday: 1 ok, 1 failed, 1 skipped.\n",
		"\n1 of them (e in BY CONFIG)",
		"\n\nFINDING: 2 hostile operation(s) went through the full sandbox (blocked by NONE):\n  leak (it went through)\n  leak-detail (went through: it wrote the canary)\n",
		"\n\nUNKNOWN: 1 hostile operation(s) failed in the full sandbox without an errno:\n  weird (it broke\nsecond line)\n",
		"\n\nBROKEN: 1 everyday operation(s) failed in the full sandbox:\n  a-long-everyday-name (broken by seccomp: eacces)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the table has no %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "\nOK:") {
		t.Errorf("a table with a finding says OK:\n%s", out)
	}
	// Rows sorted by the layer that blocks them, in the configurations'
	// order, then NONE, unknown, n/a; everyday ones last, in battery order.
	var rows []string
	for _, l := range lines {
		if f := strings.Fields(l); len(f) == 6 && (f[1] == "hostile" || f[1] == "everyday") {
			rows = append(rows, f[0]+" "+f[4]+" "+f[5])
		}
	}
	want := []string{"write mount+caps RRRR", "kill landlock --RR", "clock seccomp eeeR", "leak NONE ----", "leak-detail NONE ----",
		"weird unknown --??", "nosys n/a ssss", "read - ++++", "a-long-everyday-name seccomp +++F", "absent n/a ssss"}
	if strings.Join(rows, "\n") != strings.Join(want, "\n") {
		t.Errorf("rows (name, blocked by, by config):\n%s\nwant:\n%s", strings.Join(rows, "\n"), strings.Join(want, "\n"))
	}
	// Every cell of a column starts where the header's does.
	var header string
	for _, l := range lines {
		if strings.HasPrefix(l, "OPERATION ") {
			header = l
		}
	}
	col := strings.Index(header, "BLOCKED BY")
	for _, l := range lines {
		if f := strings.Fields(l); len(f) == 6 && f[1] == "hostile" && !strings.HasPrefix(l[col:], f[4]+" ") {
			t.Errorf("row %q: BLOCKED BY not at column %d", l, col)
		}
	}
	for _, l := range lines {
		if strings.HasSuffix(l, " ") {
			t.Errorf("trailing space: %q", l)
		}
	}
}
