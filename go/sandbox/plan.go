package sandbox

// Adding a mount flag (a --thing PATH that mounts something inside).
//
// These are the files it touches, by role; a throwaway --scratch PATH (an
// empty 0700 tmpfs) was added following only this list, and needed exactly
// these. A flag that needs another file means the list is out of date: fix
// it in the same change.
//
//  1. The CLI struct, CLI in go/cli/cli.go: the field with its kong tags
//     and help, and the line in PolicyFor that copies it into the Policy.
//     Give a path the placeholder PATH (or DIR, FILE) and sep:"none".
//  2. The policy file (go/cli/policyfile.go): nothing. Its keys are the
//     CLI's long names, read from the kong model, and a PATH placeholder
//     makes a relative path in the file count from the file's directory.
//     A profile (go/cli/profile.go) only if the profile sets the flag.
//  3. policy.Policy (go/policy/policy.go): the field, and in Validate its
//     check (dirs: absolute, no symlinks, not /, /proc, /sys or /dev), the
//     refusal of a --rw inside a place that starts empty, and the
//     landlock-only list of what only a mount namespace gives. nonsRefuse
//     (go/sandbox/nons.go) says the same to the supervisor.
//  4. The plan (go/sandbox/plan.go, mounts): the cinit.Mount record in its
//     place in the order (tmpfs mounts, $HOME, writable binds, .git pins,
//     hidden credentials, shims: each later record lands on top of the
//     earlier ones), and its row in TestPlan (plan_test.go).
//  5. Landlock (init/ronly_init.c, restrict_fs) allows writes by mount kind:
//     MountTmpfs by path, MountBindRW by the descriptor the init opened. A
//     flag that uses these kinds needs nothing there. A new kind needs its
//     constant in init/records.h (records.go reads it from C), its case in
//     the init's mount step, its Landlock rule in restrict_fs if it is
//     writable (without one its writes fail with EACCES), and its case in
//     startNons (nons.go), which turns the records into landlock-only's.
//  6. Nothing more where the flag adds a writable place: it adds it to
//     Policy.Places (go/policy/policy.go), which the mounts above, the
//     socket mediation's own sockets (newSockets), the credentials an
//     empty tmpfs covers (coveredBy) and `ronly probe`'s expectations
//     (go/probe/runner) all read.
//  7. The README's flag table, and an end-to-end test (tests/e2e) that
//     runs the flag as root and checks the host from outside afterwards.

import (
	"fmt"

	"ronly.dev/ronly/bpf"
	"ronly.dev/ronly/go/policy"
	cinit "ronly.dev/ronly/init"
)

// Host is what the plan knows of the host. Run reads it before planning,
// so that plan itself reads nothing and its tests need no root.
type Host struct {
	// LandlockABI is the kernel's (LandlockABI()).
	LandlockABI int
	// Root: ronly runs with euid 0 (auto mode then maps every id).
	Root bool
	// RW is the identity of each p.RW, in order (policy.HostDir): what the
	// init must find at the path when it opens it again.
	RW []policy.FileID
	// Git are the pins and read-only binds that keep the repositories in
	// the writable directories safe (gitMounts).
	Git []cinit.Mount
	// Creds are the credentials hidden inside (credMounts).
	Creds []cinit.Mount
}

// Programs are the seccomp programs a plan chooses from.
type Programs struct {
	Notify, Errno []byte
}

// loadPrograms reads the precompiled programs: those the plan chooses
// from, the notify-signals one (signals.go) and the table that names
// their calls.
func loadPrograms() (prog Programs, withSignals []byte, table bpf.Table, err error) {
	if prog.Notify, err = bpf.Precompiled(bpf.ModeNotify); err != nil {
		return prog, nil, table, fmt.Errorf("seccomp program: %w", err)
	}
	if prog.Errno, err = bpf.Precompiled(bpf.ModeErrno); err != nil {
		return prog, nil, table, fmt.Errorf("seccomp program: %w", err)
	}
	if withSignals, err = bpf.Precompiled(bpf.ModeNotifySignals); err != nil {
		return prog, nil, table, fmt.Errorf("seccomp program: %w", err)
	}
	if table, err = bpf.DefaultTable(); err != nil {
		return prog, nil, table, fmt.Errorf("seccomp policy table: %w", err)
	}
	return prog, withSignals, table, nil
}

// Plan is a session's first start as planned: the init's records before
// the mode's own additions (session.start), the layers it is to get and
// what the user must be told.
type Plan struct {
	Config   cinit.Config
	Layers   Layers
	Warnings []string
}

// admit gives the layers that a policy gets on a kernel with Landlock ABI
// abi, or refuses the policy there. Run calls it before it touches
// anything on the host.
func admit(p *policy.Policy, abi int) (Layers, error) {
	l := Layers{Seccomp: "errno", Network: "host", Cgroup: "none", LandlockABI: abi}
	if p.NoNetwork {
		l.Network = "none"
	}
	if p.SkipLandlock {
		l.LandlockABI = 0
	}
	if p.LandlockMaxABI > 0 && l.LandlockABI > p.LandlockMaxABI {
		l.LandlockABI = p.LandlockMaxABI
	}
	if l.LandlockABI < p.LandlockMinABI {
		return l, &HintError{
			//lint:ignore ST1005 Landlock is a name; the line is ronly's own, printed as it is
			Err: fmt.Errorf("Landlock ABI %d on this kernel is below the floor %d: %s",
				l.LandlockABI, p.LandlockMinABI, landlockMissing(l.LandlockABI, p.LandlockMinABI)),
			Hint: fmt.Sprintf("use a newer kernel, or accept less with --landlock-min-abi=%d", l.LandlockABI),
		}
	}
	if p.SkipSeccomp {
		l.Seccomp = "none"
	}
	if p.Mode == policy.ModeLandlockOnly {
		// Landlock is all that keeps the host read-only in this mode:
		// without it the session could write whatever the files' own
		// permissions let its user write. (The probe leaves Landlock
		// out of some sandboxes on purpose, to see what else stops
		// what.)
		if l.LandlockABI == 0 && !p.SkipLandlock {
			return l, &policy.FlagError{Flag: "--mode", Value: string(p.Mode),
				Reason: "needs Landlock, the only layer that keeps the host read-only without namespaces, and this kernel has none (ABI 0)"}
		}
		if flag, why := nonsRefuse(p); flag != "" {
			return l, &policy.FlagError{Flag: "--mode", Value: string(p.Mode), Reason: "makes no namespaces, so " + flag + " cannot be had (" + why + ")"}
		}
	}
	return l, nil
}

// newPlan turns a policy and what Run read of the host into the init's
// records and the session's layers. It reads and changes nothing.
func newPlan(p *policy.Policy, h Host, prog Programs) (Plan, error) {
	l, err := admit(p, h.LandlockABI)
	if err != nil {
		return Plan{Layers: l}, err
	}
	if len(h.RW) != len(p.RW) {
		return Plan{Layers: l}, fmt.Errorf("plan: %d identities for %d --rw directories", len(h.RW), len(p.RW))
	}
	pl := Plan{Config: cinit.Config{LandlockABI: uint32(l.LandlockABI), BPF: prog.Notify, Fallback: prog.Errno, Flags: cinit.FlagSeccompNotify}}
	if p.SkipSeccomp {
		pl.Config.BPF, pl.Config.Fallback, pl.Config.Flags = nil, nil, 0
	}
	pl.Config.Mounts = mounts(p, h)
	if p.NoNetwork {
		pl.Config.Flags |= cinit.FlagNetNS
	}
	switch {
	case p.Mode == policy.ModeLandlockOnly:
		if l.LandlockABI < 6 && !p.SkipLandlock {
			pl.Warnings = append(pl.Warnings, fmt.Sprintf("Landlock ABI %d cannot scope signals and landlock-only mode has no PID namespace: signals are confined only by the supervisor", l.LandlockABI))
		}
	case p.PIDNS:
		pl.Config.Flags |= cinit.FlagPIDNS
		l.PIDNS = true
	case l.LandlockABI < 6 && !p.SkipLandlock && p.SkipSeccomp:
		// Without Landlock's signal scoping, an identity-mapped user
		// namespace does not stop kill() of host processes (the kernel
		// compares uids only). With seccomp the supervisor confines
		// them (signals.go); without it, a PID namespace with its own
		// /proc does.
		pl.Config.Flags |= cinit.FlagPIDNS
		l.PIDNS = true
		pl.Warnings = append(pl.Warnings, fmt.Sprintf("Landlock ABI %d cannot scope signals: using a private PID namespace, so ps shows only this session's processes", l.LandlockABI))
	}
	switch {
	case p.Mode == policy.ModePrivileged:
		l.Mode = "privileged"
	case p.Mode == policy.ModeLandlockOnly:
		l.Mode = LandlockOnly
	case p.Mode == policy.ModeUserNS, p.Mode == policy.ModeAuto && h.Root:
		l.Mode = "userns"
	default:
		l.Mode = "rootless"
	}
	pl.Layers = l
	return pl, nil
}

// mounts are the init's mount records, in the order the init makes them:
// each later one lands on top of the earlier ones.
func mounts(p *policy.Policy, h Host) []cinit.Mount {
	// The init binds a --rw directory only if it is still the one
	// hostDirs read (newPlan checked there is one per --rw; Places may
	// order them otherwise).
	ids := make(map[string]policy.FileID, len(p.RW))
	for i, rw := range p.RW {
		ids[rw] = h.RW[i]
	}
	var ms []cinit.Mount
	for _, pl := range p.Places() {
		if pl.Fresh {
			ms = append(ms, cinit.Mount{Kind: cinit.MountTmpfs, Path: pl.Path, Size: p.TmpfsSize, Mode: pl.Mode})
		} else {
			ms = append(ms, cinit.Mount{Kind: cinit.MountBindRW, Path: pl.Path, Dev: ids[pl.Path].Dev, Ino: ids[pl.Path].Ino})
		}
	}
	// After every writable bind: the repositories' hooks and config in
	// them stay read-only (gitprotect.go).
	ms = append(ms, h.Git...)
	// After the writable binds and .git: kubeconfigs, the keys and tokens
	// they name and service-account token volumes read empty (creds.go).
	ms = append(ms, h.Creds...)
	if !p.NoShims {
		for _, tool := range p.ShimTools {
			ms = append(ms, cinit.Mount{Kind: cinit.MountShim, Path: "/" + tool})
		}
	}
	return ms
}

// hostDirs reads the identity of each --rw directory (policy.HostDir).
func hostDirs(rw []string) ([]policy.FileID, error) {
	ids := make([]policy.FileID, 0, len(rw))
	for _, d := range rw {
		id, err := policy.HostDir(d)
		if err != nil {
			return nil, &policy.FlagError{Flag: "--rw", Value: d, Reason: err.Error()}
		}
		ids = append(ids, id)
	}
	return ids, nil
}
