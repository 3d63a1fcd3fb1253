package sandbox

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"regexp"
	"sync"
	"sync/atomic"
	"time"

	"ronly.dev/ronly/go/policy"
)

// The report pipe's write end is inherited by everything in the sandbox,
// so whatever arrives on it may be forged: it can only ever add to the
// session's counts of refused commands, under labels bounded per session,
// and the supervisor's memory stays bounded whatever is written to it.
const (
	// MaxReportLine is the longest report line read, newline included; a
	// longer line is discarded up to its newline without being buffered
	// (a shim's line is under 100 bytes).
	MaxReportLine = 1024
	// MaxCommandLabels bounds the distinct (tool, subcommand) pairs one
	// session can report; more fold into "TOOL other". The tools are the
	// session's own shims, so a session adds at most MaxCommandLabels +
	// len(shims) labels to the host's counts, and cannot use up the
	// exporter's label budget (go/metrics.MaxLabelValues) for the others.
	MaxCommandLabels = 16
	// maxSubcommand is the longest subcommand label; longer is "other".
	maxSubcommand = 64
)

// subcommandRE is a shim's label: a verb, or a management command and its
// verb ("container rm"), lower-case words as docker and kubectl have.
// Compiled at the first report, not at every session's start.
var subcommandRE = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`^[a-z0-9][a-z0-9-]*( [a-z0-9][a-z0-9-]*)?$`)
})

// reportReader turns the lines on the report pipe into refusals.
type reportReader struct {
	tools  map[string]bool // the session's shims: the only tools counted
	labels map[string]bool // "tool subcommand" pairs seen, "other" excepted
	// malformed counts the lines dropped: not JSON, too long, a kind
	// other than "command" (syscall, write and api counts come from the
	// kernel and the supervisor, never from inside), or a tool that is
	// not one of the session's shims.
	malformed atomic.Uint64
}

// newReportReader reads the reports of a session of p: its tools are the
// shims p puts on PATH (none with --no-shims).
func newReportReader(p *policy.Policy) *reportReader {
	rr := &reportReader{tools: map[string]bool{}, labels: map[string]bool{}}
	if !p.NoShims {
		for _, t := range p.ShimTools {
			rr.tools[t] = true
		}
	}
	return rr
}

// read counts what the shims inside refused, one JSON line each, until
// every writer is gone. Memory: one buffer of MaxReportLine bytes and at
// most MaxCommandLabels + len(tools) labels, whatever is written.
func (rr *reportReader) read(r io.Reader, record func(Refusal)) {
	br := bufio.NewReaderSize(r, MaxReportLine)
	skipping := false // inside a line longer than MaxReportLine
	for {
		line, err := br.ReadSlice('\n')
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			skipping = true
			continue
		case err != nil:
			if len(line) > 0 || skipping {
				rr.malformed.Add(1) // a last line without its newline
			}
			return
		case skipping:
			skipping = false
			rr.malformed.Add(1)
			continue
		}
		if what, ok := rr.parse(line); ok {
			record(Refusal{Time: time.Now(), Kind: RefusedCommand, What: what})
		} else {
			rr.malformed.Add(1)
		}
	}
}

// parse checks one line and returns its "tool subcommand" label.
func (rr *reportReader) parse(line []byte) (string, bool) {
	var rep struct {
		Kind       string `json:"kind"`
		Tool       string `json:"tool"`
		Subcommand string `json:"subcommand"`
	}
	if json.Unmarshal(bytes.TrimSpace(line), &rep) != nil || rep.Kind != string(RefusedCommand) || !rr.tools[rep.Tool] {
		return "", false
	}
	sub := rep.Subcommand
	if len(sub) > maxSubcommand || !subcommandRE().MatchString(sub) {
		sub = "other"
	}
	label := rep.Tool + " " + sub
	if sub != "other" && !rr.labels[label] {
		if len(rr.labels) >= MaxCommandLabels {
			return rep.Tool + " other", true
		}
		rr.labels[label] = true
	}
	return label, true
}
