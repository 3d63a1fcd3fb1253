package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"ronly.dev/ronly/go/policy"
	"ronly.dev/ronly/go/report"
	"ronly.dev/ronly/go/sandbox"
)

// A --report or --audit-log that cannot be written is the flag's error
// before anything starts, and nothing is created.
func TestOpenOutputsErrors(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing", "x")
	for _, tc := range []struct {
		c    CLI
		want string
	}{
		{CLI{Report: missing}, `--report "` + missing + `": its directory does not exist or cannot be opened: no such file or directory`},
		{CLI{Report: dir}, `--report "` + dir + `": is a directory`},
		{CLI{AuditLog: missing}, `--audit-log "` + missing + `": its directory cannot be opened: no such file or directory`},
	} {
		tc.c.NoMetrics = true
		_, err := tc.c.OpenOutputs(&bytes.Buffer{})
		var fe *policy.FlagError
		if !errors.As(err, &fe) || err.Error() != tc.want {
			t.Errorf("got %v, want the flag's error %s", err, tc.want)
		}
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("%s: %d entries created", dir, len(ents))
	}
}

// The report and the audit log go where the flags say: "-" is stderr, a
// path the file through its directory, opened before the session.
func TestOutputs(t *testing.T) {
	dir := t.TempDir()
	var stderr bytes.Buffer
	c := CLI{Report: filepath.Join(dir, "r.json"), AuditLog: "-", NoMetrics: true}
	o, err := c.OpenOutputs(&stderr)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	refused := o.Refused("s1")
	if refused == nil {
		t.Fatal("no Refused callback with --audit-log")
	}
	refused(sandbox.Refusal{Time: time.Unix(1, 0), PID: 7, Comm: "rm", Kind: "write", What: "unlinkat", Path: "/etc/x", Errno: syscall.EROFS})
	if dropped, err := o.EndAudit(); dropped != 0 || err != nil {
		t.Errorf("EndAudit: %d, %v", dropped, err)
	}
	var line map[string]any
	if err := json.Unmarshal(stderr.Bytes(), &line); err != nil || line["session"] != "s1" || line["path"] != "/etc/x" {
		t.Errorf("audit line %q: %v", stderr.String(), err)
	}
	if err := o.DeliverMetrics("s1", time.Now(), sandbox.Result{}, false, 0); err != nil {
		t.Errorf("--no-metrics delivered: %v", err)
	}

	p := &policy.Policy{Profile: "ci", Limits: policy.Limits{Timeout: time.Minute}}
	res := sandbox.Result{ExitCode: 137, Signal: syscall.SIGKILL, LimitHit: "timeout"}
	if err := o.WriteReport(SessionReport("s1", p, time.Unix(2, 0), res, nil)); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(c.Report)
	if err != nil {
		t.Fatal(err)
	}
	var r report.Report
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	if r.Session != "s1" || r.Exit.Code != 137 || r.Exit.Signal != "SIGKILL" || r.LimitHit != "timeout" ||
		r.Limits.TimeoutSeconds != 60 || r.Command == nil || r.Refused == nil || r.Error != "" {
		t.Errorf("report: %s", b)
	}
	failed := SessionReport("s1", p, time.Unix(2, 0), res, errors.New("sandbox: no"))
	if failed.Error != "sandbox: no" || failed.Exit.Signal != "" {
		t.Errorf("failed session's report: %+v", failed)
	}

	// --report -: the document on stderr.
	stderr.Reset()
	o2, err := (&CLI{Report: "-", NoMetrics: true}).OpenOutputs(&stderr)
	if err != nil {
		t.Fatal(err)
	}
	defer o2.Close()
	if o2.Refused("s2") != nil {
		t.Error("a Refused callback without --audit-log")
	}
	if err := o2.WriteReport(SessionReport("s2", p, time.Unix(2, 0), res, nil)); err != nil || !strings.Contains(stderr.String(), `"session": "s2"`) {
		t.Errorf("--report -: %q, %v", stderr.String(), err)
	}
}
