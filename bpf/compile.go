package bpf

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"

	seccomp "github.com/seccomp/libseccomp-golang"
	"golang.org/x/sys/unix"
)

// Mode selects what a matched rule does.
type Mode int

const (
	// ModeErrno: the kernel fails matched calls with the rule's errno.
	ModeErrno Mode = iota
	// ModeNotify: matched calls (except quiet rules) return
	// SECCOMP_RET_USER_NOTIF, so a supervisor holding the listener fd answers
	// them with the rule's errno (see Table) and counts them. Everything else
	// is as in ModeErrno. A supervisor must never let a call continue on the
	// strength of its (user memory) arguments, which the caller can change
	// after the check: it answers with an error, or, for mediated rules,
	// does the call itself with the arguments it read and checked.
	ModeNotify
	// ModeNotifySignals is ModeNotify plus the rules marked "signals": the
	// program for a session whose signals the supervisor confines (Landlock
	// below ABI 6 cannot, and the session shares the host's PID namespace).
	// It has no errno counterpart: without a listener such a session takes
	// a PID namespace of its own instead.
	ModeNotifySignals
)

// notifies says whether matched calls go to a supervisor.
func (m Mode) notifies() bool { return m == ModeNotify || m == ModeNotifySignals }

func (m Mode) String() string {
	switch m {
	case ModeErrno:
		return "errno"
	case ModeNotify:
		return "notify"
	case ModeNotifySignals:
		return "notify-signals"
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// Instruction size and limits of a classic BPF program (linux/filter.h).
const (
	insnSize = 8
	maxInsns = 4096 // BPF_MAXINSNS
	retClass = 0x06 // BPF_RET
)

// Program parses the embedded policy and compiles it: the bytes the init loads
// with seccomp(SECCOMP_SET_MODE_FILTER).
func Program(mode Mode) ([]byte, error) {
	rules, err := Rules()
	if err != nil {
		return nil, err
	}
	return Compile(rules, mode)
}

// Compile builds the seccomp filter for x86_64 and returns it as the bytes of
// a struct sock_filter array (native byte order). The default action is
// ALLOW; calls from any other architecture or ABI (i386, x32) kill the process.
// The output depends only on the rules and the mode.
func Compile(rules []Rule, mode Mode) ([]byte, error) {
	if mode != ModeErrno && mode != ModeNotify && mode != ModeNotifySignals {
		return nil, fmt.Errorf("bpf: unknown mode %d", int(mode))
	}
	if len(rules) == 0 {
		return nil, errors.New("bpf: no rules to compile")
	}
	f, err := seccomp.NewFilter(seccomp.ActAllow)
	if err != nil {
		return nil, fmt.Errorf("bpf: libseccomp: %w", err)
	}
	defer f.Release()
	if err := setup(f); err != nil {
		return nil, fmt.Errorf("bpf: libseccomp: %w", err)
	}
	first := map[int]Rule{}
	for _, r := range rules {
		if prev, ok := first[r.Nr]; ok {
			if err := compatible(prev, r); err != nil {
				return nil, fmt.Errorf("bpf: line %d: %w", r.Line, err)
			}
		} else {
			first[r.Nr] = r
		}
		if err := addRule(f, r, mode); err != nil {
			return nil, fmt.Errorf("bpf: rule for %s (line %d): %w", r.Syscall, r.Line, err)
		}
	}
	prog, err := export(f)
	if err != nil {
		return nil, fmt.Errorf("bpf: export: %w", err)
	}
	return prog, nil
}

// setup makes the filter x86_64-only with KILL_PROCESS for every other
// architecture. libseccomp 2.5.4 also sends x32 numbers (nr >= 0x40000000,
// except -1) of an x86_64-only filter to the bad-architecture action; the
// tests check that in the generated code and against the kernel.
func setup(f *seccomp.ScmpFilter) error {
	if err := f.SetBadArchAction(seccomp.ActKillProcess); err != nil {
		return err
	}
	native, err := seccomp.GetNativeArch()
	if err != nil {
		return err
	}
	if native != seccomp.ArchAMD64 {
		if err := f.AddArch(seccomp.ArchAMD64); err != nil {
			return err
		}
		if err := f.RemoveArch(seccomp.ArchNative); err != nil {
			return err
		}
	}
	// A binary search over syscall numbers: the few calls whose rules read
	// arguments (ioctl, clone, ...) cannot use the kernel's allow cache, so they
	// should not walk a list of every refused syscall first.
	return f.SetOptimize(2)
}

func addRule(f *seccomp.ScmpFilter, r Rule, mode Mode) error {
	if r.Nr < 0 || r.Nr >= maxNr {
		return fmt.Errorf("syscall number %d out of range", r.Nr)
	}
	if r.Signals && mode != ModeNotifySignals {
		return nil // only where the supervisor confines signals: elsewhere the kernel's own checks hold
	}
	if r.Mediate && !mode.notifies() && r.Errno == 0 {
		return nil // no supervisor to ask and no errno for that case: the default, allow
	}
	if (r.Errno == 0 && !r.Mediate) || r.Errno > 4095 {
		return fmt.Errorf("errno %d out of range 1..4095", int(r.Errno))
	}
	action := seccomp.ActErrno.SetReturnCode(int16(r.Errno))
	if mode.notifies() && !r.Quiet {
		action = seccomp.ActNotify
	}
	call := seccomp.ScmpSyscall(r.Nr)
	if len(r.Conds) == 0 {
		return f.AddRuleExact(call, action)
	}
	conds := make([]seccomp.ScmpCondition, 0, len(r.Conds))
	for _, c := range r.Conds {
		sc, err := scmpCond(c)
		if err != nil {
			return err
		}
		conds = append(conds, sc)
	}
	return f.AddRuleConditionalExact(call, action, conds)
}

func scmpCond(c Cond) (seccomp.ScmpCondition, error) {
	if c.Arg < 0 || c.Arg > 5 {
		return seccomp.ScmpCondition{}, fmt.Errorf("argument index %d out of range 0..5", c.Arg)
	}
	arg := uint(c.Arg)
	switch c.Op {
	case OpEq:
		return seccomp.MakeCondition(arg, seccomp.CompareEqual, c.Value)
	case OpNe:
		return seccomp.MakeCondition(arg, seccomp.CompareNotEqual, c.Value)
	case OpLt:
		return seccomp.MakeCondition(arg, seccomp.CompareLess, c.Value)
	case OpLe:
		return seccomp.MakeCondition(arg, seccomp.CompareLessOrEqual, c.Value)
	case OpGt:
		return seccomp.MakeCondition(arg, seccomp.CompareGreater, c.Value)
	case OpGe:
		return seccomp.MakeCondition(arg, seccomp.CompareGreaterEqual, c.Value)
	case OpMaskedEq:
		// libseccomp's SCMP_CMP_MASKED_EQ takes the mask first, then the value.
		return seccomp.MakeCondition(arg, seccomp.CompareMaskedEqual, c.Mask, c.Value)
	}
	return seccomp.ScmpCondition{}, fmt.Errorf("unknown comparison %d", int(c.Op))
}

// export writes the program with seccomp_export_bpf (ExportBPFMem needs
// libseccomp 2.6) into a memfd, falling back to an unlinked temporary file.
// Not a pipe: libseccomp makes a single write(2) and does not check for a
// short one.
func export(f *seccomp.ScmpFilter) ([]byte, error) {
	file, err := scratchFile()
	if err != nil {
		return nil, err
	}
	defer file.Close()
	if err := f.ExportBPF(file); err != nil {
		return nil, err
	}
	if _, err := file.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	prog, err := io.ReadAll(file)
	if err != nil {
		return nil, err
	}
	if err := check(prog); err != nil {
		return nil, err
	}
	return prog, nil
}

func scratchFile() (*os.File, error) {
	if fd, err := unix.MemfdCreate("ronly-seccomp-bpf", unix.MFD_CLOEXEC); err == nil {
		return os.NewFile(uintptr(fd), "memfd:ronly-seccomp-bpf"), nil
	}
	file, err := os.CreateTemp("", "ronly-seccomp-*.bpf")
	if err != nil {
		return nil, err
	}
	if err := os.Remove(file.Name()); err != nil {
		file.Close()
		return nil, err
	}
	return file, nil
}

// check is a sanity check of libseccomp's output: whole instructions, within
// the kernel's limit, ending in a return.
func check(prog []byte) error {
	n := len(prog) / insnSize
	switch {
	case len(prog) == 0 || len(prog)%insnSize != 0:
		return fmt.Errorf("program of %d bytes is not a whole number of instructions", len(prog))
	case n > maxInsns:
		return fmt.Errorf("program has %d instructions, the kernel accepts %d", n, maxInsns)
	case binary.NativeEndian.Uint16(prog[len(prog)-insnSize:])&0x07 != retClass:
		return errors.New("program does not end with a return")
	}
	return nil
}
