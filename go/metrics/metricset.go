package metrics

import (
	"fmt"
	"io"
	"math"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
)

// The metric set: the one place that names ronly's metrics. A Set is a
// prometheus.Collector; the exporter registers it in its own Registry and
// the textfile writer in a throw-away one, so the two cannot drift, and the
// golden files in testdata catch a rename.

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
	desc   *prometheus.Desc
}

func newFamily(name, help string, k kind, labels ...string) *family {
	return &family{name: name, kind: k, labels: labels, desc: prometheus.NewDesc(name, help, labels, nil)}
}

var (
	blockedSyscalls = newFamily("ronly_blocked_syscalls_total",
		"Syscalls the seccomp filter refused inside ronly sessions, by syscall name.", counter, "syscall")
	blockedWrites = newFamily("ronly_blocked_writes_total",
		"Writes to the read-only host refused inside ronly sessions, by operation.", counter, "operation")
	blockedCommands = newFamily("ronly_blocked_commands_total",
		"Commands a shim refused inside ronly sessions, by tool and subcommand.", counter, "tool", "subcommand")
	blockedAPICalls = newFamily("ronly_blocked_api_calls_total",
		"API calls the guard refused inside ronly sessions, by HTTP method and route.", counter, "method", "route")
	sessions = newFamily("ronly_sessions_total",
		"ronly sessions ended, by result: ok, or failed when ronly could not build the sandbox.", counter, "result")
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

// families are all of them. (The exposition is in the Registry's order:
// sorted by name, then by label values.)
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
// of the metric set, which it exposes as a prometheus.Collector of constant
// metrics. Its zero value is not usable; use NewSet. A Set is not safe for
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

// NewSet returns an empty Set in which both session results exist at zero,
// so that rate() sees the first failure.
func NewSet() *Set {
	s := &Set{
		counters:   map[*family]map[string]uint64{},
		distinct:   map[*family][]map[string]bool{},
		durBuckets: make([]uint64, len(durationBuckets)+1),
		gauges:     map[*family]float64{},
	}
	s.add(sessions, 0, "ok")
	s.add(sessions, 0, "failed")
	s.add(shimReportsMalformed, 0)
	s.add(auditLinesDropped, 0)
	return s
}

// Add counts one session's report.
func (s *Set) Add(r Report) {
	r = boundReport(r) // bounds.go: one report cannot use up the label budget
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
		method, route := splitPair(call)
		s.add(blockedAPICalls, n, method, route)
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

// Describe implements prometheus.Collector.
func (s *Set) Describe(ch chan<- *prometheus.Desc) {
	for _, f := range families {
		ch <- f.desc
	}
}

// Collect implements prometheus.Collector: a family is there once it has
// a sample.
func (s *Set) Collect(ch chan<- prometheus.Metric) {
	for _, m := range s.metrics() {
		ch <- m
	}
}

// metrics are the Set's samples as constant metrics.
func (s *Set) metrics() []prometheus.Metric {
	var ms []prometheus.Metric
	for _, f := range families {
		var m prometheus.Metric
		var err error
		switch f.kind {
		case counter:
			for k, n := range s.counters[f] {
				var values []string
				if len(f.labels) > 0 {
					values = strings.Split(k, sep)
				}
				m, err = prometheus.NewConstMetric(f.desc, prometheus.CounterValue, float64(n), values...)
				ms = append(ms, orInvalid(f, m, err))
			}
			continue
		case gauge:
			v, ok := s.gauges[f]
			if !ok {
				continue
			}
			m, err = prometheus.NewConstMetric(f.desc, prometheus.GaugeValue, v)
		case histogram:
			if !s.durPresent {
				continue
			}
			buckets := make(map[float64]uint64, len(durationBuckets))
			for i, le := range durationBuckets {
				buckets[le] = s.durBuckets[i]
			}
			m, err = prometheus.NewConstHistogram(f.desc, s.durBuckets[len(durationBuckets)], s.durSum, buckets)
		}
		ms = append(ms, orInvalid(f, m, err))
	}
	return ms
}

// orInvalid is m, or a metric that makes Gather report err.
func orInvalid(f *family, m prometheus.Metric, err error) prometheus.Metric {
	if err != nil {
		return prometheus.NewInvalidMetric(f.desc, err)
	}
	return m
}

// WriteText writes the Set in the Prometheus text exposition format (0.0.4)
// with client_golang's encoder, as the exporter serves it: HELP and TYPE for
// each family that has samples, no timestamps, families sorted by name and
// samples by label values. The node_exporter textfile collector reads the
// same format.
func (s *Set) WriteText(w io.Writer) error {
	reg := prometheus.NewRegistry()
	if err := reg.Register(s); err != nil {
		return err
	}
	mfs, err := reg.Gather()
	if err != nil {
		return err
	}
	enc := expfmt.NewEncoder(w, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			return err
		}
	}
	return nil
}
