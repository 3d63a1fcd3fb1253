package sandbox

import (
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"ronly.dev/ronly/bpf"
)

// The scheduling and limit calls (setpriority, ioprio_set, sched_set*,
// prlimit64 with a new limit) may act only on the caller itself. The
// filter lets pid/who 0 through without asking; any other target comes
// here, and the call continues only when it names the caller's own thread
// id or process id, as renice -p $$ (exec'd), taskset -p, Python's
// os.sched_setaffinity(os.getpid()) and glibc's pthread_setaffinity_np on
// the calling thread do. Everything else is refused: another process, a
// process group, a user.
//
// Continuing is safe: the decision rests on register arguments, which the
// caller cannot change once notified, and on its own ids, which cannot be
// reused while it waits in the call (a thread group's id stays taken while
// any of its threads lives).

// schedTarget says where a call names its target: the argument holding a
// pid, and for setpriority and ioprio_set the "which" argument and the
// value that means one process (PRIO_PROCESS, IOPRIO_WHO_PROCESS).
type schedTarget struct {
	pidArg    int
	whichArg  int // -1: no which
	whichSelf int32
}

var schedCalls = map[int]schedTarget{
	unix.SYS_SETPRIORITY:        {pidArg: 1, whichArg: 0, whichSelf: unix.PRIO_PROCESS},
	unix.SYS_IOPRIO_SET:         {pidArg: 1, whichArg: 0, whichSelf: 1 /* IOPRIO_WHO_PROCESS */},
	unix.SYS_SCHED_SETAFFINITY:  {pidArg: 0, whichArg: -1},
	unix.SYS_SCHED_SETSCHEDULER: {pidArg: 0, whichArg: -1},
	unix.SYS_SCHED_SETPARAM:     {pidArg: 0, whichArg: -1},
	unix.SYS_SCHED_SETATTR:      {pidArg: 0, whichArg: -1},
	unix.SYS_PRLIMIT64:          {pidArg: 0, whichArg: -1},
}

// addSchedMediators registers the mediator for each scheduling call the
// policy mediates; the reasons of refusals come from its rules.
func addSchedMediators(m map[int]mediator, t bpf.Table) {
	for nr := range schedCalls {
		if e, ok := t[nr]; ok && e.Mediate {
			m[nr] = func(c *Call) *Refusal { return mediateSched(c, e) }
		}
	}
}

func mediateSched(c *Call, e bpf.Entry) *Refusal {
	tid, tgid, ok := ownIDs(int(c.PID))
	if ok && c.Valid() && targetsSelf(int(c.Nr), c.Args, tid, tgid) {
		c.Continue()
		return nil
	}
	c.Reply(0, unix.EPERM)
	r := &Refusal{Errno: unix.EPERM}
	if rule, ok := e.Match(c.Args); ok {
		r.Reason = rule.Reason
	}
	return r
}

// targetsSelf says whether a call of nr with args acts only on the caller,
// whose thread and process ids (in its own PID namespace, where the kernel
// looks the target up) are tid and tgid. Arguments are ints to the kernel:
// only their low 32 bits count.
func targetsSelf(nr int, args [6]uint64, tid, tgid int) bool {
	t, ok := schedCalls[nr]
	if !ok {
		return false
	}
	if t.whichArg >= 0 && int32(args[t.whichArg]) != t.whichSelf {
		return false
	}
	pid := int(int32(args[t.pidArg]))
	return pid == 0 || pid == tid || pid == tgid
}

// ownIDs reads the thread id and process id of the thread pid (as the
// supervisor sees it) in its innermost PID namespace: the last fields of
// NSpid and NStgid in /proc/<pid>/status.
func ownIDs(pid int) (tid, tgid int, ok bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, 0, false
	}
	return parseNSids(string(b))
}

func parseNSids(status string) (tid, tgid int, ok bool) {
	last := func(key string) (int, bool) {
		for _, line := range strings.Split(status, "\n") {
			if rest, found := strings.CutPrefix(line, key); found {
				f := strings.Fields(rest)
				if len(f) == 0 {
					return 0, false
				}
				n, err := strconv.Atoi(f[len(f)-1])
				return n, err == nil && n > 0
			}
		}
		return 0, false
	}
	tid, ok1 := last("NSpid:")
	tgid, ok2 := last("NStgid:")
	return tid, tgid, ok1 && ok2
}
