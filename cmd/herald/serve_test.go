package main

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/url"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/herald-sse/herald/sse"
)

// waitTimeout bounds every wait for a condition, so a broken test fails
// instead of hanging.
const waitTimeout = 10 * time.Second

// logBuf collects what a serve writes, safe for its goroutines, and lets a
// test wait for a condition on it.
type logBuf struct {
	mu      sync.Mutex
	b       strings.Builder
	changed chan struct{} // 1 slot: a write since the last wait
}

func newLogBuf() *logBuf { return &logBuf{changed: make(chan struct{}, 1)} }

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	l.b.Write(p)
	l.mu.Unlock()
	select {
	case l.changed <- struct{}{}:
	default:
	}
	return len(p), nil
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// waitFor returns once cond holds for what was written, false if it did
// not within waitTimeout or exited was closed first.
func (l *logBuf) waitFor(cond func(string) bool, exited <-chan struct{}) bool {
	timeout := time.After(waitTimeout)
	for {
		if cond(l.String()) {
			return true
		}
		select {
		case <-l.changed:
		case <-exited:
			return cond(l.String())
		case <-timeout:
			return false
		}
	}
}

// server is a `herald serve` running in this process.
type server struct {
	base           string // http://host:port
	stdout, stderr *logBuf
	stop           context.CancelFunc // a signal: graceful shutdown
	exited         chan struct{}      // closed when run returned
	code           int                // run's exit status, once exited
}

// startServe runs `herald serve args...` and returns once it listens. The
// test's cleanup stops it.
func startServe(t *testing.T, args ...string) *server {
	t.Helper()
	// Tests publish without tokens unless they configure keys themselves.
	keyFlag := func(a string) bool {
		return strings.HasSuffix(a, "jwt-secret") || strings.HasSuffix(a, "jwt-key-file") || a == "--jwks-url"
	}
	if !slices.ContainsFunc(args, keyFlag) {
		args = append(args, "--open-publish")
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &server{stdout: newLogBuf(), stderr: newLogBuf(), stop: cancel, exited: make(chan struct{})}
	go func() {
		defer close(s.exited)
		s.code = run(ctx, append([]string{"serve"}, args...), s.stdout, s.stderr)
	}()
	t.Cleanup(func() {
		cancel()
		<-s.exited
	})
	const prefix = "herald serving on "
	if !s.stdout.waitFor(func(out string) bool { return strings.Contains(out, "\n") }, s.exited) {
		t.Fatalf("serve %q did not start: stderr %q", args, s.stderr.String())
	}
	line, _, _ := strings.Cut(s.stdout.String(), "\n")
	if s.base = strings.TrimPrefix(line, prefix); s.base == line {
		t.Fatalf("serve printed %q, want %q and the address", line, prefix)
	}
	return s
}

// shutdown stops s as a signal would and returns its exit status.
func (s *server) shutdown() int {
	s.stop()
	<-s.exited
	return s.code
}

// freshConns makes every request on its own connection, so that the kernel
// picks a listener for each.
var freshConns = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: waitTimeout}

// get requests base+path on a new connection and returns status and body.
func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := freshConns.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}

// Two `serve --reuseport` share one port and both take connections; a
// third without the flag cannot listen there and says why. When one of the
// two stops, the port stays open: the other serves every new request.
func TestReusePortSharesThePort(t *testing.T) {
	if !reusePortSupported {
		t.Skip("SO_REUSEPORT is not supported on " + runtime.GOOS)
	}
	t.Setenv("HERALD_HEARTBEAT", "0")
	// Reserve a free port without a window in which another process could
	// take it: hold it with SO_REUSEPORT until the first herald listens.
	hold, err := (&net.ListenConfig{Control: setReusePort}).Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := hold.Addr().String()
	first := startServe(t, "--addr", addr, "--reuseport")
	hold.Close()
	second := startServe(t, "--addr", addr, "--reuseport")
	if first.base != "http://"+addr || second.base != first.base {
		t.Fatalf("serving on %s and %s, want both on %s", first.base, second.base, addr)
	}
	for _, s := range []*server{first, second} {
		if !strings.Contains(s.stderr.String(), "reuseport=true") {
			t.Errorf("startup log does not say reuseport is on: %q", s.stderr.String())
		}
	}

	var errOut strings.Builder
	code := run(context.Background(), []string{"serve", "--addr", addr}, io.Discard, &errOut)
	if code != 1 || !strings.Contains(errOut.String(), "address already in use") || !strings.Contains(errOut.String(), "--reuseport") {
		t.Errorf("serve without --reuseport on a shared port: exit %d, stderr %q; want 1, address in use and a hint", code, errOut.String())
	}

	// The kernel spreads new connections over both listeners (by a hash of
	// the client address): each one answers some. Unknown paths are logged
	// by the server that answered them.
	rejected := func(s *server) int { return strings.Count(s.stderr.String(), "request rejected") }
	for i := 0; rejected(first) == 0 || rejected(second) == 0; i++ {
		if i == 200 {
			t.Fatalf("after %d connections, the first served %d and the second %d", i, rejected(first), rejected(second))
		}
		if status, _ := get(t, first.base+"/nope"); status != http.StatusNotFound {
			t.Fatalf("GET /nope: %d", status)
		}
	}

	if code := first.shutdown(); code != 0 {
		t.Fatalf("first serve exited with %d", code)
	}
	before := rejected(second)
	const n = 20
	for range n {
		if status, _ := get(t, first.base+"/nope"); status != http.StatusNotFound {
			t.Fatalf("GET /nope after the first stopped: %d", status)
		}
		if status, body := get(t, first.base+"/healthz"); status != http.StatusOK {
			t.Fatalf("GET /healthz after the first stopped: %d %q", status, body)
		}
	}
	if got := rejected(second) - before; got != n {
		t.Errorf("the second served %d of %d requests after the first stopped", got, n)
	}
}

func TestReusePortFromEnvAndUnsupportedPlatforms(t *testing.T) {
	t.Setenv("HERALD_HEARTBEAT", "0")
	t.Setenv("HERALD_REUSEPORT", "true")
	if !reusePortSupported {
		var errOut strings.Builder
		code := run(context.Background(), []string{"serve", "--addr", "127.0.0.1:0"}, io.Discard, &errOut)
		if code != 2 || !strings.Contains(errOut.String(), "not supported") {
			t.Errorf("--reuseport on %s: exit %d, %q; want 2 and not supported", runtime.GOOS, code, errOut.String())
		}
		return
	}
	s := startServe(t, "--addr", "127.0.0.1:0")
	if !strings.Contains(s.stderr.String(), "reuseport=true") {
		t.Errorf("HERALD_REUSEPORT=true: startup log %q", s.stderr.String())
	}
	s = startServe(t, "--addr", "127.0.0.1:0", "--reuseport=false")
	if !strings.Contains(s.stderr.String(), "reuseport=false") {
		t.Errorf("--reuseport=false over HERALD_REUSEPORT=true: startup log %q", s.stderr.String())
	}
}

// scrape reads /metrics and returns its samples without labels.
func scrape(t *testing.T, base string) map[string]float64 {
	t.Helper()
	status, body := get(t, base+"/metrics")
	if status != http.StatusOK {
		t.Fatalf("GET /metrics: %d %q", status, body)
	}
	m := make(map[string]float64)
	for line := range strings.Lines(body) {
		name, value, ok := strings.Cut(strings.TrimSpace(line), " ")
		if !ok || strings.HasPrefix(name, "#") || strings.Contains(name, "{") {
			continue
		}
		v, err := strconv.ParseFloat(value, 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		m[name] = v
	}
	return m
}

// /metrics reports the hub as it is at each scrape, and the runtime and
// process figures `herald bench` reads.
func TestMetricsFollowStreamsAndPublishes(t *testing.T) {
	t.Setenv("HERALD_HEARTBEAT", "0")
	s := startServe(t, "--addr", "127.0.0.1:0", "--log-level", "error")

	m := scrape(t, s.base)
	for name, want := range map[string]float64{
		"herald_streams_open": 0, "herald_subscribers": 0, "herald_topics": 0,
		"herald_events_published_total": 0, "herald_deliveries_total": 0,
		"herald_subscribers_dropped_total": 0, "herald_queued_bytes": 0,
	} {
		if got, ok := m[name]; !ok || got != want {
			t.Errorf("idle: %s = %v (present %v), want %v", name, got, ok, want)
		}
	}
	wantPositive := []string{"go_goroutines", "go_memstats_heap_alloc_bytes"}
	if runtime.GOOS == "linux" {
		wantPositive = append(wantPositive, "process_resident_memory_bytes")
	}
	for _, name := range wantPositive {
		if m[name] <= 0 {
			t.Errorf("%s = %v, want > 0", name, m[name])
		}
	}

	var decoders []*sse.Decoder
	for _, topic := range []string{"a", "a", "b"} {
		resp, err := http.Get(s.base + "/events?topic=" + topic)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		decoders = append(decoders, streamDecoder(t, resp.Body))
	}
	m = scrape(t, s.base)
	if m["herald_streams_open"] != 3 || m["herald_subscribers"] != 3 || m["herald_topics"] != 2 {
		t.Errorf("3 streams on a, a, b: streams_open %v, subscribers %v, topics %v",
			m["herald_streams_open"], m["herald_subscribers"], m["herald_topics"])
	}

	for _, topic := range []string{"a", "b"} {
		resp, err := http.PostForm(s.base+"/publish", url.Values{"topic": {topic}, "data": {topic}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	for i, topic := range []string{"a", "a", "b"} {
		if ev, err := decoders[i].Next(); err != nil || ev.Data != topic {
			t.Fatalf("stream %d received %+v, %v; want %s", i, ev, err, topic)
		}
	}
	m = scrape(t, s.base)
	if m["herald_events_published_total"] != 2 || m["herald_deliveries_total"] != 3 {
		t.Errorf("after 2 events reaching 3 streams: published %v, deliveries %v",
			m["herald_events_published_total"], m["herald_deliveries_total"])
	}
}

// --metrics=false leaves /metrics to the API, which answers it like any
// unknown path.
func TestMetricsOff(t *testing.T) {
	s := startServe(t, "--addr", "127.0.0.1:0", "--metrics=false")
	resp, err := freshConns.Get(s.base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct{ Error string }
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || resp.StatusCode != http.StatusNotFound ||
		resp.Header.Get("Content-Type") != "application/json" || body.Error != "not found" {
		t.Errorf("GET /metrics with --metrics=false: %d %q, %+v %v; want 404 JSON not found",
			resp.StatusCode, resp.Header.Get("Content-Type"), body, err)
	}
	if !strings.Contains(s.stderr.String(), "metrics=false") {
		t.Errorf("startup log does not say metrics are off: %q", s.stderr.String())
	}
}

func TestHelpListsReusePortAndMetrics(t *testing.T) {
	var help strings.Builder
	if code := run(context.Background(), []string{"serve", "--help"}, &help, io.Discard); code != 0 {
		t.Fatalf("serve --help exit %d", code)
	}
	for _, want := range []string{"--reuseport", "HERALD_REUSEPORT", "--metrics", "HERALD_METRICS", "/metrics"} {
		if !strings.Contains(help.String(), want) {
			t.Errorf("serve --help does not mention %s", want)
		}
	}
}
