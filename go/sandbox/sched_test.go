package sandbox

import (
	"os"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"
)

func TestTargetsSelf(t *testing.T) {
	const tid, tgid = 1234, 1200
	for _, c := range []struct {
		name string
		nr   int
		args [6]uint64
		want bool
	}{
		{"setpriority own pid", unix.SYS_SETPRIORITY, [6]uint64{unix.PRIO_PROCESS, tgid, 5}, true},
		{"setpriority own tid", unix.SYS_SETPRIORITY, [6]uint64{unix.PRIO_PROCESS, tid, 5}, true},
		{"setpriority own pid, junk high bits", unix.SYS_SETPRIORITY, [6]uint64{1 << 32, 1<<40 | tgid, 5}, true},
		{"setpriority other pid", unix.SYS_SETPRIORITY, [6]uint64{unix.PRIO_PROCESS, 1, 5}, false},
		{"setpriority PRIO_PGRP 0", unix.SYS_SETPRIORITY, [6]uint64{unix.PRIO_PGRP, 0, 5}, false},
		{"setpriority PRIO_USER 0", unix.SYS_SETPRIORITY, [6]uint64{unix.PRIO_USER, 0, 5}, false},
		{"setpriority PRIO_PGRP own pid", unix.SYS_SETPRIORITY, [6]uint64{unix.PRIO_PGRP, tgid, 5}, false},
		{"ioprio_set own tid", unix.SYS_IOPRIO_SET, [6]uint64{1, tid, 0x6000}, true},
		{"ioprio_set IOPRIO_WHO_USER own pid", unix.SYS_IOPRIO_SET, [6]uint64{3, tgid, 0x6000}, false},
		{"sched_setaffinity own tid", unix.SYS_SCHED_SETAFFINITY, [6]uint64{tid, 8, 0x1000}, true},
		{"sched_setaffinity other", unix.SYS_SCHED_SETAFFINITY, [6]uint64{tid + 1, 8, 0x1000}, false},
		{"sched_setaffinity -1", unix.SYS_SCHED_SETAFFINITY, [6]uint64{0xffffffff, 8, 0x1000}, false},
		{"sched_setattr own pid", unix.SYS_SCHED_SETATTR, [6]uint64{tgid}, true},
		{"prlimit64 own pid", unix.SYS_PRLIMIT64, [6]uint64{tgid, 7, 0x1000}, true},
		{"prlimit64 other", unix.SYS_PRLIMIT64, [6]uint64{1, 7, 0x1000}, false},
		{"not a scheduling call", unix.SYS_KILL, [6]uint64{tgid}, false},
	} {
		if got := targetsSelf(c.nr, c.args, tid, tgid); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}

func TestOwnIDs(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	tid, tgid, ok := parseNSids("Name:\tx\nTgid:\t90\nNStgid:\t90\t7\nPid:\t95\nNSpid:\t95\t12\n")
	if !ok || tid != 12 || tgid != 7 {
		t.Errorf("nested PID namespace: tid %d tgid %d ok %v, want 12 7", tid, tgid, ok)
	}
	if _, _, ok := parseNSids("Name:\tx\nPid:\t95\n"); ok {
		t.Error("a status without NSpid parsed")
	}
	tid, tgid, ok = ownIDs(unix.Gettid())
	if !ok || tid != unix.Gettid() || tgid != os.Getpid() {
		t.Errorf("own ids: tid %d tgid %d ok %v, want %d %d", tid, tgid, ok, unix.Gettid(), os.Getpid())
	}
}
