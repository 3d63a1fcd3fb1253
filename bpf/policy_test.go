package bpf

import (
	"reflect"
	"strings"
	"syscall"
	"testing"
)

func TestParse(t *testing.T) {
	src := `# comment
   # indented comment

mount              EPERM                             -- remounting could clear the read-only flag
ioctl              EPERM    if arg1&0xffffffff == 0x5412 -- TIOCSTI: inject keystrokes
ioctl              EPERM    if arg1 & 0xffffffff==0x541c -- TIOCLINUX -- with dashes
prlimit64          EPERM    if arg0 != 0 && arg2 != 0 -- change another process's limits
clone3             ENOSYS   quiet -- use clone
open_tree_attr:467 EPERM -- new
quotactl_fd:443    EPERM -- known to libseccomp, number checked
439                EACCES -- bare number known to libseccomp (faccessat2)
500                EPERM  -- bare number nobody knows
setpriority        EPERM  if arg1 < 10 && arg0 <= 1 && arg2 > 3 && arg3 >= 4 && arg4 == 5 && arg5 != 6 -- all ops
connect            mediate -- decided by the supervisor, else allowed
sched_setparam     mediate EPERM if arg0 != 0 -- decided by the supervisor, else refused
kill               mediate signals -- decided by the supervisor where it confines signals
`
	rules, err := Parse([]byte(src))
	if err != nil {
		t.Fatal(err)
	}
	want := []Rule{
		{Syscall: "mount", Nr: 165, Errno: syscall.EPERM, Reason: "remounting could clear the read-only flag", Line: 4},
		{Syscall: "ioctl", Nr: 16, Errno: syscall.EPERM, Conds: []Cond{{Arg: 1, Op: OpMaskedEq, Mask: 0xffffffff, Value: 0x5412}},
			Reason: "TIOCSTI: inject keystrokes", Line: 5},
		{Syscall: "ioctl", Nr: 16, Errno: syscall.EPERM, Conds: []Cond{{Arg: 1, Op: OpMaskedEq, Mask: 0xffffffff, Value: 0x541c}},
			Reason: "TIOCLINUX -- with dashes", Line: 6},
		{Syscall: "prlimit64", Nr: 302, Errno: syscall.EPERM, Conds: []Cond{{Arg: 0, Op: OpNe}, {Arg: 2, Op: OpNe}},
			Reason: "change another process's limits", Line: 7},
		{Syscall: "clone3", Nr: 435, Errno: syscall.ENOSYS, Quiet: true, Reason: "use clone", Line: 8},
		{Syscall: "open_tree_attr", Nr: 467, Errno: syscall.EPERM, Reason: "new", Line: 9},
		{Syscall: "quotactl_fd", Nr: 443, Errno: syscall.EPERM, Reason: "known to libseccomp, number checked", Line: 10},
		{Syscall: "faccessat2", Nr: 439, Errno: syscall.EACCES, Reason: "bare number known to libseccomp (faccessat2)", Line: 11},
		{Syscall: "syscall_500", Nr: 500, Errno: syscall.EPERM, Reason: "bare number nobody knows", Line: 12},
		{Syscall: "setpriority", Nr: 141, Errno: syscall.EPERM, Conds: []Cond{
			{Arg: 1, Op: OpLt, Value: 10}, {Arg: 0, Op: OpLe, Value: 1}, {Arg: 2, Op: OpGt, Value: 3},
			{Arg: 3, Op: OpGe, Value: 4}, {Arg: 4, Op: OpEq, Value: 5}, {Arg: 5, Op: OpNe, Value: 6},
		}, Reason: "all ops", Line: 13},
		{Syscall: "connect", Nr: 42, Mediate: true, Reason: "decided by the supervisor, else allowed", Line: 14},
		{Syscall: "sched_setparam", Nr: 142, Mediate: true, Errno: syscall.EPERM, Conds: []Cond{{Arg: 0, Op: OpNe}},
			Reason: "decided by the supervisor, else refused", Line: 15},
		{Syscall: "kill", Nr: 62, Mediate: true, Signals: true, Reason: "decided by the supervisor where it confines signals", Line: 16},
	}
	if !reflect.DeepEqual(rules, want) {
		for i := range max(len(rules), len(want)) {
			var g, w Rule
			if i < len(rules) {
				g = rules[i]
			}
			if i < len(want) {
				w = want[i]
			}
			if !reflect.DeepEqual(g, w) {
				t.Errorf("rule %d:\n got %+v\nwant %+v", i, g, w)
			}
		}
	}
	// What the parser builds also compiles.
	if _, err := Compile(rules, ModeNotify); err != nil {
		t.Errorf("Compile: %v", err)
	}
}

func TestParseErrors(t *testing.T) {
	for _, c := range []struct{ src, want string }{
		{"mount EPERM", `line 1: missing "-- reason"`},
		{"mount EPERM --  ", `line 1: missing "-- reason"`},
		{"\n\nmount -- x", "line 3: want: SYSCALL ERRNO"},
		{"mount EPREM -- x", `line 1: unknown errno "EPREM"`},
		{"mount mediate EPREM -- x", `line 1: unknown errno "EPREM"`},
		{"mount 1 -- x", `line 1: unknown errno "1"`},
		{"nosuchcall EPERM -- x", `line 1: libseccomp does not know syscall "nosuchcall" on x86_64: write it as nosuchcall:NUMBER`},
		{"socketcall EPERM -- x", `line 1: "socketcall" is not an x86_64 syscall`},
		{"mount:166 EPERM -- x", "line 1: mount is 165 on x86_64 according to libseccomp, not 166"},
		{"fancy:165 EPERM -- x", "line 1: 165 is mount on x86_64 according to libseccomp, not fancy"},
		{"1073741863 EPERM -- x", `line 1: syscall number "1073741863": want 0..1023`},
		{"open_tree_attr:0x EPERM -- x", `line 1: syscall number "0x"`},
		{"Mount EPERM -- x", `line 1: bad syscall name "Mount"`},
		{"mount EPERM loud -- x", `line 1: unexpected "loud"`},
		{"mount EPERM if -- x", `line 1: "if" without conditions`},
		{"ioctl EPERM if arg6 == 1 -- x", `line 1: condition "arg6==1": want argN (N = 0..5) first`},
		{"ioctl EPERM if a1 == 1 -- x", `line 1: condition "a1==1": want argN`},
		{"ioctl EPERM if arg1 = 1 -- x", `line 1: condition "arg1=1": want one of == != < <= > >=`},
		{"ioctl EPERM if arg1 == x -- x", `line 1: condition "arg1==x": bad value "x"`},
		{"ioctl EPERM if arg1 == -1 -- x", `line 1: condition "arg1==-1": bad value "-1"`},
		{"ioctl EPERM if arg1&0xff != 1 -- x", `line 1: condition "arg1&0xff!=1": a masked compare only supports ==`},
		{"ioctl EPERM if arg1&0xff == 0x100 -- x", "value has bits outside the mask"},
		{"ioctl EPERM if arg1&zz == 1 -- x", `bad mask "zz"`},
		{"ioctl EPERM if arg1&0xff -- x", "missing comparison"},
		{"ioctl EPERM if arg1 == 1 && arg1 == 2 -- x", "line 1: arg1 compared twice on one line"},
		{"ioctl EPERM if arg1 == 1 &&  -- x", `condition "": want argN`},
		{"ioctl EPERM if arg1 == 1 -- x\nioctl EACCES if arg1 == 2 -- x", "line 2: ioctl: errno EACCES differs from EPERM on line 1"},
		{"clone3 ENOSYS quiet if arg1 == 1 -- x\nclone3 ENOSYS if arg1 == 2 -- x", "line 2: clone3: quiet differs from line 1"},
		{"mount EPERM -- x\nmount EPERM -- y", "line 2: mount: already refused on line 1"},
		{"kill mediate signals if arg0 == 1 -- x\nkill mediate if arg0 == 2 -- x", "line 2: kill: signals differs from line 1"},
		{"ioctl EPERM if arg1 == 1 -- x\nioctl EPERM -- y", "line 2: ioctl: already refused on line 1"},
		{"# only a comment\n\n", "policy has no rules"},
	} {
		_, err := Parse([]byte(c.src))
		if err == nil {
			t.Errorf("Parse(%q) succeeded, want error %q", c.src, c.want)
			continue
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("Parse(%q):\n got %q\nwant %q", c.src, err, c.want)
		}
	}
}

func TestParseReportsEveryBadLine(t *testing.T) {
	_, err := Parse([]byte("mount EPERM -- ok\nbad\numount2 EPERM -- ok\nalso bad -- x\n"))
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"line 2:", "line 4:"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

func TestCondMatchAndString(t *testing.T) {
	args := [6]uint64{0, 0x100005412, 7}
	for _, c := range []struct {
		cond Cond
		text string
		want bool
	}{
		{Cond{Arg: 1, Op: OpMaskedEq, Mask: 0xffffffff, Value: 0x5412}, "arg1&0xffffffff == 0x5412", true},
		{Cond{Arg: 1, Op: OpEq, Value: 0x5412}, "arg1 == 0x5412", false},
		{Cond{Arg: 0, Op: OpNe}, "arg0 != 0x0", false},
		{Cond{Arg: 2, Op: OpLt, Value: 8}, "arg2 < 0x8", true},
		{Cond{Arg: 2, Op: OpLe, Value: 7}, "arg2 <= 0x7", true},
		{Cond{Arg: 2, Op: OpGt, Value: 7}, "arg2 > 0x7", false},
		{Cond{Arg: 2, Op: OpGe, Value: 7}, "arg2 >= 0x7", true},
		{Cond{Arg: 9, Op: OpEq}, "arg9 == 0x0", false},
	} {
		if got := c.cond.Match(args); got != c.want {
			t.Errorf("%s: Match = %v", c.text, got)
		}
		if got := c.cond.String(); got != c.text {
			t.Errorf("String() = %q, want %q", got, c.text)
		}
		// The string form parses back (index aside).
		if c.cond.Arg <= 5 {
			back, err := parseCond(strings.Join(strings.Fields(c.cond.String()), ""))
			if err != nil || back != c.cond {
				t.Errorf("parseCond(%q) = %+v, %v", c.cond.String(), back, err)
			}
		}
	}
}

func TestEmbeddedPolicy(t *testing.T) {
	rules, err := Rules()
	if err != nil {
		t.Fatal(err)
	}
	tab := NewTable(rules)
	must := map[string]syscall.Errno{
		"mount": syscall.EPERM, "umount2": syscall.EPERM, "mount_setattr": syscall.EPERM,
		"open_tree": syscall.EPERM, "move_mount": syscall.EPERM, "fsopen": syscall.EPERM,
		"fsconfig": syscall.EPERM, "fsmount": syscall.EPERM, "fspick": syscall.EPERM,
		"pivot_root": syscall.EPERM, "chroot": syscall.EPERM, "open_tree_attr": syscall.EPERM,
		"quotactl_fd": syscall.EPERM, "setns": syscall.EPERM, "unshare": syscall.EPERM,
		"clone": syscall.EPERM, "clone3": syscall.ENOSYS, "ptrace": syscall.EPERM,
		"process_vm_writev": syscall.EPERM, "pidfd_getfd": syscall.EPERM,
		"rt_sigqueueinfo": syscall.EPERM, "rt_tgsigqueueinfo": syscall.EPERM,
		"prlimit64": syscall.EPERM, "setpriority": syscall.EPERM, "sched_setaffinity": syscall.EPERM,
		"sched_setscheduler": syscall.EPERM, "sched_setparam": syscall.EPERM,
		"sched_setattr": syscall.EPERM, "ioprio_set": syscall.EPERM, "reboot": syscall.EPERM,
		"kexec_load": syscall.EPERM, "kexec_file_load": syscall.EPERM, "init_module": syscall.EPERM,
		"finit_module": syscall.EPERM, "delete_module": syscall.EPERM, "swapon": syscall.EPERM,
		"swapoff": syscall.EPERM, "acct": syscall.EPERM, "settimeofday": syscall.EPERM,
		"clock_settime": syscall.EPERM, "clock_adjtime": syscall.EPERM, "adjtimex": syscall.EPERM,
		"sethostname": syscall.EPERM, "setdomainname": syscall.EPERM, "syslog": syscall.EPERM,
		"keyctl": syscall.EPERM, "add_key": syscall.EPERM, "request_key": syscall.EPERM,
		"bpf": syscall.EPERM, "perf_event_open": syscall.EPERM, "userfaultfd": syscall.EPERM,
		"io_uring_setup": syscall.EPERM, "io_uring_enter": syscall.EPERM,
		"io_uring_register": syscall.EPERM, "open_by_handle_at": syscall.EPERM,
		"quotactl": syscall.EPERM, "lookup_dcookie": syscall.EPERM, "vhangup": syscall.EPERM,
		"ioctl": syscall.EPERM,
	}
	names := map[string]Entry{}
	for _, e := range tab {
		names[e.Name] = e
	}
	for name, errno := range must {
		e, ok := names[name]
		if !ok {
			t.Errorf("policy does not cover %s", name)
			continue
		}
		if e.Errno != errno {
			t.Errorf("%s: errno %v, want %v", name, e.Errno, errno)
		}
	}
	for _, name := range []string{"kill", "pidfd_send_signal", "unlink", "rename", "execve"} {
		if e, ok := names[name]; ok && !e.Rules[0].Signals {
			t.Errorf("policy refuses %s, which normal work needs", name)
		}
	}
	// The signal calls go to the supervisor only in the program of a
	// session whose signals it confines, which delivers them itself.
	for _, name := range []string{"kill", "tkill", "tgkill", "pidfd_send_signal"} {
		e, ok := names[name]
		if !ok || !e.Mediate || e.Errno != 0 || !e.Rules[0].Signals {
			t.Errorf("%s: want \"mediate signals\", got %+v", name, e)
		}
	}
	// openat is refused only for set-id modes: creating, truncating and
	// reading files are normal work.
	for _, args := range [][6]uint64{
		{0, 0, 0, 0}, {0, 0, 0o1101, 0o644}, {0, 0, 0o2302, 0o755}, {0, 0, 0o20200002, 0o600},
	} {
		if r, ok := names["openat"].Match(args); ok {
			t.Errorf("openat%o matches line %d", args, r.Line)
		}
	}
	if e := names["clone3"]; !e.Quiet {
		t.Error("clone3 must be quiet: libc calls it on every thread creation")
	}
	// Quiet rules are redirects to an older call, not refusals.
	for _, r := range rules {
		if r.Quiet && r.Syscall != "clone3" && r.Syscall != "openat2" {
			t.Errorf("line %d: %s is quiet; only clone3 and openat2 should be", r.Line, r.Syscall)
		}
	}
}

func TestTableAndNames(t *testing.T) {
	if e, ok := ErrnoFor(165); !ok || e != syscall.EPERM {
		t.Errorf("ErrnoFor(mount) = %v, %v", e, ok)
	}
	if e, ok := ErrnoFor(435); !ok || e != syscall.ENOSYS {
		t.Errorf("ErrnoFor(clone3) = %v, %v", e, ok)
	}
	if _, ok := ErrnoFor(39); ok {
		t.Error("ErrnoFor(getpid) found a rule")
	}
	for nr, want := range map[int]string{
		165: "mount", 467: "open_tree_attr", 443: "quotactl_fd", 39: "getpid",
		16: "ioctl", 462: "mseal", -1: "syscall_-1", 1 << 30: "syscall_1073741824", 1000: "syscall_1000",
	} {
		got := SyscallName(nr)
		if nr == 462 && got == "syscall_462" {
			continue // mseal is 462; libseccomp 2.5 does not know it, later versions do
		}
		if got != want {
			t.Errorf("SyscallName(%d) = %q, want %q", nr, got, want)
		}
	}
	tab, err := DefaultTable()
	if err != nil {
		t.Fatal(err)
	}
	ioctl := tab[16]
	if len(ioctl.Rules) != 2 {
		t.Fatalf("ioctl has %d rules", len(ioctl.Rules))
	}
	r, ok := ioctl.Match([6]uint64{1, 0x100005412})
	if !ok || !strings.Contains(r.Reason, "TIOCSTI") {
		t.Errorf("Match(TIOCSTI with high bits) = %+v, %v", r, ok)
	}
	if _, ok := ioctl.Match([6]uint64{1, 0x5401}); ok {
		t.Error("TCGETS matched an ioctl rule")
	}
}
