// Package metrics exposes a [herald.Hub] to Prometheus: the hub's counters
// plus the Go runtime and process metrics, in a registry of its own.
package metrics

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/herald-sse/herald"
)

// Collector reports a hub's [herald.Stats] as herald_* metrics. It reads
// them when scraped, so it costs nothing between scrapes.
type Collector struct {
	hub     *herald.Hub
	streams func() int

	subscribers, streamsOpen, topics, queued *prometheus.Desc
	published, delivered, dropped            *prometheus.Desc
	ready                                    *prometheus.Desc
}

// NewCollector returns a Collector for hub. streams, if not nil, reports
// the open HTTP streams (for example [httpapi.Handler.ActiveStreams]) as
// herald_streams_open; with nil that metric is left out.
//
// [httpapi.Handler.ActiveStreams]: https://pkg.go.dev/github.com/herald-sse/herald/httpapi#Handler.ActiveStreams
func NewCollector(hub *herald.Hub, streams func() int) *Collector {
	d := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, nil, nil)
	}
	return &Collector{
		hub:         hub,
		streams:     streams,
		subscribers: d("herald_subscribers", "Subscribers registered with the hub."),
		streamsOpen: d("herald_streams_open", "Event streams being served over HTTP."),
		topics:      d("herald_topics", "Distinct topics subscribed to by name."),
		queued:      d("herald_queued_bytes", "Bytes waiting in all subscriber queues."),
		published:   d("herald_events_published_total", "Events published since the hub started."),
		delivered:   d("herald_deliveries_total", "Events queued to subscribers, one per subscriber reached."),
		dropped:     d("herald_subscribers_dropped_total", "Subscribers dropped for overflowing their queue."),
		ready:       d("herald_ready", "1 when the hub serves without loss (a clustered node: in sync with the log and its broker reachable), as GET /readyz; else 0."),
	}
}

// Describe sends the descriptors of the metrics Collect reports.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.subscribers
	if c.streams != nil {
		ch <- c.streamsOpen
	}
	ch <- c.topics
	ch <- c.queued
	ch <- c.published
	ch <- c.delivered
	ch <- c.dropped
	ch <- c.ready
}

// Collect reads the hub's Stats and sends them as metrics.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	st := c.hub.Stats()
	gauge := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v)
	}
	counter := func(d *prometheus.Desc, v uint64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v))
	}
	gauge(c.subscribers, float64(st.Subscribers))
	if c.streams != nil {
		gauge(c.streamsOpen, float64(c.streams()))
	}
	gauge(c.topics, float64(st.Topics))
	gauge(c.queued, float64(st.QueuedBytes))
	counter(c.published, st.Published)
	counter(c.delivered, st.Delivered)
	counter(c.dropped, st.Dropped)
	ready := 0.0
	if c.hub.Ready() == nil {
		ready = 1
	}
	gauge(c.ready, ready)
}

// Handler serves, in the Prometheus text format, the Go runtime metrics
// (go_goroutines, go_memstats_*, ...), the process metrics
// (process_resident_memory_bytes, ...) and a [Collector] for hub and
// streams, from a registry of its own. It answers GET and HEAD; other
// methods get 405 with a JSON error body, like Herald's other endpoints.
func Handler(hub *herald.Hub, streams func() int) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		NewCollector(hub, streams),
	)
	prom := promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body != http.NoBody && (r.ContentLength != 0 || len(r.TransferEncoding) > 0) {
			// The body is never read; net/http would otherwise wait for it
			// to be discarded, with no deadline, before answering.
			w.Header().Set("Connection", "close")
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("X-Content-Type-Options", "nosniff")
			w.WriteHeader(http.StatusMethodNotAllowed)
			_, _ = w.Write([]byte(`{"error":"method ` + r.Method + ` not allowed; use GET or HEAD"}` + "\n"))
			return
		}
		prom.ServeHTTP(w, r)
	})
}
