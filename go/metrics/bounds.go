package metrics

import (
	"regexp"
	"sort"
	"strings"
	"sync"
)

// Per-report bounds. The supervisor already bounds what a session can
// report (go/sandbox: only its own shims, at most 16 command labels), but a
// report may reach the exporter another way (a hand-made spool file, a
// local client of the socket): so one report never takes more than these
// label values of a family, and one session cannot use up MaxLabelValues
// for every other. What is over the bound is still counted, under "other".
const (
	maxReportSyscalls = 64 // the policy refuses about 130 calls; a session meets a few
	maxReportWrites   = 16 // 12 operations
	maxReportCommands = 32 // a session's shims send at most 16 + one "other" per tool
	maxReportAPICalls = 32 // a session's refused Engine API routes and Kubernetes verbs and resources
)

var (
	// toolRE is a shim's name, as a rule file's name allows it.
	// Compiled when first used (the exporter, a session's end), not
	// when the package starts: each bounded repetition unrolls into a
	// large program, a cost every session's start paid.
	toolRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$`) })
	// subcommandRE is a verb, or a management command and its verb.
	subcommandRE = sync.OnceValue(func() *regexp.Regexp {
		return regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,30}( [a-z0-9][a-z0-9-]{0,30})?$`)
	})
)

// boundReport returns r with each family's counts cut to its bound and
// command labels that are not a tool and a subcommand made "other".
func boundReport(r Report) Report {
	cmds := make(map[string]uint64, len(r.BlockedCommands))
	for k, n := range r.BlockedCommands {
		tool, sub, _ := strings.Cut(k, " ")
		switch {
		case !toolRE().MatchString(tool):
			tool, sub = other, other
		case sub == "":
			cmds[tool] += n // splitPair's "none"
			continue
		case !subcommandRE().MatchString(sub):
			sub = other
		}
		cmds[tool+" "+sub] += n
	}
	r.BlockedSyscalls = bound(r.BlockedSyscalls, maxReportSyscalls, other)
	r.BlockedWrites = bound(r.BlockedWrites, maxReportWrites, other)
	r.BlockedCommands = bound(cmds, maxReportCommands, other+" "+other)
	r.BlockedAPICalls = bound(r.BlockedAPICalls, maxReportAPICalls, other+" "+other)
	return r
}

// bound keeps the max keys of m with the largest counts (ties by name)
// and adds the rest under rest.
func bound(m map[string]uint64, max int, rest string) map[string]uint64 {
	if len(m) <= max {
		return m
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if m[keys[i]] != m[keys[j]] {
			return m[keys[i]] > m[keys[j]]
		}
		return keys[i] < keys[j]
	})
	out := make(map[string]uint64, max+1)
	for i, k := range keys {
		if i < max-1 {
			out[k] += m[k]
		} else {
			out[rest] += m[k]
		}
	}
	return out
}
