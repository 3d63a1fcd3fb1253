package cgroup

import (
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// A session's cgroup is stale exactly when its supervisor is gone: dead,
// a zombie, or its pid now someone else's.
func TestStale(t *testing.T) {
	if stale(Name("s1", os.Getpid())) {
		t.Errorf("a live supervisor's cgroup is taken for stale")
	}

	child := exec.Command("sleep", "60")
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	name := Name("s2", child.Process.Pid)
	if stale(name) {
		t.Errorf("a running child's cgroup is taken for stale")
	}
	child.Process.Kill()
	// Unreaped, the child is a zombie: its session is over.
	for i := 0; i < 200; i++ {
		if state, _ := procStat(child.Process.Pid); state == 'Z' {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if !stale(name) {
		t.Errorf("a zombie supervisor's cgroup is not taken for stale")
	}
	child.Wait()
	if !stale(name) {
		t.Errorf("a dead supervisor's cgroup is not taken for stale")
	}

	// The same pid with another start time is another process.
	live := Name("s3", os.Getpid())
	reused := live[:strings.LastIndexByte(live, '-')] + "-1"
	if !stale(reused) {
		t.Errorf("a reused pid is taken for the supervisor")
	}
	for _, odd := range []string{"plain", "s-x-1", "s--1"} {
		if stale(odd) {
			t.Errorf("%q: a name ronly did not make is taken for stale", odd)
		}
	}
}
