package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// ErrInterrupted is returned, with the results so far, when the context
// ends the run early.
var ErrInterrupted = errors.New("interrupted")

// Run benchmarks the event stream at cfg.URL, or the streams of a cluster
// at several URLs: it opens cfg.Streams streams over them round robin (in
// worker processes past cfg.StreamsPerProcess), optionally
// holds them idle, measures the server, publishes for cfg.Duration or
// cfg.Events (or just listens when publishing is off), waits for events
// in flight, and returns what it measured.
//
// The returned Result is filled in as far as the run got, also when the
// error is not nil: ErrTooManyFailed (wrapped) and ErrInterrupted come
// with complete or partial results.
func Run(ctx context.Context, cfg Config) (Result, error) {
	p, err := newPlan(ctx, cfg)
	if err != nil {
		return Result{}, err
	}
	cfg = p.cfg
	res := Result{Target: cfg.URL, Streams: cfg.Streams, Source: p.sourceDesc}

	probe, notes := newServerProbe(ctx, p)
	res.Notes = append(res.Notes, notes...)
	base := probe.sample(ctx)

	if err := preflight(ctx, p); err != nil {
		return res, err
	}

	ecfg := engineConfig{
		Targets: p.targets, Streams: cfg.Streams, Sources: p.sources,
		ConnectConcurrency: cfg.ConnectConcurrency, ConnectTimeout: cfg.ConnectTimeout,
		RunID: p.runID, Shards: cfg.Shards,
	}
	var fl fleet
	if cfg.Streams > p.perProcess {
		res.Workers = (cfg.Streams + p.perProcess - 1) / p.perProcess
		fl, err = startWorkers(ecfg, res.Workers, cfg.WorkerCommand)
	} else {
		fl, err = startLocal(ecfg)
	}
	if err != nil {
		return res, err
	}
	stopped := false
	defer func() {
		if !stopped {
			_, _ = fl.stop()
		}
	}()
	mon := startMonitor(fl, cfg.Progress, cfg.ProgressInterval, cfg.Streams)
	defer mon.close()

	// Connect.
	connStart := time.Now()
	if err := waitFor(ctx, fl, func(st *stats) bool { return st.ConnectDone }); err != nil {
		return res, err
	}
	connWall := time.Since(connStart)
	snap := fl.snapshot(true)
	res.Connect = ConnectResult{
		Attempted: snap.Attempted, Connected: snap.Connected, Failed: snap.Failed,
		Errors: snap.FailReasons, WallS: connWall.Seconds(),
		PerS: float64(snap.Connected) / connWall.Seconds(),
	}
	if snap.ConnectTime != nil {
		res.Connect.Latency = snap.ConnectTime.Summary()
	}
	if snap.Connected == 0 {
		return res, fmt.Errorf("no stream connected to %s: %s", p.targetList(), fmtCounts(snap.FailReasons))
	}
	var failErr error
	if allowed := cfg.MaxFailed * float64(cfg.Streams); float64(snap.Failed) > max(allowed, 0) {
		failErr = fmt.Errorf("%w: %d of %d (%s)", ErrTooManyFailed, snap.Failed, cfg.Streams, fmtCounts(snap.FailReasons))
	}

	// Hold idle, then measure the server.
	if cfg.Idle > 0 {
		mon.setPhase("idle")
		sleep(ctx, cfg.Idle)
	}
	mon.setPhase("settle")
	after := probe.settle(ctx)
	res.Server = serverResult(probe, base, after, snap.Connected)
	if s := res.Server; s != nil {
		if probe.shared() && s.GoroutinesAfter > 0 {
			s.GoroutinesPerStream = 0
			res.Notes = append(res.Notes, fmt.Sprintf("server goroutines are those of whichever process answered /metrics, of %d processes on %d target addresses, so there is no per-stream figure", len(probe.pids), len(probe.metricsURLs)))
		}
		var over []string
		if n := len(s.PIDs); n > 1 {
			over = append(over, fmt.Sprintf("%d processes", n))
		}
		if n := s.MetricsTargets; n > 1 {
			over = append(over, fmt.Sprintf("the /metrics of %d targets", n))
		}
		if len(over) > 0 {
			res.Notes = append(res.Notes, fmt.Sprintf("server figures add up %s; per stream they are the growth of the sums over all %d streams connected", strings.Join(over, " and "), snap.Connected))
		}
	}

	// Publish, or listen.
	before := fl.snapshot(false)
	measureStart := time.Now()
	mon.measure(before.Deliveries)
	var pub *publisher
	var pubErr error
	var pubDur time.Duration
	switch {
	case len(p.publishURLs) > 0 && (cfg.Duration > 0 || cfg.Events > 0):
		mon.setPhase("publish")
		pub = newPublisher(p)
		mon.pub.Store(pub)
		pubErr = pub.run(ctx, &cfg, fl)
		pubDur = time.Since(measureStart)
		mon.setPhase("drain")
		drain(ctx, fl, pub.seq, cfg.Drain)
	case cfg.Duration > 0:
		mon.setPhase("listen")
		sleep(ctx, cfg.Duration)
	}
	measureDur := time.Since(measureStart)
	if pub == nil && cfg.Duration == 0 {
		measureDur = 0 // connected and measured only
	}
	peak := mon.close()

	final, stopErr := fl.stop()
	stopped = true

	if final.ConnectTime != nil {
		res.Connect.Latency = final.ConnectTime.Summary() // complete in every worker's final report
	}
	d := &res.Delivery
	d.Deliveries = final.Deliveries - before.Deliveries
	d.Foreign = final.Foreign - before.Foreign
	d.Bytes = final.Bytes - before.Bytes
	d.DurationS = measureDur.Seconds()
	if d.DurationS > 0 {
		d.PerS = float64(d.Deliveries) / d.DurationS
	}
	d.PeakPerS = max(peak, 0)
	if d.Deliveries > 0 {
		d.BytesPerEvent = float64(d.Bytes) / float64(d.Deliveries)
	}
	d.Gaps, d.Duplicates = final.Gaps, final.Dups
	d.StreamsClosed, d.CloseReasons = final.Closed, final.CloseReasons
	if final.Latency != nil {
		d.Latency = final.Latency.Summary()
	}
	if pub != nil {
		pr := &PublishResult{
			URL: strings.Join(p.publishURLs, ","), Format: p.format, Mode: "rate", TargetRate: cfg.Rate,
			Batch: cfg.Batch, DataBytes: cfg.Size, Events: pub.seq,
			Requests: pub.requests, Errors: pub.errors, DurationS: pubDur.Seconds(),
			Latency: pub.rtt.Summary(),
		}
		if cfg.Rate == 0 {
			pr.Mode, pr.Window = "closed-loop", cfg.Window
		}
		if pr.DurationS > 0 {
			pr.Rate = float64(pub.seq) / pr.DurationS
		}
		res.Publish = pr
		d.Expected = pub.seq * uint64(final.Connected)
		if want := pub.seq * uint64(final.Connected); want > final.SeqSum {
			d.Missing = int64(want - final.SeqSum)
		}
		d.Drops = d.Gaps + d.Missing
		if cfg.Rate > 0 && pr.Rate < 0.95*cfg.Rate && pubErr == nil && ctx.Err() == nil {
			res.Notes = append(res.Notes, fmt.Sprintf("the publisher fell behind: %.0f events/s of %g asked (try --batch)", pr.Rate, cfg.Rate))
		}
	}
	if d.Foreign > 0 && pub != nil {
		res.Notes = append(res.Notes, fmt.Sprintf("%d deliveries did not carry this run's payload (the server's own events, or another publisher's)", d.Foreign))
	}

	switch {
	case ctx.Err() != nil:
		res.Notes = append(res.Notes, "interrupted: results are partial")
		return res, ErrInterrupted
	case pubErr != nil:
		return res, pubErr
	case stopErr != nil:
		return res, stopErr
	}
	return res, failErr
}

// preflight makes one ordinary request to each stream URL, so that an
// unreachable or wrong target fails at once with a clear message.
func preflight(ctx context.Context, p *plan) error {
	client := &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true, DisableCompression: true}}
	var done []string
	for _, u := range p.streamURLs {
		if s := u.String(); !slices.Contains(done, s) {
			done = append(done, s)
			if err := preflightOne(ctx, p, client, s); err != nil {
				return err
			}
		}
	}
	return nil
}

func preflightOne(ctx context.Context, p *plan, client *http.Client, streamURL string) error {
	ctx, cancel := context.WithTimeout(ctx, p.cfg.ConnectTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, streamURL, nil)
	if err != nil {
		return err
	}
	for k, v := range p.cfg.Header {
		req.Header[k] = v
	}
	req.Header.Set("Accept", "text/event-stream")
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("target unreachable: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("GET %s answered %s: %s", streamURL, resp.Status, strings.TrimSpace(string(msg)))
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(strings.ToLower(ct), "text/event-stream") {
		return fmt.Errorf("GET %s is not an event stream: Content-Type %q", streamURL, ct)
	}
	return nil
}

// serverResult compares the server before and after the streams
// connected.
func serverResult(probe *serverProbe, base, after serverSample, streams int64) *ServerResult {
	var r ServerResult
	switch {
	case len(probe.pids) > 0 && after.rss > 0:
		r.Source, r.PIDs, r.Ports = "proc", probe.pids, probe.ports
		r.RSSBaselineBytes, r.RSSAfterBytes = base.rss, after.rss
	case after.metricsRSS > 0:
		r.Source = "metrics"
		r.RSSBaselineBytes, r.RSSAfterBytes = base.metricsRSS, after.metricsRSS
	}
	if r.RSSAfterBytes > 0 && streams > 0 {
		r.RSSPerStreamKiB = float64(r.RSSAfterBytes-r.RSSBaselineBytes) / 1024 / float64(streams)
	}
	if r.Source == "metrics" || after.goroutines > 0 {
		r.MetricsTargets = len(probe.metricsURLs)
	}
	if after.goroutines > 0 {
		if r.Source == "" {
			r.Source = "metrics"
		}
		r.GoroutinesBaseline, r.GoroutinesAfter = base.goroutines, after.goroutines
		if streams > 0 {
			r.GoroutinesPerStream = float64(after.goroutines-base.goroutines) / float64(streams)
		}
	}
	if r.Source == "" {
		return nil
	}
	return &r
}

// targetList names the targets' addresses, for messages.
func (p *plan) targetList() string {
	var names []string
	for _, t := range p.targets {
		if s := t.Addr.String(); !slices.Contains(names, s) {
			names = append(names, s)
		}
	}
	return strings.Join(names, ", ")
}

// waitFor polls the fleet until cond holds, the fleet fails or ctx ends.
func waitFor(ctx context.Context, fl fleet, cond func(*stats) bool) error {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		if err := fl.err(); err != nil {
			return err
		}
		st := fl.snapshot(false)
		if cond(&st) {
			return nil
		}
		select {
		case <-ctx.Done():
			return ErrInterrupted
		case <-t.C:
		}
	}
}

// drain waits until every live stream has received event last, for at
// most limit.
func drain(ctx context.Context, fl fleet, last uint64, limit time.Duration) {
	deadline := time.NewTimer(limit)
	defer deadline.Stop()
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		m := fl.minSeq()
		if m >= last || fl.err() != nil {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-deadline.C:
			return
		case <-fl.changed():
		case <-t.C:
		}
	}
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// monitor samples the fleet once per interval: for the progress line,
// and for the peak delivery rate while measuring.
type monitor struct {
	fl      fleet
	w       io.Writer
	every   time.Duration
	streams int
	start   time.Time
	phase   atomic.Value // string
	pub     atomic.Pointer[publisher]
	quit    chan struct{}
	done    chan struct{}
	once    sync.Once

	mu        sync.Mutex
	measuring bool
	lastD     int64
	lastT     time.Time
	peak      float64
}

func startMonitor(fl fleet, w io.Writer, every time.Duration, streams int) *monitor {
	m := &monitor{fl: fl, w: w, every: every, streams: streams, start: time.Now(),
		quit: make(chan struct{}), done: make(chan struct{})}
	m.phase.Store("connect")
	m.lastT = m.start
	go m.run()
	return m
}

func (m *monitor) setPhase(p string) { m.phase.Store(p) }

// measure starts the peak rate measurement from deliveries d.
func (m *monitor) measure(d int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.measuring, m.lastD, m.lastT = true, d, time.Now()
}

func (m *monitor) run() {
	defer close(m.done)
	t := time.NewTicker(m.every)
	defer t.Stop()
	for {
		select {
		case <-m.quit:
			return
		case <-t.C:
			m.sample()
		}
	}
}

func (m *monitor) sample() {
	st := m.fl.snapshot(m.w != nil)
	now := time.Now()
	m.mu.Lock()
	elapsed := now.Sub(m.lastT)
	rate := float64(st.Deliveries-m.lastD) / elapsed.Seconds()
	if m.measuring && elapsed >= m.every/2 { // not the stub of an interval at the end
		m.peak = max(m.peak, rate)
	}
	m.lastD, m.lastT = st.Deliveries, now
	m.mu.Unlock()
	if m.w == nil {
		return
	}
	line := fmt.Sprintf("[%6.1fs] %-8s streams %d/%d", now.Sub(m.start).Seconds(), m.phase.Load(), st.live(), m.streams)
	if st.Failed > 0 || st.Closed > 0 {
		line += fmt.Sprintf(" (%d failed, %d closed)", st.Failed, st.Closed)
	}
	line += fmt.Sprintf("  %.0f deliveries/s", rate)
	if st.Latency != nil && st.Latency.Count() > 0 {
		line += fmt.Sprintf("  p99 %s", fmtMs(ms(st.Latency.Quantile(0.99))))
	}
	if pub := m.pub.Load(); pub != nil {
		line += fmt.Sprintf("  published %d", pub.sent.Load())
	}
	line += fmt.Sprintf("  gaps %d\n", st.Gaps)
	_, _ = io.WriteString(m.w, line)
}

// close stops the monitor, after a last progress line, and returns the
// peak delivery rate measured.
func (m *monitor) close() float64 {
	m.once.Do(func() {
		close(m.quit)
		<-m.done
		if m.w != nil {
			m.sample()
		}
	})
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.peak
}
