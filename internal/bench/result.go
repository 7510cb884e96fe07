package bench

import (
	"cmp"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
)

// Result is what a run measured. It is written as JSON by herald bench
// --json; times are in seconds (_s) or milliseconds (_ms).
type Result struct {
	// Target is the stream URL, or the stream URLs separated by commas
	// (as Config.URL gave them), which the streams took in turn.
	Target string `json:"target"`
	// Streams is the number of streams asked for.
	Streams int `json:"streams"`
	// Workers is the number of worker processes that held the streams;
	// 0 means this process held them.
	Workers int `json:"workers"`
	// Source says which local addresses the streams came from.
	Source string `json:"source"`
	// Connect is the connect phase.
	Connect ConnectResult `json:"connect"`
	// Publish is the publishing side; absent when publishing was off.
	Publish *PublishResult `json:"publish,omitempty"`
	// Delivery is what the streams received after they connected.
	Delivery DeliveryResult `json:"delivery"`
	// Server is the server's memory and goroutines, when found.
	Server *ServerResult `json:"server,omitempty"`
	// Notes explain anything partial or surprising about the results.
	Notes []string `json:"notes,omitempty"`
}

// ConnectResult describes opening the streams.
type ConnectResult struct {
	// Attempted, Connected and Failed count streams; a stream is
	// connected when its 200 response headers arrived.
	Attempted int64 `json:"attempted"`
	Connected int64 `json:"connected"`
	Failed    int64 `json:"failed"`
	// Errors counts failures by cause (e.g. "HTTP status 503"); with
	// several stream URLs, each cause starts with the address of the
	// target concerned ("127.0.0.1:8082: HTTP status 503").
	Errors map[string]int64 `json:"errors,omitempty"`
	// WallS is the time from the first connect to the last stream's
	// headers (or failure), and PerS the streams connected per second.
	WallS float64 `json:"wall_s"`
	PerS  float64 `json:"per_s"`
	// Latency is per stream, from connect until response headers.
	Latency Latency `json:"latency"`
}

// PublishResult describes the publisher.
type PublishResult struct {
	// URL and Format ("form" or "json") of the publish requests; with
	// several publish URLs, which took the requests in turn, URL lists
	// them separated by commas.
	URL    string `json:"url"`
	Format string `json:"format"`
	// Mode is "rate" (fixed rate) or "closed-loop" (as fast as delivery
	// allows, within Window).
	Mode string `json:"mode"`
	// TargetRate is the asked rate in events per second (0 in the
	// closed loop); Window the closed loop's bound; Batch the most
	// events per request.
	TargetRate float64 `json:"target_rate"`
	Window     int     `json:"window,omitempty"`
	Batch      int     `json:"batch"`
	// DataBytes is the size of each event's data.
	DataBytes int `json:"data_bytes"`
	// Events and Requests count what the server accepted; Errors the
	// requests it did not.
	Events   uint64 `json:"events"`
	Requests int64  `json:"requests"`
	Errors   int64  `json:"errors"`
	// DurationS is the publishing time and Rate the events per second
	// achieved.
	DurationS float64 `json:"duration_s"`
	Rate      float64 `json:"rate"`
	// Latency is per request: its round trip.
	Latency Latency `json:"latency"`
}

// DeliveryResult describes what the streams received.
type DeliveryResult struct {
	// Deliveries counts events dispatched to streams (an event reaching
	// 1,000 streams is 1,000 deliveries), including Foreign ones: events
	// without this run's payload, such as a server's own.
	Deliveries int64 `json:"deliveries"`
	Foreign    int64 `json:"foreign"`
	// Expected is published events × streams connected.
	Expected uint64 `json:"expected"`
	// DurationS is the time from the start of publishing (or holding)
	// to the end of the drain; PerS is Deliveries over it, and PeakPerS
	// the most deliveries in one progress interval, per second.
	DurationS float64 `json:"duration_s"`
	PerS      float64 `json:"per_s"`
	PeakPerS  float64 `json:"peak_per_s"`
	// Bytes counts bytes read from the streams in that time;
	// BytesPerEvent is Bytes over Deliveries.
	Bytes         int64   `json:"bytes"`
	BytesPerEvent float64 `json:"bytes_per_event"`
	// Gaps counts events a stream skipped (it got a later one), Missing
	// the events after a stream's last one that it never got (in time),
	// Drops their sum; Duplicates counts events not newer than the
	// stream's last (repeated or out of order).
	Gaps       int64 `json:"gaps"`
	Missing    int64 `json:"missing"`
	Drops      int64 `json:"drops"`
	Duplicates int64 `json:"duplicates"`
	// StreamsClosed counts streams that ended after connecting, by
	// cause in CloseReasons (prefixed by the target's address as in
	// ConnectResult.Errors when there are several stream URLs).
	StreamsClosed int64            `json:"streams_closed"`
	CloseReasons  map[string]int64 `json:"close_reasons,omitempty"`
	// Latency is per delivery of our events: receive time minus the
	// send time in the event.
	Latency Latency `json:"latency"`
}

// ServerResult is the server side, measured on this machine (Source
// "proc") or from its /metrics (Source "metrics"). With several server
// processes (SO_REUSEPORT, or the nodes of a cluster behind several
// stream URLs) the figures are sums over all of them, and the per-stream
// figures divide the growth of the sums by every stream connected.
type ServerResult struct {
	// PIDs are the processes measured from /proc, and Ports the target
	// ports they were found listening on (none when the processes were
	// given).
	PIDs   []int    `json:"pids,omitempty"`
	Ports  []uint16 `json:"ports,omitempty"`
	Source string   `json:"source"`
	// MetricsTargets is how many targets' /metrics (one per distinct
	// target address) the figures from /metrics add up.
	MetricsTargets int `json:"metrics_targets,omitempty"`
	// RSS before any stream connected and after all connected and the
	// server settled, and the growth per connected stream in KiB.
	RSSBaselineBytes int64   `json:"rss_baseline_bytes,omitempty"`
	RSSAfterBytes    int64   `json:"rss_after_bytes,omitempty"`
	RSSPerStreamKiB  float64 `json:"rss_per_stream_kib,omitempty"`
	// Goroutines before and after, and per stream, from /metrics.
	GoroutinesBaseline  int64   `json:"goroutines_baseline,omitempty"`
	GoroutinesAfter     int64   `json:"goroutines_after,omitempty"`
	GoroutinesPerStream float64 `json:"goroutines_per_stream,omitempty"`
}

// WriteText writes r for people.
func (r *Result) WriteText(w io.Writer) {
	if targets := SplitURLs(r.Target); len(targets) > 1 {
		fmt.Fprintf(w, "targets     %d stream URLs, taken in turn:\n", len(targets))
		for _, t := range targets {
			fmt.Fprintf(w, "              %s\n", t)
		}
	} else {
		fmt.Fprintf(w, "target      %s\n", r.Target)
	}
	procs := "this process"
	if r.Workers > 0 {
		procs = fmt.Sprintf("%d worker processes", r.Workers)
	}
	fmt.Fprintf(w, "streams     %d in %s, from %s\n", r.Streams, procs, r.Source)
	c := &r.Connect
	fmt.Fprintf(w, "connect     %d connected, %d failed in %.2fs (%.0f/s); per stream p50 %s p99 %s max %s\n",
		c.Connected, c.Failed, c.WallS, c.PerS, fmtMs(c.Latency.P50Ms), fmtMs(c.Latency.P99Ms), fmtMs(c.Latency.MaxMs))
	if len(c.Errors) > 0 {
		fmt.Fprintf(w, "            failures: %s\n", fmtCounts(c.Errors))
	}
	if s := r.Server; s != nil {
		fmt.Fprintf(w, "server      %s", s.Source)
		if len(s.PIDs) > 0 {
			fmt.Fprintf(w, " pid %s", strings.Trim(fmt.Sprint(s.PIDs), "[]"))
		}
		if len(s.Ports) > 1 {
			fmt.Fprintf(w, " listening on ports %s", strings.ReplaceAll(strings.Trim(fmt.Sprint(s.Ports), "[]"), " ", ", "))
		}
		if s.RSSAfterBytes > 0 {
			sum := ""
			switch {
			case s.Source == "proc" && len(s.PIDs) > 1:
				sum = fmt.Sprintf(" summed over %d processes", len(s.PIDs))
			case s.Source == "metrics" && s.MetricsTargets > 1:
				sum = fmt.Sprintf(" summed over %d targets", s.MetricsTargets)
			}
			fmt.Fprintf(w, "; RSS%s %.1f MiB -> %.1f MiB, %.2f KiB/stream", sum, mib(s.RSSBaselineBytes), mib(s.RSSAfterBytes), s.RSSPerStreamKiB)
		}
		if s.GoroutinesAfter > 0 {
			sum := ""
			if s.MetricsTargets > 1 {
				sum = fmt.Sprintf(" summed over %d targets", s.MetricsTargets)
			}
			fmt.Fprintf(w, "; goroutines%s %d -> %d, %.2f/stream", sum, s.GoroutinesBaseline, s.GoroutinesAfter, s.GoroutinesPerStream)
		}
		fmt.Fprintln(w)
	}
	if p := r.Publish; p != nil {
		mode := fmt.Sprintf("%g events/s", p.TargetRate)
		if p.Mode == "closed-loop" {
			mode = fmt.Sprintf("as fast as delivered (window %d)", p.Window)
		}
		to := ""
		if urls := SplitURLs(p.URL); len(urls) > 1 {
			to = fmt.Sprintf(" to %d URLs in turn", len(urls))
		}
		fmt.Fprintf(w, "publish     %d events in %d requests%s (%s, batch %d, %d-byte data) in %.2fs: %.0f events/s; request p50 %s p99 %s; %d errors\n",
			p.Events, p.Requests, to, mode, p.Batch, p.DataBytes, p.DurationS, p.Rate, fmtMs(p.Latency.P50Ms), fmtMs(p.Latency.P99Ms), p.Errors)
	}
	d := &r.Delivery
	if d.DurationS == 0 && r.Publish == nil {
		notes(w, r.Notes) // connected and measured only
		return
	}
	fmt.Fprintf(w, "delivery    %d deliveries in %.2fs: %.0f/s (peak %.0f/s), %.0f bytes/event", d.Deliveries, d.DurationS, d.PerS, d.PeakPerS, d.BytesPerEvent)
	if d.Foreign > 0 {
		fmt.Fprintf(w, ", %d without our payload", d.Foreign)
	}
	fmt.Fprintln(w)
	if r.Publish != nil {
		fmt.Fprintf(w, "            expected %d; drops %d (gaps %d, missing at end %d), duplicates %d\n", d.Expected, d.Drops, d.Gaps, d.Missing, d.Duplicates)
	}
	if d.Latency.Count > 0 {
		l := &d.Latency
		fmt.Fprintf(w, "latency     p50 %s p90 %s p99 %s p99.9 %s max %s (mean %s, %d samples)\n",
			fmtMs(l.P50Ms), fmtMs(l.P90Ms), fmtMs(l.P99Ms), fmtMs(l.P999Ms), fmtMs(l.MaxMs), fmtMs(l.MeanMs), l.Count)
	}
	if d.StreamsClosed > 0 {
		fmt.Fprintf(w, "closed      %d streams ended early: %s\n", d.StreamsClosed, fmtCounts(d.CloseReasons))
	}
	notes(w, r.Notes)
}

func notes(w io.Writer, notes []string) {
	for _, n := range notes {
		fmt.Fprintf(w, "note        %s\n", n)
	}
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

func fmtMs(v float64) string {
	switch {
	case v >= 1000:
		return fmt.Sprintf("%.2fs", v/1000)
	case v >= 1:
		return fmt.Sprintf("%.2fms", v)
	}
	return fmt.Sprintf("%.0fµs", v*1000)
}

// fmtCounts lists counts by cause, the most frequent first.
func fmtCounts(m map[string]int64) string {
	keys := slices.SortedFunc(maps.Keys(m), func(a, b string) int {
		return cmp.Or(cmp.Compare(m[b], m[a]), strings.Compare(a, b))
	})
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%d× %s", m[k], k)
	}
	return strings.Join(parts, ", ")
}
