package metrics_test

import (
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/herald-sse/herald"
	"github.com/herald-sse/herald/metrics"
	"github.com/herald-sse/herald/sse"
)

func newHub(t *testing.T, queueBytes int) *herald.Hub {
	t.Helper()
	hub := &herald.Hub{QueueBytes: queueBytes, Heartbeat: -1}
	if err := hub.Open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hub.Close() })
	return hub
}

func subscribe(t *testing.T, hub *herald.Hub, topic string) *herald.Subscriber {
	t.Helper()
	s, err := hub.Subscribe(herald.Topic(topic))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// The collector reports the hub's state at scrape time, and each scrape
// sees what changed since the previous one.
func TestCollectorReadsHubAtScrape(t *testing.T) {
	hub := newHub(t, 0)
	streams := 0
	c := metrics.NewCollector(hub, func() int { return streams })

	want := func(subs, open, topics, queued, published, delivered, dropped string) string {
		return `
# HELP herald_deliveries_total Events queued to subscribers, one per subscriber reached.
# TYPE herald_deliveries_total counter
herald_deliveries_total ` + delivered + `
# HELP herald_events_published_total Events published since the hub started.
# TYPE herald_events_published_total counter
herald_events_published_total ` + published + `
# HELP herald_queued_bytes Bytes waiting in all subscriber queues.
# TYPE herald_queued_bytes gauge
herald_queued_bytes ` + queued + `
# HELP herald_ready 1 when the hub serves without loss (a clustered node: in sync with the log and its broker reachable), as GET /readyz; else 0.
# TYPE herald_ready gauge
herald_ready 1
# HELP herald_streams_open Event streams being served over HTTP.
# TYPE herald_streams_open gauge
herald_streams_open ` + open + `
# HELP herald_subscribers Subscribers registered with the hub.
# TYPE herald_subscribers gauge
herald_subscribers ` + subs + `
# HELP herald_subscribers_dropped_total Subscribers dropped for overflowing their queue.
# TYPE herald_subscribers_dropped_total counter
herald_subscribers_dropped_total ` + dropped + `
# HELP herald_topics Distinct topics subscribed to by name.
# TYPE herald_topics gauge
herald_topics ` + topics + `
`
	}
	if err := testutil.CollectAndCompare(c, strings.NewReader(want("0", "0", "0", "0", "0", "0", "0"))); err != nil {
		t.Errorf("empty hub: %v", err)
	}

	a1, a2 := subscribe(t, hub, "a"), subscribe(t, hub, "a")
	subscribe(t, hub, "b")
	streams = 3
	for _, id := range []string{"1", "2"} {
		if _, err := hub.Publish(herald.Event{Topics: []string{"a"}, ID: id, Data: "x"}); err != nil {
			t.Fatal(err)
		}
	}
	frame, _ := sse.AppendEvent(nil, &sse.Event{ID: "1", Data: "x"})
	queued := 4 * len(frame) // two events, each queued to the two subscribers of a
	if err := testutil.CollectAndCompare(c, strings.NewReader(want("3", "3", "2", strconv.Itoa(queued), "2", "4", "0"))); err != nil {
		t.Errorf("after publishing: %v", err)
	}

	a1.Drain(nil)
	a2.Close()
	streams = 2
	if err := testutil.CollectAndCompare(c, strings.NewReader(want("2", "2", "2", "0", "2", "4", "0"))); err != nil {
		t.Errorf("after draining and closing: %v", err)
	}
}

func TestCollectorCountsDroppedSubscribers(t *testing.T) {
	hub := newHub(t, 10)
	subscribe(t, hub, "a")
	for range 2 { // the second event overflows the non-empty queue
		if _, err := hub.Publish(herald.Event{Topics: []string{"a"}, Data: "0123456789"}); err != nil {
			t.Fatal(err)
		}
	}
	c := metrics.NewCollector(hub, nil)
	const want = `
# HELP herald_subscribers_dropped_total Subscribers dropped for overflowing their queue.
# TYPE herald_subscribers_dropped_total counter
herald_subscribers_dropped_total 1
# HELP herald_subscribers Subscribers registered with the hub.
# TYPE herald_subscribers gauge
herald_subscribers 0
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), "herald_subscribers_dropped_total", "herald_subscribers"); err != nil {
		t.Error(err)
	}
	// Without a streams function there is no herald_streams_open.
	if n := testutil.CollectAndCount(c, "herald_streams_open"); n != 0 {
		t.Errorf("herald_streams_open reported %d times with nil streams", n)
	}
}

func TestHandlerServesRuntimeProcessAndHubMetrics(t *testing.T) {
	hub := newHub(t, 0)
	srv := httptest.NewServer(metrics.Handler(hub, func() int { return 7 }))
	defer srv.Close()

	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("GET: %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	names := []string{"go_goroutines ", "go_memstats_alloc_bytes ", "herald_streams_open 7\n", "herald_events_published_total 0\n"}
	if runtime.GOOS == "linux" {
		names = append(names, "process_resident_memory_bytes ", "process_open_fds ")
	}
	for _, n := range names {
		if !strings.Contains(string(body), "\n"+n) {
			t.Errorf("no %q in the scrape", n)
		}
	}

	resp, err = http.Post(srv.URL, "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "GET, HEAD" ||
		resp.Header.Get("Content-Type") != "application/json" || !strings.Contains(string(body), `"error"`) {
		t.Errorf("POST: %d Allow %q, %q", resp.StatusCode, resp.Header.Get("Allow"), body)
	}
}

// A clustered node that cannot read its log reports herald_ready 0.
func TestReadyGauge(t *testing.T) {
	b := &herald.MemoryBroker{}
	b.SetUnavailable(errors.New("down"))
	hub := &herald.Hub{Broker: b, Heartbeat: -1, Logger: slog.New(slog.DiscardHandler)}
	if err := hub.Open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hub.Close() })
	want := `
# HELP herald_ready 1 when the hub serves without loss (a clustered node: in sync with the log and its broker reachable), as GET /readyz; else 0.
# TYPE herald_ready gauge
herald_ready 0
`
	if err := testutil.CollectAndCompare(metrics.NewCollector(hub, nil), strings.NewReader(want), "herald_ready"); err != nil {
		t.Error(err)
	}
}
