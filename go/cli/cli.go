// Package cli is ronly's command line as data: the kong grammar of the
// sandbox flags (CLI), the policy they build (CLI.PolicyFor, with the
// profiles), the --policy file, which is the same flags in TOML, and the
// files the flags name for a session's records (Outputs). It prints no
// message and exits nowhere: go/cmd/ronly owns the commands, what they
// print and the exit codes.
package cli

import (
	"path/filepath"
	"strings"
	"time"

	"github.com/alecthomas/kong"

	"ronly.dev/ronly/go/policy"
	"ronly.dev/ronly/shims"
)

// description is the text `ronly --help` shows after the usage line.
const description = `Synopsis:

    ronly [OPTIONS] [COMMAND...]
    ronly probe [OPTIONS] [--json]
    ronly sweep [OPTIONS]

Run COMMAND (default: $SHELL, else /bin/bash) in a read-only sandbox.

Everything on the host stays readable: files, logs, ps and top, /proc.
Nothing outside the scratch space can be changed: every mount is read-only
(recursively, and root inside cannot make it writable again), host processes
cannot be signalled or traced, no host unix socket (docker, containerd,
D-Bus) accepts a connection, and a seccomp filter refuses the kernel's
dangerous calls; the supervisor counts each refusal.

Writable inside: a fresh tmpfs on /tmp, each --writable PATH (an empty
tmpfs), each --rw PATH (the host's directory, so changes persist there),
and a private /dev/shm. The exit status is the command's, 128+N if signal N
killed it, 125 if ronly failed, 126 if the command cannot run, 127 if it was
not found.

Examples:
  ronly                              an interactive read-only shell
  ronly ps aux                       host processes, seen from inside
  ronly --rw "$PWD" make test        a build that may write only here
  ronly --profile ci --timeout 30m -- make test
                                     a CI job: workspace writable, own PID
                                     namespace, empty HOME, clean environment
  ronly --policy job.toml -- make    the same flags, from a TOML file
  ronly probe                        which layer stops what, on this kernel
  ronly --no-network -- probe        run a program named like a subcommand`

// CLI is ronly's flags. They are global, ahead of the commands, so that
// `ronly --help` shows them first, as the man page of the default command.
// The commands (run, probe) are go/cmd/ronly's, in a struct that embeds
// CLI: kong flattens it, and the commands' Run methods take *CLI.
//
// Adding a flag: the checklist at the top of go/sandbox/plan.go names every
// file a mount flag touches, and the traps among them.
type CLI struct {
	Version kong.VersionFlag `help:"Print the version and exit."`

	TmpfsSize      string   `name:"tmpfs-size" default:"${default_tmpfs_size}" placeholder:"SIZE" help:"Size of the scratch tmpfs on /tmp (k, M, G suffixes; default ${default_tmpfs_size})."`
	Writable       []string `placeholder:"PATH" sep:"none" help:"Mount an empty writable tmpfs at PATH, an existing directory (repeatable)."`
	RW             []string `name:"rw" placeholder:"PATH" sep:"none" help:"Bind the host directory PATH writable: the only way a change persists (repeatable)."`
	ExtraShims     []string `name:"extra-shims" placeholder:"DIR" sep:"none" help:"Put DIR's executables first on PATH inside, e.g. shims that shadow a tool (repeatable)."`
	AllowSocket    []string `name:"allow-socket" placeholder:"PATH" sep:"none" help:"Let the session connect to the host's unix socket PATH (repeatable); every other socket outside its writable places is refused."`
	KubeConfig     []string `name:"kube-config" placeholder:"PATH" sep:"none" help:"Hide the kubeconfig PATH inside, and the client keys and token files it names (repeatable); $KUBECONFIG, ~/.kube/config, /etc/kubernetes/*.conf, /var/lib/kubelet/kubeconfig and service-account tokens are hidden anyway."`
	NoShims        bool     `name:"no-shims" help:"Do not put any shims on PATH."`
	NoNetwork      bool     `name:"no-network" help:"Give the sandbox its own network namespace with only loopback."`
	AllowMetadata  bool     `name:"allow-metadata" help:"Let the sandbox reach the cloud instance metadata service (169.254.169.254, fd00:ec2::254 and the like), whose answers include the instance's credentials; refused by default."`
	Mode           string   `name:"mode" xor:"mode" placeholder:"NAME" help:"How the sandbox is built (default: the strongest that works here, named on stderr when it is not the first): userns (a user namespace mapping every id, and a read-only copy of the host's mounts; root), rootless (the same, mapping only your own ids), privileged (no user namespace: root with capabilities dropped), landlock-only (no namespaces at all, where none can be made: Landlock keeps the host read-only, scratch in a directory of the session's)."`
	Rootless       bool     `xor:"mode" help:"Same as --mode rootless."`
	Privileged     bool     `xor:"mode" help:"Same as --mode privileged (needs root)."`
	LandlockMinABI int      `name:"landlock-min-abi" default:"1" placeholder:"N" help:"Refuse to start if the kernel's Landlock ABI is below N (default 1; 0 accepts no Landlock at all)."`
	LandlockMaxABI int      `name:"landlock-max-abi" default:"0" placeholder:"N" help:"Use at most Landlock ABI N (0: the kernel's best), to pin behaviour across a fleet or try an older kernel's fallbacks."`
	Verbose        bool     `short:"v" help:"Say which isolation layers are in effect."`

	Profile         string        `enum:"debug,ci" default:"debug" placeholder:"NAME" help:"debug: the host's processes and /proc, your environment (the default); ci: the workspace writable, a private PID namespace and /proc, an empty HOME, a clean environment."`
	Workspace       string        `placeholder:"DIR" help:"The ci profile's writable workspace (default: the current directory)."`
	Timeout         time.Duration `placeholder:"DURATION" help:"Kill the session and everything it started after DURATION of wall-clock time (e.g. 90s, 30m)."`
	CPUTime         time.Duration `name:"cpu-time" placeholder:"DURATION" help:"Kill the session once its processes together used DURATION of CPU time."`
	Memory          string        `placeholder:"SIZE" help:"Kill the session when its processes together need more than SIZE of memory (k, M, G)."`
	Pids            int           `placeholder:"N" help:"At most N processes and threads at once; the session is killed when it hits the limit."`
	Clearenv        bool          `help:"Start the command with an empty environment (plus --keepenv and --setenv)."`
	Setenv          []string      `placeholder:"NAME=VALUE" sep:"none" help:"Set NAME to VALUE in the command's environment (repeatable)."`
	Keepenv         []string      `placeholder:"NAME" sep:"none" help:"Keep NAME from ronly's environment when it is cleared (repeatable)."`
	Report          string        `placeholder:"FILE" help:"Write a JSON report of the session to FILE ('-' for stderr): exit, times, memory, limits hit, refusals, layers."`
	AuditLog        string        `name:"audit-log" placeholder:"FILE" help:"Append one JSON line per refused action to FILE ('-' for stderr)."`
	MetricsSocket   string        `name:"metrics-socket" default:"/run/ronly/exporter.sock" placeholder:"PATH" help:"Report this session's counts to ronly-exporter listening on PATH (skipped when no exporter runs and no spool exists)."`
	MetricsSpool    string        `name:"metrics-spool" default:"/var/lib/ronly/spool" placeholder:"DIR" help:"Where this session's counts wait while the exporter is down: the exporter's --spool (default ${default})."`
	MetricsTextfile string        `name:"metrics-textfile" placeholder:"PATH" help:"Merge this session's counts into PATH, a node_exporter textfile, instead of the exporter."`
	NoMetrics       bool          `name:"no-metrics" help:"Report no metrics for this session."`
	CountWrites     bool          `name:"count-writes" xor:"writes" help:"Count refused writes (EROFS) by operation, for the report, metrics and audit log. Off by default: where the kernel has BPF trampolines, eBPF programs on the write-class syscalls count them (other syscalls pay nothing); elsewhere one on the sys_exit tracepoint, which adds about 75-230 ns to every syscall on the whole host while the session runs."`
	NoWriteCounting bool          `name:"no-write-counting" xor:"writes" help:"Do not count refused writes (the default; kept for scripts that said so)."`
	KubeHideSecrets bool          `name:"kube-hide-secrets" help:"Through the read-only Kubernetes API inside, answer reads of secrets (get, list, watch) with every value of their data and stringData empty (the keys kept), also in the copy kubectl apply leaves in an annotation."`
	Policy          string        `name:"policy" placeholder:"FILE" help:"Read flags from FILE: TOML keyed by the long flag names (no-network = true, rw = [\"/work\"]); flags given here win."`
}

// PolicyFor turns the flags into a validated Policy that runs command.
func (c *CLI) PolicyFor(command []string) (*policy.Policy, error) {
	size, err := policy.ParseSize(c.TmpfsSize)
	if err != nil {
		return nil, &policy.FlagError{Flag: "--tmpfs-size", Value: c.TmpfsSize, Reason: err.Error()}
	}
	if len(command) > 0 && command[0] == "--" {
		command = command[1:]
	}
	p := &policy.Policy{
		Command: command, TmpfsSize: size, Writable: c.Writable, RW: c.RW,
		ExtraShims: c.ExtraShims, AllowSocket: c.AllowSocket, NoShims: c.NoShims, NoNetwork: c.NoNetwork, AllowMetadata: c.AllowMetadata,
		KubeConfig: absPaths(c.KubeConfig), KubeHideSecrets: c.KubeHideSecrets, NoWriteCounting: c.NoWriteCounting, CountWrites: c.CountWrites,
		Mode: policy.ModeAuto, LandlockMinABI: c.LandlockMinABI, LandlockMaxABI: c.LandlockMaxABI, Verbose: c.Verbose,
	}
	switch {
	case c.Privileged:
		p.Mode = policy.ModePrivileged
	case c.Rootless:
		p.Mode = policy.ModeRootless
	case c.Mode != "":
		p.Mode = policy.Mode(c.Mode)
	}
	for _, s := range c.ExtraShims {
		if strings.Contains(s, ":") {
			return nil, &policy.FlagError{Flag: "--extra-shims", Value: s, Reason: "a directory on PATH cannot contain ':'"}
		}
	}
	if err := c.applyProfile(p); err != nil {
		return nil, err
	}
	if err := p.Validate(); err != nil {
		return nil, err
	}
	if !p.NoShims {
		// Every rule file is read now, so a mistake in one is a clear
		// error before anything starts, not a broken tool inside.
		set, err := shims.Load(p.ExtraShims)
		if err != nil {
			return nil, &policy.FlagError{Flag: "--extra-shims", Value: strings.Join(p.ExtraShims, ","), Reason: err.Error()}
		}
		p.ShimTools = set.Tools()
	}
	return p, nil
}

// absPaths makes relative paths absolute, from the current directory.
func absPaths(paths []string) []string {
	var out []string
	for _, p := range paths {
		if abs, err := filepath.Abs(p); err == nil && p != "" {
			p = abs
		}
		out = append(out, p)
	}
	return out
}
