package bpf

import (
	"bytes"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

var update = flag.Bool("update", false, "rewrite compiled/*.golden")

// allModes are the programs ronly embeds.
var allModes = []Mode{ModeErrno, ModeNotify, ModeNotifySignals}

func mustProgram(t *testing.T, mode Mode) []byte {
	t.Helper()
	prog, err := Program(mode)
	if err != nil {
		t.Fatalf("Program(%v): %v", mode, err)
	}
	return prog
}

func golden(prog []byte, mode Mode) []byte {
	ins := decode(prog)
	var b bytes.Buffer
	fmt.Fprintf(&b, "# ronly seccomp program for x86_64, mode %s: %d instructions.\n", mode, len(ins))
	fmt.Fprintf(&b, "# Generated from syscalls.policy by `go test ./bpf -update`; do not edit.\n")
	b.WriteString(disassemble(ins))
	fmt.Fprintf(&b, "# The program as the kernel takes it: x86_64-%s.bin.\n", mode)
	return b.Bytes()
}

func TestGolden(t *testing.T) {
	for _, mode := range allModes {
		t.Run(mode.String(), func(t *testing.T) {
			prog := mustProgram(t, mode)
			got := golden(prog, mode)
			path := filepath.Join("compiled", "x86_64-"+mode.String()+".golden")
			bin := filepath.Join("compiled", "x86_64-"+mode.String()+".bin")
			if *update {
				if err := os.MkdirAll("compiled", 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(bin, prog, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test ./bpf -update)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("program differs from %s; if the change is intended, run go test ./bpf -update\n%s",
					path, firstDiff(string(want), string(got)))
			}
			if raw, err := os.ReadFile(bin); err != nil || !bytes.Equal(raw, prog) {
				t.Errorf("%s is not the program %s disassembles (%v); run go test ./bpf -update", bin, path, err)
			}
		})
	}
}

func firstDiff(want, got string) string {
	wl, gl := bytes.Split([]byte(want), []byte("\n")), bytes.Split([]byte(got), []byte("\n"))
	for i := 0; i < max(len(wl), len(gl)); i++ {
		var w, g []byte
		if i < len(wl) {
			w = wl[i]
		}
		if i < len(gl) {
			g = gl[i]
		}
		if !bytes.Equal(w, g) {
			return fmt.Sprintf("first difference at line %d:\n want %s\n  got %s", i+1, w, g)
		}
	}
	return "no line differs"
}

func TestDeterministic(t *testing.T) {
	for _, mode := range allModes {
		a, b := mustProgram(t, mode), mustProgram(t, mode)
		if !bytes.Equal(a, b) {
			t.Errorf("mode %v: two compilations differ", mode)
		}
	}
}

// TestNotifyDiffersOnlyInAction: the two modes have the same code, jumps and
// constants; only returns change, ERRNO(x) to USER_NOTIF, except quiet rules.
// Mediated rules exist only in notify mode (errno mode allows those calls),
// so the comparison leaves them out; TestProgramMatchesPolicy checks them.
func TestNotifyDiffersOnlyInAction(t *testing.T) {
	rules, err := Rules()
	if err != nil {
		t.Fatal(err)
	}
	var plain []Rule
	for _, r := range rules {
		if !r.Mediate {
			plain = append(plain, r)
		}
	}
	compile := func(mode Mode) []insn {
		prog, err := Compile(plain, mode)
		if err != nil {
			t.Fatalf("Compile(%v): %v", mode, err)
		}
		return decode(prog)
	}
	e, n := compile(ModeErrno), compile(ModeNotify)
	if len(e) != len(n) {
		t.Fatalf("errno program has %d instructions, notify %d", len(e), len(n))
	}
	changed := 0
	for i := range e {
		a, b := e[i], n[i]
		if a == b {
			continue
		}
		if a.code != 0x06 || b.code != 0x06 || a.k&retActionFull != retErrno || b.k != retUserNotif {
			t.Errorf("instruction %d: errno mode %+v, notify mode %+v", i, a, b)
		}
		if a.k&retData == 0x26 { // ENOSYS stays (clone3 is quiet)
			t.Errorf("instruction %d: ENOSYS return became USER_NOTIF", i)
		}
		changed++
	}
	if changed == 0 {
		t.Error("no return differs between the modes")
	}
}

func TestCompileRejects(t *testing.T) {
	good := Rule{Syscall: "mount", Nr: 165, Errno: 1, Reason: "x"}
	for name, rules := range map[string][]Rule{
		"empty":    nil,
		"nr":       {{Syscall: "x", Nr: -1, Errno: 1}},
		"x32 nr":   {{Syscall: "x", Nr: 39 | x32Bit, Errno: 1}},
		"errno 0":  {{Syscall: "x", Nr: 165}},
		"errno":    {{Syscall: "x", Nr: 165, Errno: 5000}},
		"arg":      {{Syscall: "x", Nr: 16, Errno: 1, Conds: []Cond{{Arg: 6, Op: OpEq}}}},
		"op":       {{Syscall: "x", Nr: 16, Errno: 1, Conds: []Cond{{Arg: 1, Op: 99}}}},
		"mixed ok": {good, {Syscall: "x", Nr: 16, Errno: 1, Conds: []Cond{{Arg: 1, Op: 42}}}},
		"two errnos": {{Syscall: "ioctl", Nr: 16, Errno: 1, Conds: []Cond{{Arg: 1, Op: OpEq, Value: 1}}},
			{Syscall: "ioctl", Nr: 16, Errno: 13, Conds: []Cond{{Arg: 1, Op: OpEq, Value: 2}}}},
		"twice": {good, good},
	} {
		if _, err := Compile(rules, ModeErrno); err == nil {
			t.Errorf("%s: Compile accepted %+v", name, rules)
		}
	}
	if _, err := Compile([]Rule{good}, Mode(7)); err == nil {
		t.Error("Compile accepted mode 7")
	}
}

// expected is what the policy says a call should get.
func expected(tab Table, mode Mode, nr int, args [6]uint64) uint32 {
	e, ok := tab[nr]
	if !ok {
		return retAllow
	}
	if _, hit := e.Match(args); !hit {
		return retAllow
	}
	if e.Rules[0].Signals && mode != ModeNotifySignals {
		return retAllow // a signal call: confined by Landlock or a PID namespace there
	}
	if e.Mediate && !mode.notifies() && e.Errno == 0 {
		return retAllow // no supervisor to ask: the kernel's own checks hold
	}
	if mode.notifies() && !e.Quiet {
		return retUserNotif
	}
	return retErrno | uint32(e.Errno)
}

// candidates are argument values around every constant the policy compares
// an argument with: the value, with high bits set, off by one bit, all ones.
func candidates(e Entry, arg int) []uint64 {
	vals := []uint64{0, 1, ^uint64(0), 1 << 32, 0xffffffff}
	for _, r := range e.Rules {
		for _, c := range r.Conds {
			if c.Arg != arg {
				continue
			}
			v := c.Value
			vals = append(vals, v, v|1<<32, v|0xffffffff00000000, v^1, v+1, v-1, ^v)
			if c.Op == OpMaskedEq {
				vals = append(vals, v|^c.Mask, c.Mask, v|0x0ff0)
			}
		}
	}
	return vals
}

// TestProgramMatchesPolicy runs the compiled program, in an interpreter, on
// every x86_64 syscall number with arguments around each constant in the
// policy, and on the other ABIs, and checks each answer against the rules.
func TestProgramMatchesPolicy(t *testing.T) {
	rules, err := Rules()
	if err != nil {
		t.Fatal(err)
	}
	tab := NewTable(rules)
	rng := rand.New(rand.NewPCG(1, 2))
	for _, mode := range allModes {
		prog := decode(mustProgram(t, mode))
		check := func(d seccompData, want uint32) {
			t.Helper()
			got, err := run(prog, d)
			if err != nil {
				t.Fatalf("mode %v, %+v: %v", mode, d, err)
			}
			if got != want {
				t.Errorf("mode %v: nr %d (%s) arch %#x args %#x: got %s, want %s",
					mode, d.nr, SyscallName(int(d.nr)), d.arch, d.args, retString(got), retString(want))
			}
		}
		calls := 0
		for nr := 0; nr < maxNr; nr++ {
			var arg [6]uint64
			// Unlisted syscalls and unconditional rules: a few argument vectors.
			for i := 0; i < 4; i++ {
				for j := range arg {
					arg[j] = rng.Uint64()
				}
				if i == 0 {
					arg = [6]uint64{}
				}
				check(seccompData{nr: int32(nr), arch: auditArchX8664, args: arg}, expected(tab, mode, nr, arg))
				calls++
				// Any other ABI is killed whatever the number.
				check(seccompData{nr: int32(nr), arch: auditArchI386, args: arg}, retKillProcess)
				check(seccompData{nr: int32(nr | x32Bit), arch: auditArchX8664, args: arg}, retKillProcess)
			}
			e, ok := tab[nr]
			if !ok {
				continue
			}
			// Conditional rules: the cartesian product over the compared arguments.
			var used []int
			for a := 0; a < 6; a++ {
				if len(candidates(e, a)) > 5 {
					used = append(used, a)
				}
			}
			var walk func(k int, args [6]uint64)
			walk = func(k int, args [6]uint64) {
				if k == len(used) {
					check(seccompData{nr: int32(nr), arch: auditArchX8664, args: args}, expected(tab, mode, nr, args))
					calls++
					return
				}
				for _, v := range candidates(e, used[k]) {
					args[used[k]] = v
					walk(k+1, args)
				}
			}
			walk(0, [6]uint64{})
		}
		// nr -1 is what a tracer sets to skip a call; libseccomp lets it reach
		// the default action, and the kernel then fails it with ENOSYS.
		check(seccompData{nr: -1, arch: auditArchX8664}, retAllow)
		for _, nr := range []uint32{x32Bit, x32Bit | 39, 0x7fffffff, 0x80000000, 0xfffffffe} {
			check(seccompData{nr: int32(nr), arch: auditArchX8664}, retKillProcess)
		}
		check(seccompData{nr: 39, arch: 0xc00000b7}, retKillProcess) // aarch64
		t.Logf("mode %v: %d x86_64 calls checked", mode, calls)
	}
}

// TestPolicySamples spells out the policy's intent for the calls the brief
// names, independent of how the table is built.
func TestPolicySamples(t *testing.T) {
	const (
		eperm  = retErrno | 1
		enosys = retErrno | 38
	)
	prog := decode(mustProgram(t, ModeErrno))
	for _, c := range []struct {
		name string
		nr   int32
		args [6]uint64
		want uint32
	}{
		{"getpid", 39, [6]uint64{}, retAllow},
		{"read", 0, [6]uint64{}, retAllow},
		{"mount", 165, [6]uint64{}, eperm},
		{"open_tree_attr", 467, [6]uint64{}, eperm},
		{"quotactl_fd", 443, [6]uint64{}, eperm},
		{"fspick", 433, [6]uint64{}, eperm},
		{"setns", 308, [6]uint64{}, eperm},
		{"unshare NEWUSER", 272, [6]uint64{0x10000000}, eperm},
		{"unshare NEWTIME", 272, [6]uint64{0x80}, eperm},
		{"unshare NEWNS|FS", 272, [6]uint64{0x20000 | 0x200}, eperm},
		{"unshare FS|FILES", 272, [6]uint64{0x200 | 0x400}, retAllow},
		{"unshare 0", 272, [6]uint64{0}, retAllow},
		{"clone thread", 56, [6]uint64{0x3d0f00}, retAllow},
		{"clone fork SIGCHLD", 56, [6]uint64{0x11}, retAllow},
		{"clone exit signal 0x80", 56, [6]uint64{0x80 | 0x11}, retAllow},
		{"clone NEWPID", 56, [6]uint64{0x20000000 | 0x11}, eperm},
		{"clone NEWNET", 56, [6]uint64{0x40000000}, eperm},
		{"clone3", 435, [6]uint64{}, enosys},
		{"ptrace PEEKDATA", 101, [6]uint64{2}, retAllow},
		{"ptrace GETREGS", 101, [6]uint64{12}, retAllow},
		{"ptrace ATTACH", 101, [6]uint64{16}, retAllow},
		{"ptrace SETOPTIONS", 101, [6]uint64{0x4200}, retAllow},
		{"ptrace GET_SYSCALL_INFO", 101, [6]uint64{0x420e}, retAllow},
		{"ptrace POKEDATA", 101, [6]uint64{5}, eperm},
		{"ptrace POKEDATA high bits", 101, [6]uint64{0x100000005}, eperm},
		{"ptrace SETREGSET", 101, [6]uint64{0x4205}, eperm},
		{"ptrace SETSIGINFO", 101, [6]uint64{0x4203}, eperm},
		{"process_vm_writev", 311, [6]uint64{}, eperm},
		{"process_vm_readv", 310, [6]uint64{}, retAllow},
		{"pidfd_getfd", 438, [6]uint64{}, eperm},
		{"pidfd_send_signal", 424, [6]uint64{}, retAllow},
		{"kill", 62, [6]uint64{1, 9}, retAllow},
		{"rt_sigqueueinfo", 129, [6]uint64{}, eperm},
		{"rt_tgsigqueueinfo", 297, [6]uint64{}, eperm},
		{"prlimit64 self set", 302, [6]uint64{0, 7, 0x1000, 0}, retAllow},
		{"prlimit64 other get", 302, [6]uint64{1, 7, 0, 0x1000}, retAllow},
		{"prlimit64 other set", 302, [6]uint64{1, 7, 0x1000, 0}, eperm},
		{"prlimit64 other set high pid", 302, [6]uint64{1 << 32, 7, 0x1000, 0}, eperm},
		{"setpriority self", 141, [6]uint64{0, 0, 5}, retAllow},
		{"setpriority other", 141, [6]uint64{0, 1, 5}, eperm},
		{"setpriority PRIO_PGRP 0", 141, [6]uint64{1, 0, 5}, eperm},
		{"setpriority PRIO_USER 0", 141, [6]uint64{2, 0, 5}, eperm},
		{"setpriority PRIO_PROCESS high bits", 141, [6]uint64{1 << 32, 0, 5}, eperm},
		{"ioprio_set IOPRIO_WHO_USER 0", 251, [6]uint64{3, 0, 0x6000}, eperm},
		{"ioprio_set IOPRIO_WHO_PGRP 0", 251, [6]uint64{2, 0, 0x6000}, eperm},
		{"chmod 0755", 90, [6]uint64{0, 0o755}, retAllow},
		{"chmod 01777", 90, [6]uint64{0, 0o1777}, retAllow},
		{"chmod 04755", 90, [6]uint64{0, 0o4755}, eperm},
		{"chmod 02755", 90, [6]uint64{0, 0o2755}, eperm},
		{"chmod 04755 high bits", 90, [6]uint64{0, 0xffffffff00000000 | 0o4755}, eperm},
		{"fchmod 04755", 91, [6]uint64{3, 0o4755}, eperm},
		{"fchmodat 02755", 268, [6]uint64{0, 0, 0o2755}, eperm},
		{"fchmodat2 04755", 452, [6]uint64{0, 0, 0o4755, 0}, eperm},
		{"fchmodat2 0644", 452, [6]uint64{0, 0, 0o644, 0}, retAllow},
		{"open O_CREAT 0644", 2, [6]uint64{0, 0o101, 0o644}, retAllow},
		{"open O_CREAT 04755", 2, [6]uint64{0, 0o101, 0o4755}, eperm},
		{"open O_RDONLY junk mode", 2, [6]uint64{0, 0, 0o6777}, retAllow},
		{"openat O_CREAT 04755", 257, [6]uint64{0, 0, 0o101, 0o4755}, eperm},
		{"openat O_CREAT 02700", 257, [6]uint64{0, 0, 0o101, 0o2700}, eperm},
		{"openat O_TMPFILE 04755", 257, [6]uint64{0, 0, 0o20200002, 0o4755}, eperm},
		{"openat O_TMPFILE 0600", 257, [6]uint64{0, 0, 0o20200002, 0o600}, retAllow},
		{"openat O_WRONLY junk mode", 257, [6]uint64{0, 0, 1, 0o4755}, retAllow},
		{"creat 04755", 85, [6]uint64{0, 0o4755}, eperm},
		{"mknod S_IFREG|04755", 133, [6]uint64{0, 0o104755, 0}, eperm},
		{"mknod S_IFIFO|0644", 133, [6]uint64{0, 0o10644, 0}, retAllow},
		{"mknodat S_IFREG|02755", 259, [6]uint64{0, 0, 0o102755, 0}, eperm},
		{"mkdir 02775", 83, [6]uint64{0, 0o2775}, eperm},
		{"mkdirat 0755", 258, [6]uint64{0, 0, 0o755}, retAllow},
		{"openat2", 437, [6]uint64{}, enosys},
		{"setxattr (no supervisor: allowed)", 188, [6]uint64{}, retAllow},
		{"setsockopt SO_REUSEPORT", 54, [6]uint64{3, 1, 15, 0, 4}, eperm},
		{"setsockopt SO_REUSEPORT high bits", 54, [6]uint64{3, 1<<32 | 1, 1<<40 | 15, 0, 4}, eperm},
		{"setsockopt SO_REUSEADDR", 54, [6]uint64{3, 1, 2, 0, 4}, retAllow},
		{"setsockopt IPPROTO_TCP 15", 54, [6]uint64{3, 6, 15, 0, 4}, retAllow},
		{"sched_setaffinity self", 203, [6]uint64{0, 8, 0x1000}, retAllow},
		{"sched_setaffinity other", 203, [6]uint64{1, 8, 0x1000}, eperm},
		{"sched_setscheduler other", 144, [6]uint64{1}, eperm},
		{"sched_setparam other", 142, [6]uint64{1}, eperm},
		{"sched_setattr other", 314, [6]uint64{1}, eperm},
		{"sched_setattr self", 314, [6]uint64{0}, retAllow},
		{"ioprio_set other", 251, [6]uint64{1, 1}, eperm},
		{"ioprio_set self", 251, [6]uint64{1, 0}, retAllow},
		{"move_pages query", 279, [6]uint64{1, 1, 0x1000, 0, 0x2000}, retAllow},
		{"move_pages other", 279, [6]uint64{1, 1, 0x1000, 0x3000, 0x2000}, eperm},
		{"reboot", 169, [6]uint64{}, eperm},
		{"keyctl", 250, [6]uint64{}, eperm},
		{"bpf", 321, [6]uint64{}, eperm},
		{"io_uring_setup", 425, [6]uint64{}, eperm},
		{"io_uring_enter", 426, [6]uint64{}, eperm},
		{"ioctl TIOCSTI", 16, [6]uint64{0, 0x5412}, eperm},
		{"ioctl TIOCSTI high bits", 16, [6]uint64{0, 0x100005412}, eperm},
		{"ioctl TIOCSTI all high bits", 16, [6]uint64{0, 0xffffffff00005412}, eperm},
		{"ioctl TIOCLINUX", 16, [6]uint64{0, 0x541c}, eperm},
		{"ioctl TCGETS", 16, [6]uint64{0, 0x5401}, retAllow},
		{"ioctl TIOCGWINSZ", 16, [6]uint64{0, 0x5413}, retAllow},
		{"ioctl FIONREAD", 16, [6]uint64{0, 0x541b}, retAllow},
		{"openat", 257, [6]uint64{}, retAllow},
		{"unlink", 87, [6]uint64{}, retAllow},
		{"memfd_create", 319, [6]uint64{}, retAllow},
	} {
		got, err := run(prog, seccompData{nr: c.nr, arch: auditArchX8664, args: c.args})
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if got != c.want {
			t.Errorf("%s: got %s, want %s", c.name, retString(got), retString(c.want))
		}
	}
}

// TestSignalsOnlyInTheirProgram: the signal calls reach the supervisor only
// in the program of a session whose signals it confines; elsewhere they
// cost nothing.
func TestSignalsOnlyInTheirProgram(t *testing.T) {
	for _, nr := range []int32{62 /* kill */, 200 /* tkill */, 234 /* tgkill */, 424 /* pidfd_send_signal */} {
		for mode, want := range map[Mode]uint32{ModeErrno: retAllow, ModeNotify: retAllow, ModeNotifySignals: retUserNotif} {
			got, err := run(decode(mustProgram(t, mode)), seccompData{nr: nr, arch: auditArchX8664, args: [6]uint64{1, 9}})
			if err != nil {
				t.Fatal(err)
			}
			if got != want {
				t.Errorf("mode %v, syscall %d: got %s, want %s", mode, nr, retString(got), retString(want))
			}
		}
	}
}

func TestPrecompiledIsTheCompiledPolicy(t *testing.T) {
	for _, mode := range allModes {
		pre, err := Precompiled(mode)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(pre, mustProgram(t, mode)) {
			t.Errorf("%s: the embedded program is stale; run go test ./bpf -update", mode)
		}
	}
}
