package probe

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// TableLines is the report as `ronly probe` shows it to a person, line by
// line, for the caller to print (a line may hold a newline of an error's
// own). Pure: the report is all it reads.
func TableLines(rep *Report) []string {
	names := make([]string, len(rep.Configurations))
	for i, c := range rep.Configurations {
		names[i] = c.Name
	}
	// Layers in order, then the verdicts that are no layer.
	order := append(append([]string{}, names...), BlockedByNone, BlockedByUnknown, BlockedByNA)
	var hostile, everyday []Operation
	for _, o := range rep.Operations {
		if o.Kind == Hostile {
			hostile = append(hostile, o)
		} else {
			everyday = append(everyday, o)
		}
	}
	rank := map[string]int{}
	for i, n := range order {
		rank[n] = i
	}
	sort.SliceStable(hostile, func(i, j int) bool { return rank[hostile[i].BlockedBy] < rank[hostile[j].BlockedBy] })

	out := tableHead(rep)
	out = append(out, "")
	out = append(out, alignRows(tableRows(rep, names, hostile, everyday))...)
	out = append(out, "")
	out = append(out, hostLines(rep)...)
	out = append(out, "")
	return append(out, summaryLines(rep, order, hostile, everyday)...)
}

// tableHead is what the table starts with: the machine, the legend, the
// configurations and the notes.
func tableHead(rep *Report) []string {
	out := []string{
		fmt.Sprintf("ronly probe: Linux %s, Landlock ABI %d, uid %d", rep.Kernel, rep.LandlockABI, rep.UID),
		"",
		fmt.Sprintf("The battery ran in %d cumulative sandboxes; each operation is blocked by the layer from which on it is refused.", len(rep.Configurations)),
		"BY CONFIG has its result in each: R refused, - went through, e the kernel rejected its deliberately invalid",
		"argument before any layer refused it, + ok, F failed, s skipped (or the kernel lacks the call: n/a).",
	}
	for i, c := range rep.Configurations {
		out = append(out, strings.TrimRight(fmt.Sprintf("  %d %-18s %s", i+1, c.Name, c.Description), " "))
	}
	for _, n := range rep.Notes {
		out = append(out, "  note: "+n)
	}
	return out
}

// tableLine is a row of cells, or (cells nil) a summary line between the
// rows that does not count for the column widths.
type tableLine struct {
	cells []string
	text  string
}

// tableRows are the operations' rows: the hostile ones grouped by the
// layer that blocks them, each group followed by its count, then the
// everyday ones and theirs.
func tableRows(rep *Report, names []string, hostile, everyday []Operation) []tableLine {
	header := []string{"OPERATION", "KIND", "RESULT", "ERRNO", "BLOCKED BY", "BY CONFIG "}
	for i := range names {
		header[5] += strconv.Itoa(i + 1)
	}
	lines := []tableLine{{cells: header}}
	row := func(o Operation, blockedBy string) {
		var letters string
		for _, n := range names {
			letters += configLetter(o.ResultsByConfig[n].Outcome)
		}
		errno := o.Errno
		if errno == "" {
			errno = "-"
		}
		lines = append(lines, tableLine{cells: []string{o.Name, string(o.Kind), string(o.Result), errno, blockedBy, letters}})
	}
	for i, o := range hostile {
		row(o, o.BlockedBy)
		if i == len(hostile)-1 || hostile[i+1].BlockedBy != o.BlockedBy {
			lines = append(lines, tableLine{text: fmt.Sprintf("== %s: %d hostile operation(s)%s",
				o.BlockedBy, rep.Summary.BlockedByLayer[o.BlockedBy], layerVerdict(o.BlockedBy))})
		}
	}
	for _, o := range everyday {
		by := o.BlockedBy
		if by == "" {
			by = "-"
		}
		row(o, by)
	}
	s := rep.Summary
	return append(lines, tableLine{text: fmt.Sprintf("== everyday: %d ok, %d failed, %d skipped", s.EverydayOK, s.EverydayFailed, s.EverydaySkipped)})
}

// alignRows pads each column to its widest cell, two spaces apart; the
// last column is not padded.
func alignRows(lines []tableLine) []string {
	var widths []int
	for _, l := range lines {
		for i, c := range l.cells {
			if i == len(widths) {
				widths = append(widths, 0)
			}
			widths[i] = max(widths[i], len(c))
		}
	}
	out := make([]string, 0, len(lines))
	for _, l := range lines {
		if l.cells == nil {
			out = append(out, l.text)
			continue
		}
		var b strings.Builder
		for i, c := range l.cells {
			if i == len(l.cells)-1 {
				b.WriteString(c)
			} else {
				fmt.Fprintf(&b, "%-*s  ", widths[i], c)
			}
		}
		out = append(out, b.String())
	}
	return out
}

// hostLines say what the canaries showed from outside after each
// configuration; a change after the full sandbox is a breach.
func hostLines(rep *Report) []string {
	out := []string{"Host seen from outside after each configuration (changes are expected only where a layer is missing):"}
	for i, c := range rep.Configurations {
		if len(c.HostChanges) == 0 {
			out = append(out, fmt.Sprintf("  %s: canaries unchanged (%d session(s))", c.Name, c.Runs))
			continue
		}
		prefix := ""
		if i == len(rep.Configurations)-1 {
			prefix = "SANDBOX BREACH: "
		}
		out = append(out, fmt.Sprintf("  %s: %s%d change(s) (%d session(s)):", c.Name, prefix, len(c.HostChanges), c.Runs))
		for _, ch := range c.HostChanges {
			out = append(out, "    "+strings.ReplaceAll(ch, "\n", "\n    "))
		}
	}
	return out
}

// summaryLines are the counts, then the findings in the full sandbox, one
// operation a line, and OK when there are none.
func summaryLines(rep *Report, order []string, hostile, everyday []Operation) []string {
	s := rep.Summary
	full := rep.Configurations[len(rep.Configurations)-1].Name
	var parts []string
	for _, n := range order {
		if k := s.BlockedByLayer[n]; k > 0 || n == BlockedByNone {
			parts = append(parts, fmt.Sprintf("%s %d", n, k))
		}
	}
	out := []string{fmt.Sprintf("Summary: %d hostile operations, blocked by: %s; %d everyday: %d ok, %d failed, %d skipped.",
		s.Hostile, strings.Join(parts, ", "), s.Everyday, s.EverydayOK, s.EverydayFailed, s.EverydaySkipped)}
	var early int
	for _, o := range hostile {
		if len(o.ArgumentRejectedIn) > 0 && o.BlockedBy != BlockedByNone {
			early++
		}
	}
	if early > 0 {
		out = append(out, fmt.Sprintf("%d of them (e in BY CONFIG) got their deliberately invalid argument rejected by the kernel itself in", early),
			"the sandboxes before the layer named: that layer is the latest that blocks them, an earlier one may too.")
	}
	// The hostile operations blocked by by, one a line after head.
	list := func(by, head string) {
		n := s.BlockedByLayer[by]
		if n == 0 {
			return
		}
		out = append(out, "", fmt.Sprintf(head, n))
		for _, o := range hostile {
			if o.BlockedBy == by {
				out = append(out, fmt.Sprintf("  %s (%s)", o.Name, describeFull(o, full)))
			}
		}
	}
	list(BlockedByNone, "FINDING: %d hostile operation(s) went through the full sandbox (blocked by NONE):")
	list(BlockedByUnknown, "UNKNOWN: %d hostile operation(s) failed in the full sandbox without an errno:")
	if s.EverydayFailed > 0 {
		out = append(out, "", fmt.Sprintf("BROKEN: %d everyday operation(s) failed in the full sandbox:", s.EverydayFailed))
		for _, o := range everyday {
			if o.Result != OK && o.Result != Skipped {
				out = append(out, fmt.Sprintf("  %s (broken by %s: %s)", o.Name, o.BlockedBy, describeFull(o, full)))
			}
		}
	}
	if rep.OK {
		out = append(out, "OK: the full sandbox refused every hostile operation, every everyday one worked, and the host did not change.")
	}
	return out
}

// configLetter is an operation's outcome in one configuration, for the
// table's per-configuration column.
func configLetter(o Outcome) string {
	switch o {
	case Refused:
		return "R"
	case Through:
		return "-"
	case OtherErrno:
		return "e"
	case OK:
		return "+"
	case Failed:
		return "F"
	case Skipped:
		return "s"
	}
	return "?"
}

func layerVerdict(by string) string {
	switch by {
	case BlockedByNone:
		return " NOT REFUSED by any layer"
	case BlockedByNA:
		return " not applicable here"
	case BlockedByUnknown:
		return " failed without an errno"
	}
	return " refused"
}

// describeFull says what an operation did in the full sandbox.
func describeFull(o Operation, full string) string {
	r := o.ResultsByConfig[full]
	switch {
	case r.Detail != "":
		return r.Detail
	case r.Error != "":
		return r.Error
	case r.Errno != "":
		return r.Errno
	case o.Result == Through:
		return "it went through"
	}
	return string(o.Result)
}
