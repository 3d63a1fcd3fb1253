package probe

import "slices"

// `ronly probe` runs the battery in cumulative sandboxes, each adding one
// isolation layer to the one before (mount namespace and dropped
// capabilities, then a user namespace, then Landlock, then seccomp), and
// attributes each refusal to the layer from which on the operation is
// refused. This file holds that attribution and the JSON document the
// command prints with --json.

// ReportVersion is the version of Report's JSON. It changes when a field
// changes meaning or goes away; new fields may appear without a change.
const ReportVersion = 1

// Outcome is what one operation did in one configuration.
type Outcome string

// Outcomes.
const (
	// Refused: a hostile operation failed with an errno a wall gives: one
	// of those the full sandbox answers it with (Op.Want), or EPERM,
	// EACCES, EROFS or ESRCH, which capabilities, namespaces, read-only
	// mounts, Landlock and seccomp answer in a partial one.
	Refused Outcome = "refused"
	// Through: the operation went through. For a hostile one, nothing in
	// this configuration stopped it.
	Through Outcome = "through"
	// OtherErrno: a hostile operation failed with an errno no wall gives:
	// the sandbox let it through and the kernel rejected the deliberately
	// invalid argument (EINVAL, EBADF...) it was made with.
	OtherErrno Outcome = "other-errno"
	// OK and Failed: an everyday operation succeeded, or did not.
	OK     Outcome = "ok"
	Failed Outcome = "failed"
	// Skipped: the operation does not apply on this machine.
	Skipped Outcome = "skipped"
	// Error: the operation failed without an errno; the probe cannot tell
	// what stopped it.
	Error Outcome = "error"
	// Missing: no result (this configuration did not run it).
	Missing Outcome = "missing"
)

// OutcomeOf classifies a result.
func OutcomeOf(r Result) Outcome {
	switch {
	case r.Name == "":
		return Missing
	case r.Skipped != "":
		return Skipped
	case r.Succeeded() && r.Kind == Hostile:
		return Through
	case r.Succeeded():
		return OK
	case r.Kind == Everyday:
		return Failed
	case r.Errno == "":
		return Error
	case slices.Contains(r.Want, r.Errno) || slices.Contains(wallErrnos, r.Errno):
		return Refused
	}
	return OtherErrno
}

// wallErrnos are what the sandbox's walls answer, whatever the operation.
// ESRCH too: RunStream runs nothing once the canary process is gone, so
// that a process it cannot find is one the sandbox hides.
var wallErrnos = []string{"EPERM", "EACCES", "EROFS", "ESRCH"}

// Attribution values of Operation.BlockedBy besides a layer's name.
const (
	BlockedByNone    = "NONE"    // a hostile operation no layer refused
	BlockedByNA      = "n/a"     // skipped in the full sandbox: does not apply here
	BlockedByUnknown = "unknown" // failed in the full sandbox without an errno
)

// Attribute names the layer that blocks an operation, from its outcomes in
// the cumulative configurations (outcomes[i] in the one that adds
// layers[i]; the last is the full sandbox).
//
// A hostile operation is blocked by the first layer from which on it is
// refused in every configuration up to the full one: refused in the full
// sandbox and in the two before it, but not in the first, means the
// second layer. Not refused in the full sandbox: NONE. An everyday
// operation that succeeds in the full sandbox gets ""; one that fails
// gets, in the same way, the layer from which on it fails.
func Attribute(kind Kind, outcomes []Outcome, layers []string) string {
	n := len(outcomes)
	if n == 0 || n != len(layers) {
		return BlockedByUnknown
	}
	stopped := func(o Outcome) bool { return o == Refused }
	switch full := outcomes[n-1]; {
	case full == Skipped:
		return BlockedByNA
	case kind == Everyday && full == OK:
		return ""
	case kind == Everyday:
		stopped = func(o Outcome) bool { return o == Failed || o == Error }
	case full == Error || full == Missing:
		return BlockedByUnknown
	case full != Refused:
		return BlockedByNone
	}
	i := n - 1
	for i > 0 && stopped(outcomes[i-1]) {
		i--
	}
	return layers[i]
}

// Report is the JSON document `ronly probe --json` prints.
type Report struct {
	Version     int    `json:"version"`       // ReportVersion
	Ronly       string `json:"ronly_version"` // the version of ronly that probed
	Kernel      string `json:"kernel"`        // uname -r
	LandlockABI int    `json:"landlock_abi"`  // the kernel's Landlock ABI (0: none)
	UID         int    `json:"uid"`           // the user ronly ran as
	// Notes say what limits the attribution on this machine (for example,
	// that a user who is not root cannot run without a user namespace).
	Notes []string `json:"notes,omitempty"`
	// Configurations are the cumulative sandboxes, in order: each adds
	// the layer it is named after; the last is the full sandbox.
	Configurations []Configuration `json:"configurations"`
	// Operations are the battery's, in the order it runs them.
	Operations []Operation `json:"operations"`
	Summary    Summary     `json:"summary"`
	// OK: every hostile operation refused and every everyday one
	// succeeded (or did not apply) in the full sandbox, and the host
	// unchanged by it. `ronly probe` then exits 0.
	OK bool `json:"ok"`
}

// Configuration is one cumulative sandbox.
type Configuration struct {
	// Name is the layer this configuration adds ("mount+caps", "userns",
	// "landlock", "seccomp"; "mount+caps+userns" when the first one
	// cannot go without a user namespace). Operation.BlockedBy uses it.
	Name        string `json:"name"`
	Description string `json:"description"`
	// What the sandbox reported it had.
	Mode        string `json:"mode"` // "privileged", "userns" or "rootless"
	UserNS      bool   `json:"userns"`
	PIDNS       bool   `json:"pidns"`
	LandlockABI int    `json:"landlock_abi"`
	Seccomp     string `json:"seccomp"` // "none", "notify" or "errno"
	Network     string `json:"network"`
	// Runs is how many sandbox sessions it took: an operation that a
	// partial sandbox lets change the canaries (kill the canary process)
	// ends a session, and the rest run in a fresh one with fresh canaries.
	Runs int `json:"runs"`
	// HostChanges are the changes to the canaries seen from outside after
	// this configuration's sessions. Expected in a partial sandbox for
	// what its missing layers stop; in the full one, each is a breach.
	HostChanges []string `json:"host_changes"`
	// RefusedCounts are the supervisor's counts of refused actions by kind
	// ("syscall": the seccomp filter) and name.
	RefusedCounts map[string]map[string]uint64 `json:"refused_counts,omitempty"`
	Warnings      []string                     `json:"warnings,omitempty"`
}

// Operation is one operation of the battery across the configurations.
type Operation struct {
	Name string `json:"name"`
	Kind Kind   `json:"kind"` // "hostile" or "everyday"
	// Result and Errno are the outcome in the full sandbox.
	Result Outcome `json:"result"`
	Errno  string  `json:"errno,omitempty"`
	// Want are the errnos a wall refuses this hostile operation with.
	Want []string `json:"want,omitempty"`
	// BlockedBy is, for a hostile operation, the configuration name of
	// the layer that blocks it (see Attribute), NONE when none does, n/a
	// when it does not apply here, unknown when the probe cannot tell.
	// For an everyday operation: "" when it works, else the layer that
	// breaks it.
	BlockedBy string `json:"blocked_by"`
	// ArgumentRejectedIn lists the configurations in which the kernel
	// answered the operation's deliberately invalid argument itself
	// (EINVAL, EBADF, ENOENT; ENOSYS: it lacks the call) rather than a
	// layer refusing it: they say nothing about their layers, and
	// BlockedBy is the latest layer that blocks the operation, an earlier
	// one may block a real attempt too.
	ArgumentRejectedIn []string `json:"argument_rejected_in,omitempty"`
	// ResultsByConfig has the result in each configuration, by name.
	ResultsByConfig map[string]ConfigResult `json:"results_by_config"`
}

// ConfigResult is an operation's result in one configuration.
type ConfigResult struct {
	Outcome Outcome `json:"outcome"`
	Errno   string  `json:"errno,omitempty"`
	Error   string  `json:"error,omitempty"`
	Skipped string  `json:"skipped,omitempty"`
	Detail  string  `json:"detail,omitempty"`
}

// Summary counts the operations.
type Summary struct {
	// BlockedByLayer counts hostile operations by BlockedBy (layers, NONE,
	// n/a, unknown).
	BlockedByLayer  map[string]int `json:"blocked_by_layer"`
	Hostile         int            `json:"hostile"`
	HostileRefused  int            `json:"hostile_refused"`
	Everyday        int            `json:"everyday"`
	EverydayOK      int            `json:"everyday_ok"`
	EverydayFailed  int            `json:"everyday_failed"`
	EverydaySkipped int            `json:"everyday_skipped"`
	// HostChanged: the full sandbox let the canaries change.
	HostChanged bool `json:"host_changed"`
}

// NewOperation builds an operation's entry from its results, one per
// configuration (a zero Result where a configuration has none).
func NewOperation(op Op, results []Result, layers []string) Operation {
	o := Operation{Name: op.Name, Kind: op.Kind, ResultsByConfig: map[string]ConfigResult{}}
	for _, w := range op.Want {
		o.Want = append(o.Want, ErrnoName(w))
	}
	outcomes := make([]Outcome, len(results))
	absent := op.Kind == Hostile && kernelLacks(results)
	for i, r := range results {
		outcomes[i] = OutcomeOf(r)
		if absent {
			outcomes[i], r.Skipped = Skipped, NoSuchCall
		}
		if i < len(layers) {
			o.ResultsByConfig[layers[i]] = ConfigResult{Outcome: outcomes[i], Errno: r.Errno, Error: r.Error, Skipped: r.Skipped, Detail: r.Detail}
			if outcomes[i] == OtherErrno && op.Kind == Hostile {
				o.ArgumentRejectedIn = append(o.ArgumentRejectedIn, layers[i])
			}
		}
	}
	if n := len(results); n > 0 {
		o.Result, o.Errno = outcomes[n-1], results[n-1].Errno
	}
	o.BlockedBy = Attribute(op.Kind, outcomes, layers)
	return o
}

// NoSuchCall is the reason a hostile operation is not applicable when the
// kernel does not have its system call.
const NoSuchCall = "the kernel does not have this system call (ENOSYS in every configuration)"

// kernelLacks says whether every configuration answered ENOSYS: the first
// one has no seccomp filter of ronly's, so ENOSYS there comes from the
// kernel (fchmodat2 before 6.6) or from a filter outside ronly, and the
// call cannot run here at all. An ENOSYS that only the seccomp layer gives
// (clone3, openat2) is a refusal, judged by the operation's Want.
func kernelLacks(results []Result) bool {
	for _, r := range results {
		if r.Errno != "ENOSYS" {
			return false
		}
	}
	return len(results) > 0
}

// Summarize counts ops into a Summary; hostChanged is whether the full
// sandbox let the canaries change.
func Summarize(ops []Operation, hostChanged bool) Summary {
	s := Summary{BlockedByLayer: map[string]int{}, HostChanged: hostChanged}
	for _, o := range ops {
		if o.Kind == Hostile {
			s.Hostile++
			s.BlockedByLayer[o.BlockedBy]++
			if o.Result == Refused {
				s.HostileRefused++
			}
			continue
		}
		s.Everyday++
		switch o.Result {
		case OK:
			s.EverydayOK++
		case Skipped:
			s.EverydaySkipped++
		default:
			s.EverydayFailed++
		}
	}
	return s
}

// Good says whether a Summary is a clean bill: every hostile operation
// refused or not applicable, every everyday one working or not
// applicable, the host unchanged.
func (s Summary) Good() bool {
	return s.HostileRefused+s.BlockedByLayer[BlockedByNA] == s.Hostile && s.EverydayFailed == 0 && !s.HostChanged
}
