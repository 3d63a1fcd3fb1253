package metrics

import (
	"io"
	"strings"
)

// The Set's contents as plain values, for an adapter that exposes them
// through a metrics library (the exporter binary's client_golang, in
// go/metrics/promexport). This package itself imports no such library: the
// session binary links it, and a session only writes the text format.

// Family describes one of ronly's metric families.
type Family struct {
	Name   string
	Help   string
	Type   string   // "counter", "gauge" or "histogram"
	Labels []string // label names, in the order of Sample.LabelValues
}

// Families are all of ronly's metric families.
func Families() []Family {
	out := make([]Family, 0, len(families))
	for _, f := range families {
		out = append(out, Family{Name: f.name, Help: f.help, Type: f.kind.String(), Labels: append([]string(nil), f.labels...)})
	}
	return out
}

func (k kind) String() string {
	switch k {
	case counter:
		return "counter"
	case gauge:
		return "gauge"
	}
	return "histogram"
}

// Sample is one sample of a Set: of a counter or gauge (Value), or the
// duration histogram (Count, Sum, Buckets). A family is present once it
// has a sample, as in WriteText.
type Sample struct {
	Family      string   // Family.Name
	LabelValues []string // in Family.Labels order
	Value       float64
	Count       uint64
	Sum         float64
	Buckets     map[float64]uint64 // cumulative counts by upper bound, +Inf left out (it is Count)
}

// Samples returns the Set's samples, in no particular order.
func (s *Set) Samples() []Sample {
	var out []Sample
	for _, f := range families {
		switch f.kind {
		case counter:
			for k, n := range s.counters[f] {
				var values []string
				if len(f.labels) > 0 {
					values = strings.Split(k, sep)
				}
				out = append(out, Sample{Family: f.name, LabelValues: values, Value: float64(n)})
			}
		case gauge:
			if v, ok := s.gauges[f]; ok {
				out = append(out, Sample{Family: f.name, Value: v})
			}
		case histogram:
			if !s.durPresent {
				continue
			}
			buckets := make(map[float64]uint64, len(durationBuckets))
			for i, le := range durationBuckets {
				buckets[le] = s.durBuckets[i]
			}
			out = append(out, Sample{Family: f.name, Count: s.durBuckets[len(durationBuckets)], Sum: s.durSum, Buckets: buckets})
		}
	}
	return out
}

// Samples returns the samples of the Exporter's Set, taken under its lock.
func (e *Exporter) Samples() []Sample {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.set.Samples()
}

// WriteText writes the Exporter's Set in the text exposition format, as
// Set.WriteText does (what promexport serves must read the same).
func (e *Exporter) WriteText(w io.Writer) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.set.WriteText(w)
}
