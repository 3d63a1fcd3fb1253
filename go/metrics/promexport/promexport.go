// Package promexport serves ronly's metric set through client_golang: a
// prometheus.Collector of constant metrics over a metrics.Exporter, in a
// private registry, behind promhttp. Only the exporter binary
// (go/cmd/ronly-exporter) imports it: client_golang, its protobuf and procfs
// cost every process that links them milliseconds of package init, and the
// session binary only ever writes the text format (metrics.Set.WriteText).
package promexport

import (
	"fmt"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"ronly.dev/ronly/go/metrics"
)

// Source is what a Collector reads: a *metrics.Exporter (safe for
// concurrent use), or a *metrics.Set nothing else touches meanwhile.
type Source interface {
	Samples() []metrics.Sample
}

// Collector exposes a Source's samples as constant metrics.
type Collector struct {
	src   Source
	descs map[string]desc
}

type desc struct {
	*prometheus.Desc
	typ string
}

// NewCollector returns a Collector over src, describing every family of
// metrics.Families.
func NewCollector(src Source) *Collector {
	c := &Collector{src: src, descs: map[string]desc{}}
	for _, f := range metrics.Families() {
		c.descs[f.Name] = desc{prometheus.NewDesc(f.Name, f.Help, f.Labels, nil), f.Type}
	}
	return c
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d.Desc
	}
}

// Collect implements prometheus.Collector: a family is there once it has
// a sample. A sample that cannot be a metric makes Gather fail (and
// /metrics answer 500) rather than vanish.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	for _, s := range c.src.Samples() {
		d, ok := c.descs[s.Family]
		if !ok {
			// metrics.Families names every family a Set has: this is a
			// bug in package metrics, not something to hide.
			ch <- prometheus.NewInvalidMetric(prometheus.NewDesc(s.Family, "unknown family", nil, nil),
				fmt.Errorf("family %q not in metrics.Families", s.Family))
			continue
		}
		var m prometheus.Metric
		var err error
		switch d.typ {
		case "counter":
			m, err = prometheus.NewConstMetric(d.Desc, prometheus.CounterValue, s.Value, s.LabelValues...)
		case "gauge":
			m, err = prometheus.NewConstMetric(d.Desc, prometheus.GaugeValue, s.Value, s.LabelValues...)
		case "histogram":
			m, err = prometheus.NewConstHistogram(d.Desc, s.Count, s.Sum, s.Buckets, s.LabelValues...)
		default:
			err = fmt.Errorf("family %s: unknown type %q", s.Family, d.typ)
		}
		if err != nil {
			m = prometheus.NewInvalidMetric(d.Desc, err)
		}
		ch <- m
	}
}

// Handler serves src's metrics from a private registry (nothing global, no
// Go runtime or process metrics): the text exposition format unless the
// scraper asks for protobuf, errors logged to errorLog (may be nil) and
// answered with 500. It does not compress: the exposition is a few kB, and
// a gzip writer would cost the daemon more memory than the whole Set.
func Handler(src Source, errorLog promhttp.Logger) (http.Handler, error) {
	reg := prometheus.NewRegistry()
	if err := reg.Register(NewCollector(src)); err != nil {
		return nil, fmt.Errorf("registering ronly's metrics: %w", err)
	}
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog:           errorLog,
		ErrorHandling:      promhttp.HTTPErrorOnError,
		DisableCompression: true,
	}), nil
}
