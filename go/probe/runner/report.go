package runner

import (
	"fmt"
	"os"

	"ronly.dev/ronly/go/kernelver"
	"ronly.dev/ronly/go/policy"
	"ronly.dev/ronly/go/probe"
	"ronly.dev/ronly/go/sandbox"
)

// report puts the results together.
func (pr *Prober) report() *probe.Report {
	rep := &probe.Report{
		Version: probe.ReportVersion, Ronly: pr.opts.Version, Kernel: kernelver.Release(),
		LandlockABI: sandbox.LandlockABI(), UID: os.Geteuid(),
		Configurations: []probe.Configuration{}, Operations: []probe.Operation{},
	}
	names := make([]string, len(pr.configs))
	for i, cfg := range pr.configs {
		names[i] = cfg.name
		l := cfg.layers
		rep.Configurations = append(rep.Configurations, probe.Configuration{
			Name: cfg.name, Description: pr.describe(i), Mode: l.Mode, UserNS: l.UserNS, PIDNS: l.PIDNS,
			LandlockABI: l.LandlockABI, Seccomp: l.Seccomp, Network: l.Network, Runs: cfg.runs,
			HostChanges: append([]string{}, cfg.changes...), RefusedCounts: cfg.blocked, Warnings: cfg.warnings,
		})
	}
	rep.Notes = pr.notes()
	for i, op := range pr.ops {
		rs := make([]probe.Result, len(pr.configs))
		for j, cfg := range pr.configs {
			rs[j] = cfg.results[i]
		}
		rep.Operations = append(rep.Operations, probe.NewOperation(op, rs, names))
	}
	fullChanged := len(pr.configs[len(pr.configs)-1].changes) > 0
	rep.Summary = probe.Summarize(rep.Operations, fullChanged)
	rep.OK = rep.Summary.Good()
	return rep
}

// describe says what configuration i has, from what its sandbox reported.
func (pr *Prober) describe(i int) string {
	cfg := pr.configs[i]
	l := cfg.layers
	switch cfg.name {
	case "mount+caps", "mount+caps+userns":
		d := "mount, IPC and UTS namespaces; a read-only root, a private /dev, /tmp and /dev/shm; " +
			"every capability dropped (root keeps CAP_DAC_READ_SEARCH), no_new_privs; stdio are pipes the supervisor relays; "
		if l.UserNS {
			d += "a user namespace mapping only your own ids; "
		} else {
			d += "no user namespace (real root); "
		}
		if l.PIDNS {
			d += "a private PID namespace; "
		}
		return d + "no Landlock, no seccomp; and whatever the host enforces anyway (permissions, Yama, sysctls)"
	case "caps+landlock":
		d := fmt.Sprintf("landlock-only mode: no namespaces, the host's own tree and /dev; every capability dropped (root keeps CAP_DAC_READ_SEARCH if it has it), no_new_privs; "+
			"stdio are pipes the supervisor relays; Landlock ABI %d: writes only in the session's scratch directory ($TMPDIR) and --rw", l.LandlockABI)
		if l.LandlockABI >= 6 {
			d += ", signals and abstract unix sockets scoped to the sandbox"
		}
		return d + "; no seccomp"
	case "userns":
		if !l.UserNS {
			return "+ a user namespace: REFUSED on this host, so it ran without one"
		}
		return "+ a user namespace (" + l.Mode + ": ids mapped to themselves)"
	case "landlock":
		d := fmt.Sprintf("+ Landlock ABI %d: writes only in the scratch space and --rw", l.LandlockABI)
		if l.LandlockABI >= 6 {
			d += ", signals and abstract unix sockets scoped to the sandbox"
		}
		if l.PIDNS && i > 0 && !pr.configs[i-1].layers.PIDNS {
			d += "; below ABI 6, a private PID namespace confines signals instead"
		}
		return d
	case "seccomp":
		d := "+ the seccomp filter (" + l.Seccomp + "): the full default sandbox"
		if l.SocketMediation {
			d += "; the supervisor decides every connect and send to an address (host unix sockets refused)"
		}
		if l.SignalMediation {
			d += "; below Landlock ABI 6, in the host's PID namespace, the supervisor delivers every signal, only to the session's processes"
		}
		return d
	}
	return ""
}

func (pr *Prober) notes() []string {
	var out []string
	first := pr.configs[0]
	switch {
	case !pr.root:
		out = append(out, "not root: no sandbox can go without a user namespace, so the mount and user namespace layers cannot be told apart: "+
			"what either refuses is under "+first.name)
	case first.policy.Mode == policy.ModeRootless:
		out = append(out, "--rootless: every configuration has a user namespace mapping only your own ids, so the mount and user namespace layers "+
			"cannot be told apart: what either refuses is under "+first.name)
	case first.policy.Mode == policy.ModePrivileged && pr.configs[1].name != "userns":
		out = append(out, "--privileged: no configuration has a user namespace")
	}
	for _, cfg := range pr.configs {
		if cfg.name == "userns" && !cfg.layers.UserNS {
			out = append(out, "user namespaces are refused on this host: the userns configuration ran without one, like mount+caps")
		}
	}
	if pr.left != "" {
		out = append(out, pr.left)
	}
	out = append(out, first.name+" includes what the host enforces anyway: file permissions, Yama's ptrace scope, sysctls; "+
		"an operation it refuses may be refused by the kernel's own rules, not by ronly")
	return out
}
