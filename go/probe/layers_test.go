package probe

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestProbeOutcomeOf(t *testing.T) {
	for _, tc := range []struct {
		r    Result
		want Outcome
	}{
		{Result{}, Missing},
		{Result{Name: "a", Kind: Hostile, Skipped: "absent"}, Skipped},
		{Result{Name: "a", Kind: Hostile}, Through},
		{Result{Name: "a", Kind: Hostile, Detail: "reached x"}, Through},
		{Result{Name: "a", Kind: Hostile, Errno: "ESRCH", Error: "x", Want: []string{"EPERM", "ESRCH"}}, Refused},
		// A wall's errno counts in a partial sandbox, whatever Want says.
		{Result{Name: "a", Kind: Hostile, Errno: "EROFS", Error: "x", Want: []string{"EPERM"}}, Refused},
		{Result{Name: "a", Kind: Hostile, Errno: "EACCES", Error: "x", Want: []string{"EPERM"}}, Refused},
		{Result{Name: "a", Kind: Hostile, Errno: "EINVAL", Error: "x", Want: []string{"EPERM"}}, OtherErrno},
		{Result{Name: "a", Kind: Hostile, Errno: "ENOSYS", Error: "x", Want: []string{"EPERM"}}, OtherErrno},
		{Result{Name: "a", Kind: Hostile, Error: "odd"}, Error},
		{Result{Name: "a", Kind: Everyday, Pass: true}, OK},
		{Result{Name: "a", Kind: Everyday, Errno: "EROFS", Error: "x"}, Failed},
		{Result{Name: "a", Kind: Everyday, Error: "odd"}, Failed},
	} {
		if got := OutcomeOf(tc.r); got != tc.want {
			t.Errorf("OutcomeOf(%+v) = %s, want %s", tc.r, got, tc.want)
		}
	}
}

func TestProbeAttribute(t *testing.T) {
	layers := []string{"mount+caps", "userns", "landlock", "seccomp"}
	R, T, E, S, F, K, X := Refused, Through, OtherErrno, Skipped, Failed, OK, Error
	for _, tc := range []struct {
		kind     Kind
		outcomes []Outcome
		want     string
	}{
		{Hostile, []Outcome{R, R, R, R}, "mount+caps"},
		{Hostile, []Outcome{T, R, R, R}, "userns"},
		{Hostile, []Outcome{T, T, R, R}, "landlock"},
		{Hostile, []Outcome{T, T, T, R}, "seccomp"},
		{Hostile, []Outcome{E, E, E, R}, "seccomp"},
		// Refused early, let through later, refused again: the layer from
		// which on it stays refused.
		{Hostile, []Outcome{R, T, R, R}, "landlock"},
		{Hostile, []Outcome{S, R, R, R}, "userns"},
		{Hostile, []Outcome{R, R, R, T}, BlockedByNone},
		{Hostile, []Outcome{R, R, R, E}, BlockedByNone},
		{Hostile, []Outcome{R, R, R, S}, BlockedByNA},
		{Hostile, []Outcome{R, R, R, X}, BlockedByUnknown},
		{Everyday, []Outcome{K, K, K, K}, ""},
		{Everyday, []Outcome{S, S, S, S}, BlockedByNA},
		{Everyday, []Outcome{K, K, F, F}, "landlock"},
		{Everyday, []Outcome{F, F, F, F}, "mount+caps"},
		{Hostile, []Outcome{R, R}, BlockedByUnknown}, // not one per layer
	} {
		if got := Attribute(tc.kind, tc.outcomes, layers); got != tc.want {
			t.Errorf("Attribute(%s, %v) = %q, want %q", tc.kind, tc.outcomes, got, tc.want)
		}
	}
}

func TestProbeNewOperationAndSummary(t *testing.T) {
	layers := []string{"mount+caps", "landlock", "seccomp"}
	op := Op{Name: "clock", Kind: Hostile, Want: wantPerm}
	rs := []Result{
		{Name: "clock", Kind: Hostile, Errno: "EINVAL", Error: "invalid argument", Want: []string{"EPERM"}},
		{Name: "clock", Kind: Hostile, Errno: "EINVAL", Error: "invalid argument", Want: []string{"EPERM"}},
		{Name: "clock", Kind: Hostile, Errno: "EPERM", Error: "operation not permitted", Want: []string{"EPERM"}, Pass: true},
	}
	o := NewOperation(op, rs, layers)
	if o.BlockedBy != "seccomp" || o.Result != Refused || o.Errno != "EPERM" || strings.Join(o.ArgumentRejectedIn, ",") != "mount+caps,landlock" {
		t.Errorf("operation: %+v", o)
	}
	if o.ResultsByConfig["mount+caps"].Outcome != OtherErrno || len(o.ResultsByConfig) != 3 {
		t.Errorf("results by config: %+v", o.ResultsByConfig)
	}
	none := NewOperation(Op{Name: "n", Kind: Hostile, Want: wantPerm}, []Result{{Name: "n", Kind: Hostile}, {Name: "n", Kind: Hostile}, {Name: "n", Kind: Hostile}}, layers)
	day := NewOperation(Op{Name: "d", Kind: Everyday}, []Result{{Name: "d", Kind: Everyday, Pass: true}, {Name: "d", Kind: Everyday, Pass: true}, {Name: "d", Kind: Everyday, Pass: true}}, layers)
	s := Summarize([]Operation{o, none, day}, false)
	if s.Hostile != 2 || s.HostileRefused != 1 || s.BlockedByLayer["seccomp"] != 1 || s.BlockedByLayer[BlockedByNone] != 1 || s.EverydayOK != 1 || s.Good() {
		t.Errorf("summary: %+v", s)
	}
	if s := Summarize([]Operation{o, day}, false); !s.Good() {
		t.Errorf("a clean summary is not good: %+v", s)
	}
	if s := Summarize([]Operation{o, day}, true); s.Good() {
		t.Errorf("a changed host is good: %+v", s)
	}
	// A call the kernel does not have (fchmodat2 on 6.1): ENOSYS in every
	// configuration, the bare one included, is not applicable.
	enosys := Result{Name: "c", Kind: Hostile, Errno: "ENOSYS", Error: "function not implemented", Want: []string{"EROFS"}}
	absent := NewOperation(Op{Name: "c", Kind: Hostile, Want: wantPerm}, []Result{enosys, enosys, enosys}, layers)
	if absent.BlockedBy != BlockedByNA || absent.Result != Skipped || len(absent.ArgumentRejectedIn) != 0 ||
		absent.ResultsByConfig["seccomp"].Skipped != NoSuchCall {
		t.Errorf("a call the kernel lacks: %+v", absent)
	}
	if s := Summarize([]Operation{o, absent, day}, false); !s.Good() || s.BlockedByLayer[BlockedByNA] != 1 {
		t.Errorf("a call the kernel lacks spoils the summary: %+v", s)
	}
	// ENOSYS from the seccomp layer only (clone3): refused, by seccomp.
	bare := Result{Name: "c", Kind: Hostile, Errno: "EINVAL", Error: "invalid argument", Want: []string{"ENOSYS"}}
	filtered := Result{Name: "c", Kind: Hostile, Errno: "ENOSYS", Error: "function not implemented", Want: []string{"ENOSYS"}}
	if c3 := NewOperation(Op{Name: "c", Kind: Hostile}, []Result{bare, bare, filtered}, layers); c3.BlockedBy != "seccomp" || c3.Result != Refused {
		t.Errorf("ENOSYS from seccomp only: %+v", c3)
	}
	// ENOSYS from seccomp and a wall's errno before it: not the kernel's.
	late := NewOperation(Op{Name: "c", Kind: Hostile}, []Result{bare, bare, enosys}, layers)
	if late.BlockedBy != BlockedByNone {
		t.Errorf("ENOSYS in the full sandbox only, not wanted: %+v", late)
	}
	b, err := json.Marshal(Report{Version: ReportVersion, Operations: []Operation{o}})
	if err != nil || !strings.Contains(string(b), `"blocked_by":"seccomp"`) || !strings.Contains(string(b), `"version":1`) {
		t.Errorf("JSON: %s %v", b, err)
	}
}
