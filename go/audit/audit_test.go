package audit

import (
	"bytes"
	"encoding/json"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func TestLinesAreJSON(t *testing.T) {
	var b bytes.Buffer
	l := New(&b)
	var wg sync.WaitGroup
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			l.Write(Entry{Time: time.Unix(0, 0).UTC(), Session: "s1", PID: i, Kind: "syscall", What: "mount", Errno: ErrnoName(syscall.EPERM)})
		}(i)
	}
	wg.Wait()
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 50 {
		t.Fatalf("%d lines, want 50", len(lines))
	}
	for _, line := range lines {
		var e Entry
		if err := json.Unmarshal([]byte(line), &e); err != nil || e.What != "mount" || e.Errno != "EPERM" || e.Session != "s1" {
			t.Fatalf("bad line %q: %v", line, err)
		}
	}
}

func TestPathOnlyWhenKnown(t *testing.T) {
	var b bytes.Buffer
	l := New(&b)
	l.Write(Entry{Time: time.Unix(0, 0).UTC(), Session: "s1", Kind: "write", What: "unlink", Path: "/etc/hosts", Errno: ErrnoName(syscall.EROFS)})
	l.Write(Entry{Time: time.Unix(0, 0).UTC(), Session: "s1", Kind: "write", What: "chmod", Errno: ErrnoName(syscall.EROFS)})
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d lines, want 2", len(lines))
	}
	if !strings.Contains(lines[0], `"path":"/etc/hosts"`) {
		t.Errorf("line %q lacks the path", lines[0])
	}
	if strings.Contains(lines[1], `"path"`) {
		t.Errorf("line %q has a path, want none", lines[1])
	}
}
