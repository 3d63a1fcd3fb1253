package metrics

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// The metric set: the one place that names ronly's metrics. The exporter
// and the textfile writer both expose a Set with WriteText, so the two
// cannot drift, and the golden files in testdata catch a rename; promtool
// and a real Prometheus read them in the tests. The format is written and
// read here rather than with client_golang: that library, its protobuf and
// procfs cost every session's start several milliseconds of package init
// in this one binary, for a format of a few lines.

type kind int

const (
	counter kind = iota
	gauge
	histogram
)

// family is one metric name with its help text and label names.
type family struct {
	name   string
	kind   kind
	labels []string
	help   string
}

func newFamily(name, help string, k kind, labels ...string) *family {
	return &family{name: name, kind: k, labels: labels, help: help}
}

var (
	blockedSyscalls = newFamily("ronly_blocked_syscalls_total",
		"Syscalls the seccomp filter refused inside ronly sessions, by syscall name.", counter, "syscall")
	blockedWrites = newFamily("ronly_blocked_writes_total",
		"Writes to the read-only host refused inside ronly sessions, by operation.", counter, "operation")
	blockedCommands = newFamily("ronly_blocked_commands_total",
		"Commands a shim refused inside ronly sessions, by tool and subcommand.", counter, "tool", "subcommand")
	blockedAPICalls = newFamily("ronly_blocked_api_calls_total",
		"API calls a guard refused inside ronly sessions, by API (docker, kubernetes), verb (the HTTP method for Docker, Kubernetes' verb) and resource (the Engine API route, the Kubernetes resource).", counter, "api", "verb", "resource")
	sessions = newFamily("ronly_sessions_total",
		"ronly sessions ended, by result: ok; failed when ronly could not build the sandbox; lost when the supervisor died before it could report (SIGKILL, the OOM killer) and a sweep found the session's cgroup.", counter, "result")
	sessionDuration = newFamily("ronly_session_duration_seconds",
		"Wall-clock duration of ronly sessions.", histogram)
	landlockABI = newFamily("ronly_landlock_abi",
		"Landlock ABI version the most recent ronly session used (0: none).", gauge)
	seccompCounting = newFamily("ronly_seccomp_counting",
		"1 if the most recent ronly session counted refused syscalls through a seccomp listener, 0 if it fell back to plain errno and did not count.", gauge)
	writeCounting = newFamily("ronly_write_counting",
		"1 if the most recent ronly session counted refused writes (eBPF at syscall exit), 0 if it could not (not root, no cgroup v2).", gauge)
	socketMediation = newFamily("ronly_socket_mediation",
		"1 if the most recent ronly session mediated connects and sends to addresses (host unix sockets refused), 0 if it could not (a nested sandbox: no seccomp listener).", gauge)
	auditLinesDropped = newFamily("ronly_audit_lines_dropped_total",
		"Audit lines of ronly sessions that the per-session rate limit left out of --audit-log (the refusals are still counted).", counter)
	reportsReceived = newFamily("ronly_reports_received_total",
		"Session reports the exporter ingested, by how they arrived: socket or spool.", counter, "via")
	reportsDropped = newFamily("ronly_reports_dropped_total",
		"Session reports lost because the spool was full while the exporter was unreachable.", counter)
	reportsMalformed = newFamily("ronly_reports_malformed_total",
		"Session reports the exporter could not parse or validate, and ignored.", counter)
	shimReportsMalformed = newFamily("ronly_shim_reports_malformed_total",
		"Lines on ronly sessions' shim report pipes that were dropped: not a command refusal by one of the session's shims (a forged syscall, write or api count, an unknown tool), not JSON, or longer than 1 KiB.", counter)
)

// families are all of them. (The exposition is sorted by name, then by
// label values, as client_golang's registry sorts it.)
var families = []*family{
	blockedSyscalls, blockedWrites, blockedCommands, blockedAPICalls,
	sessions, sessionDuration, landlockABI, seccompCounting, writeCounting, socketMediation,
	reportsReceived, reportsDropped, reportsMalformed, shimReportsMalformed, auditLinesDropped,
}

// durationBuckets are the upper bounds of ronly_session_duration_seconds:
// an agent's session runs from a fraction of a second (one command) to
// hours (an interactive shell).
var durationBuckets = []float64{0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600, 14400}

const (
	// MaxLabelValues bounds the distinct values of each label of each
	// family; later values are counted under "other".
	MaxLabelValues = 200
	// maxLabelLen bounds one label value; longer ones are "other".
	maxLabelLen = 128
	other       = "other"
)

// Set is an aggregate of session reports: the counters, histogram and gauges
// of the metric set, which it writes in the text exposition format. Its
// zero value is not usable; use NewSet. A Set is not safe for
// concurrent use.
type Set struct {
	counters map[*family]map[string]uint64 // label values joined by sep
	distinct map[*family][]map[string]bool // per label, the values seen

	durPresent bool
	durBuckets []uint64 // cumulative, one per durationBuckets, then +Inf
	durSum     float64

	gauges  map[*family]float64
	lastEnd time.Time // End of the report the gauges come from
}

// sep joins label values into a map key; it cannot occur in valid UTF-8.
const sep = "\xff"

// NewSet returns an empty Set in which every session result exists at
// zero, so that rate() sees the first failure.
func NewSet() *Set {
	s := &Set{
		counters:   map[*family]map[string]uint64{},
		distinct:   map[*family][]map[string]bool{},
		durBuckets: make([]uint64, len(durationBuckets)+1),
		gauges:     map[*family]float64{},
	}
	s.add(sessions, 0, "ok")
	s.add(sessions, 0, "failed")
	s.add(sessions, 0, "lost")
	s.add(shimReportsMalformed, 0)
	s.add(auditLinesDropped, 0)
	return s
}

// Add counts one session's report.
func (s *Set) Add(r Report) {
	r = boundReport(r) // bounds.go: one report cannot use up the label budget
	if r.Lost {
		// Nothing else is known of it: no counts, duration or layers.
		s.add(sessions, 1, "lost")
		return
	}
	for name, n := range r.BlockedSyscalls {
		s.add(blockedSyscalls, n, name)
	}
	for op, n := range r.BlockedWrites {
		s.add(blockedWrites, n, op)
	}
	for cmd, n := range r.BlockedCommands {
		tool, sub := splitPair(cmd)
		s.add(blockedCommands, n, tool, sub)
	}
	for call, n := range r.BlockedAPICalls {
		api, verb, resource := splitAPICall(call)
		s.add(blockedAPICalls, n, api, verb, resource)
	}
	s.add(auditLinesDropped, r.AuditLinesDropped)
	s.add(shimReportsMalformed, r.ShimReportsMalformed)
	result := "ok"
	if r.Failed {
		result = "failed"
	}
	s.add(sessions, 1, result)
	s.observeDuration(r.Duration().Seconds())

	// The gauges describe the most recent session that got far enough to
	// know them. Spooled reports may arrive late: an older one does not
	// overwrite a newer one.
	if !r.Failed && !r.End.Before(s.lastEnd) {
		s.lastEnd = r.End
		s.gauges[landlockABI] = float64(r.LandlockABI)
		switch r.SeccompMode {
		case SeccompNotify:
			s.gauges[seccompCounting] = 1
		case SeccompErrno:
			s.gauges[seccompCounting] = 0
		}
		s.gauges[writeCounting] = 0
		if r.WriteCounting {
			s.gauges[writeCounting] = 1
		}
		s.gauges[socketMediation] = 0
		if r.SocketMediation {
			s.gauges[socketMediation] = 1
		}
	}
}

// splitAPICall splits a refused API call's key: "kubernetes verb resource"
// (the Kubernetes guard), or "METHOD route" (the Docker guard, whose keys
// came first and have no API word).
func splitAPICall(s string) (api, verb, resource string) {
	if rest, ok := strings.CutPrefix(s, "kubernetes "); ok {
		verb, resource = splitPair(rest)
		return "kubernetes", verb, resource
	}
	verb, resource = splitPair(s)
	return "docker", verb, resource
}

// splitPair splits "tool subcommand" or "METHOD route" at the first space;
// a missing second part is "none".
func splitPair(s string) (string, string) {
	a, b, ok := strings.Cut(s, " ")
	if !ok || b == "" {
		return a, "none"
	}
	return a, b
}

func (s *Set) observeDuration(sec float64) {
	if math.IsNaN(sec) || sec < 0 {
		sec = 0
	}
	s.durPresent = true
	s.durSum += sec
	for i, le := range durationBuckets {
		if sec <= le {
			s.durBuckets[i]++
		}
	}
	s.durBuckets[len(durationBuckets)]++
}

// add adds n to the counter of f with the given label values, folding a
// value into "other" when it is not a usable label value or when its label
// already has MaxLabelValues distinct values.
func (s *Set) add(f *family, n uint64, values ...string) {
	if len(values) != len(f.labels) {
		panic(fmt.Sprintf("BUG: %s has %d labels, got %d values", f.name, len(f.labels), len(values)))
	}
	seen := s.distinct[f]
	if seen == nil {
		seen = make([]map[string]bool, len(f.labels))
		for i := range seen {
			seen[i] = map[string]bool{}
		}
		s.distinct[f] = seen
	}
	for i, v := range values {
		if v == "" || len(v) > maxLabelLen || !utf8.ValidString(v) || strings.Contains(v, sep) {
			v = other
		}
		if !seen[i][v] {
			if len(seen[i]) >= MaxLabelValues {
				v = other
			}
			seen[i][v] = true
		}
		values[i] = v
	}
	m := s.counters[f]
	if m == nil {
		m = map[string]uint64{}
		s.counters[f] = m
	}
	m[strings.Join(values, sep)] += n
}

// WriteText writes the Set in the Prometheus text exposition format (0.0.4)
// as client_golang's encoder did: HELP and TYPE for each family that has
// samples, no timestamps, families sorted by name, labels by name and
// samples by label values. The node_exporter textfile collector and
// Prometheus read the same format.
func (s *Set) WriteText(w io.Writer) error {
	bw := bufio.NewWriter(w)
	fs := slices.Clone(families)
	slices.SortFunc(fs, func(a, b *family) int { return strings.Compare(a.name, b.name) })
	for _, f := range fs {
		switch f.kind {
		case counter:
			if len(s.counters[f]) == 0 {
				continue
			}
			writeHeader(bw, f, "counter")
			s.writeCounter(bw, f)
		case gauge:
			v, ok := s.gauges[f]
			if !ok {
				continue
			}
			writeHeader(bw, f, "gauge")
			bw.WriteString(f.name + " " + formatFloat(v) + "\n")
		case histogram:
			if !s.durPresent {
				continue
			}
			writeHeader(bw, f, "histogram")
			for i, le := range durationBuckets {
				bw.WriteString(f.name + `_bucket{le="` + formatFloat(le) + `"} ` + formatFloat(float64(s.durBuckets[i])) + "\n")
			}
			n := formatFloat(float64(s.durBuckets[len(durationBuckets)]))
			bw.WriteString(f.name + `_bucket{le="+Inf"} ` + n + "\n")
			bw.WriteString(f.name + "_sum " + formatFloat(s.durSum) + "\n")
			bw.WriteString(f.name + "_count " + n + "\n")
		}
	}
	return bw.Flush()
}

func writeHeader(w *bufio.Writer, f *family, typ string) {
	help := strings.NewReplacer(`\`, `\\`, "\n", `\n`).Replace(f.help)
	w.WriteString("# HELP " + f.name + " " + help + "\n# TYPE " + f.name + " " + typ + "\n")
}

// writeCounter writes f's samples, each with its labels sorted by name,
// the samples sorted by those label values in that order.
func (s *Set) writeCounter(w *bufio.Writer, f *family) {
	order := make([]int, len(f.labels)) // label indexes, by name
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int { return strings.Compare(f.labels[a], f.labels[b]) })
	type sample struct {
		values []string // in order's order
		n      uint64
	}
	samples := make([]sample, 0, len(s.counters[f]))
	for k, n := range s.counters[f] {
		var values []string
		if len(f.labels) > 0 {
			split := strings.Split(k, sep)
			for _, i := range order {
				values = append(values, split[i])
			}
		}
		samples = append(samples, sample{values, n})
	}
	slices.SortFunc(samples, func(a, b sample) int { return slices.Compare(a.values, b.values) })
	esc := strings.NewReplacer(`\`, `\\`, "\n", `\n`, `"`, `\"`)
	for _, x := range samples {
		w.WriteString(f.name)
		for j, i := range order {
			sepc := ","
			if j == 0 {
				sepc = "{"
			}
			w.WriteString(sepc + f.labels[i] + `="` + esc.Replace(x.values[j]) + `"`)
		}
		if len(order) > 0 {
			w.WriteString("}")
		}
		w.WriteString(" " + formatFloat(float64(x.n)) + "\n")
	}
}

// formatFloat writes a value as the exposition format's encoder does.
func formatFloat(f float64) string {
	switch {
	case math.IsNaN(f):
		return "NaN"
	case math.IsInf(f, +1):
		return "+Inf"
	case math.IsInf(f, -1):
		return "-Inf"
	}
	return strconv.FormatFloat(f, 'g', -1, 64)
}
