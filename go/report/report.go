// Package report is the JSON document `ronly --report FILE` writes once a
// session ends: how it ended, what it used, what was refused and which
// layers were in effect. CI systems read it, so its schema is versioned:
// fields are only ever added within a version; a rename or a change of
// meaning bumps Version.
package report

import (
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"math/rand/v2"
	"time"
)

// Version of the schema.
const Version = 1

// NewSessionID is a new session's id, 16 random hex digits, as the report,
// the audit log, the metrics and the cgroup's name carry it. It must be
// unique, not secret (-v prints it, and it names a cgroup anyone may
// list): math/rand/v2's generator, which the runtime seeds from the
// kernel's randomness at start, gives 64 bits without a system call,
// where crypto/rand's first read sets up its state (about 0.1 ms in a
// fresh process on a 2-core VM, on every session's start).
func NewSessionID() string {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], rand.Uint64())
	return hex.EncodeToString(b[:])
}

// Report is the whole document.
type Report struct {
	Version int    `json:"version"`
	Session string `json:"session"` // as in the audit log and the cgroup's name
	// Command as given; empty for the default shell.
	Command []string  `json:"command"`
	Profile string    `json:"profile"` // "debug" or "ci"
	Start   time.Time `json:"start"`
	// Error is set when ronly could not build the sandbox: the command
	// never ran and Exit is 125.
	Error string `json:"error,omitempty"`
	Exit  Exit   `json:"exit"`
	Usage Usage  `json:"usage"`
	// Limits as set (zero: none) and the one that ended the session.
	Limits   Limits `json:"limits"`
	LimitHit string `json:"limit_hit,omitempty"` // "timeout", "cpu", "memory", "pids"
	// Refused counts refused actions by kind ("syscall", "command", "api",
	// "write") and name (a syscall, "tool subcommand", "METHOD route").
	Refused map[string]map[string]uint64 `json:"refused"`
	Layers  Layers                       `json:"layers"`
	// Timeline says when each step of the session was done, in
	// milliseconds since ronly's own code started (after the exec and the
	// Go runtime's start): where a slow start goes on a given host.
	Timeline []Mark `json:"timeline"`
	// Credentials are the Kubernetes credentials ronly found on the host;
	// absent when it found none.
	Credentials *Credentials `json:"credentials,omitempty"`
}

// Credentials are the kubeconfigs, the client keys and token files they
// name, and the service-account token directories a session found, as
// resolved on the host.
type Credentials struct {
	// Hidden read empty inside (a token directory: all but ca.crt,
	// namespace and service-ca.crt).
	Hidden []string `json:"hidden"`
	// Unhidden stayed readable: the mode had no mount namespace to cover
	// them (landlock-only), and ronly said so on stderr.
	Unhidden []string `json:"unhidden,omitempty"`
}

// Mark is one step of the session's timeline.
type Mark struct {
	Step string  `json:"step"` // e.g. "sandbox built", "command exited"
	MS   float64 `json:"ms"`
}

// Exit is how the command ended. Code is ronly's own exit status: the
// command's, or 128+Signal when a signal killed it.
type Exit struct {
	Code   int    `json:"code"`
	Signal string `json:"signal,omitempty"` // e.g. "SIGKILL"
}

// Usage is what the session consumed.
type Usage struct {
	WallSeconds float64 `json:"wall_seconds"`
	UserSeconds float64 `json:"user_seconds"`
	SysSeconds  float64 `json:"sys_seconds"`
	// MaxRSSBytes is the cgroup's peak when ronly had a memory cgroup,
	// else the largest single process's resident set.
	MaxRSSBytes uint64 `json:"max_rss_bytes"`
}

// Limits as set; 0 means none.
type Limits struct {
	TimeoutSeconds float64 `json:"timeout_seconds"`
	CPUSeconds     float64 `json:"cpu_seconds"`
	MemoryBytes    uint64  `json:"memory_bytes"`
	Pids           int     `json:"pids"`
}

// Layers are the isolation layers the session actually had.
type Layers struct {
	Mode        string `json:"mode"` // "userns", "rootless", "privileged"
	UserNS      bool   `json:"user_namespace"`
	PIDNS       bool   `json:"pid_namespace"`
	LandlockABI int    `json:"landlock_abi"` // 0: none
	Seccomp     string `json:"seccomp"`      // "notify" (counted), "errno" (refused, not counted), "none"
	Counting    bool   `json:"counting"`     // refused syscalls were counted
	// WriteCounting says whether refused writes (EROFS) were counted.
	WriteCounting bool `json:"write_counting"`
	// WriteCounter says how: "fexit", "tracepoint", "off" (the default:
	// --count-writes turns it on) or "unavailable".
	WriteCounter string `json:"write_counter,omitempty"`
	Network      string `json:"network"` // "host" or "none"
	// AbstractSockets is true when the host's abstract unix sockets were
	// reachable from inside (Landlock below ABI 6 with the host's network).
	AbstractSockets bool   `json:"abstract_sockets_reachable"`
	Cgroup          string `json:"cgroup"` // "v2", "v2+v1", "v1", "none"
	// SocketMediation is true when the supervisor decided every connect
	// and send to an address: no host unix socket outside the session's
	// writable places answered unless the policy named it.
	SocketMediation bool `json:"socket_mediation"`
	// DockerGuard is true when the host's Docker socket answered inside,
	// through the read-only guard (it runs and mediation sends to it).
	DockerGuard bool `json:"docker_guard"`
	// KubeGuard is true when the Kubernetes guard ran and mediation was
	// in force, so that kubectl inside reached it.
	KubeGuard bool `json:"kube_guard,omitempty"`
	// PIDNSRefused says why a ci session shares the host's PID namespace
	// and /proc: the kernel refused its own /proc (masked /proc paths).
	PIDNSRefused string `json:"pid_namespace_refused,omitempty"`
	// SignalMediation is true when the supervisor delivered the session's
	// signals, only to its own processes (Landlock below ABI 6 and the
	// host's PID namespace).
	SignalMediation bool `json:"signal_mediation"`
}

// Encode is r as the document: indented JSON and a newline. The caller
// writes it atomically (a reader never sees half a report).
func Encode(r *Report) ([]byte, error) {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}
