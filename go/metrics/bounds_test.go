package metrics

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// A report with 200 junk subcommands and junk tools takes at most
// maxReportCommands command labels, its counts still add up, and a later
// session's real refusal keeps its own label.
func TestReportBounds(t *testing.T) {
	now := time.Now()
	junk := Report{Session: "junk", Start: now, End: now, BlockedCommands: map[string]uint64{},
		BlockedSyscalls: map[string]uint64{}}
	for i := 0; i < 200; i++ {
		junk.BlockedCommands[fmt.Sprintf("docker junk-%03d", i)] = 1
		junk.BlockedSyscalls[fmt.Sprintf("sys%03d", i)] = 2
	}
	junk.BlockedCommands["Docker\xff x"] = 5
	junk.BlockedCommands["docker RUN;rm"] = 7
	s := NewSet()
	s.Add(junk)
	for i := 0; i < 5; i++ { // more sessions like it
		junk.Session = fmt.Sprint("junk", i)
		s.Add(junk)
	}
	real := Report{Session: "real", Start: now, End: now, BlockedCommands: map[string]uint64{"kubectl delete": 1}}
	s.Add(real)

	cmds, syscalls := s.counters[blockedCommands], s.counters[blockedSyscalls]
	var total uint64
	for _, n := range cmds {
		total += n
	}
	if total != 6*(200+5+7)+1 {
		t.Errorf("command total %d: every refusal must still be counted", total)
	}
	if cmds["kubectl"+sep+"delete"] != 1 {
		t.Errorf("a later session's real refusal lost its label: %v", cmds)
	}
	if cmds["other"+sep+"other"] == 0 || cmds["docker"+sep+"other"] != 6*7 {
		t.Errorf("junk not folded into other: %v", cmds)
	}
	if len(syscalls) > maxReportSyscalls {
		t.Errorf("%d syscall labels from one kind of report, more than %d", len(syscalls), maxReportSyscalls)
	}
	if n := len(cmds); n > maxReportCommands+1 {
		t.Errorf("%d command labels, want at most %d", n, maxReportCommands+1)
	}
	for k := range cmds {
		if strings.Contains(k, ";") || strings.Contains(k, "\xff"+"x") {
			t.Errorf("junk label kept: %q", k)
		}
	}
}
