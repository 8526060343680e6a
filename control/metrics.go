package control

import (
	"maps"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Sample is one metric value read from a site's counters at scrape time. The
// write path keeps plain counters; nothing on it calls into Prometheus.
type Sample struct {
	Name  string // without the duplex_ prefix
	Help  string
	Type  prometheus.ValueType
	Value float64
	// Labels are the sample's own, beside the site's session and role:
	// a volume's, for a metric with a series per volume.
	Labels prometheus.Labels
}

// Labelled returns s with the label name set to value.
func (s Sample) Labelled(name, value string) Sample {
	ls := make(prometheus.Labels, len(s.Labels)+1)
	maps.Copy(ls, s.Labels)
	ls[name] = value
	s.Labels = ls
	return s
}

// Metrics exposes a site's samples and its lag distribution with the duplex_
// prefix, labelled by session and role.
type Metrics struct {
	reg     *prometheus.Registry
	lagHist prometheus.Histogram
}

// NewMetrics builds the registry. samples is called on every scrape.
func NewMetrics(session, role string, samples func() []Sample) *Metrics {
	labels := prometheus.Labels{"session": session, "role": role}
	m := &Metrics{reg: prometheus.NewRegistry()}
	m.lagHist = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "duplex_lag_distribution_seconds", Help: "Seconds the time the secondary recovers to trails now: " +
			"observed by the secondary at each consistency group it applies, by the primary once a second (as the secondary last acknowledged it).",
		ConstLabels: labels, Buckets: prometheus.ExponentialBuckets(0.001, 2, 18),
	})
	m.reg.MustRegister(m.lagHist, &sampleCollector{labels: labels, samples: samples},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// ObserveLag records one lag observation in seconds.
func (m *Metrics) ObserveLag(seconds float64) { m.lagHist.Observe(seconds) }

// Handler serves the text exposition format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

type sampleCollector struct {
	labels  prometheus.Labels
	samples func() []Sample
}

// Describe sends nothing: the set of samples is fixed per role but read at
// scrape time, which makes this an unchecked collector.
func (c *sampleCollector) Describe(chan<- *prometheus.Desc) {}

func (c *sampleCollector) Collect(ch chan<- prometheus.Metric) {
	for _, s := range c.samples() {
		labels := c.labels
		if len(s.Labels) > 0 {
			labels = maps.Clone(c.labels)
			maps.Copy(labels, s.Labels)
		}
		d := prometheus.NewDesc("duplex_"+s.Name, s.Help, nil, labels)
		ch <- prometheus.MustNewConstMetric(d, s.Type, s.Value)
	}
}

// Gauge is a gauge sample.
func Gauge(name, help string, v float64) Sample {
	return Sample{Name: name, Help: help, Type: prometheus.GaugeValue, Value: v}
}

// Counter is a counter sample.
func Counter(name, help string, v float64) Sample {
	return Sample{Name: name, Help: help, Type: prometheus.CounterValue, Value: v}
}
