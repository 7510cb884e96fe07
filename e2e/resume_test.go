package e2e

import (
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herald-sse/herald"
	"github.com/herald-sse/herald/httpapi"
	"github.com/herald-sse/herald/web"
)

// Chromium's EventSource, whose stream the hub ends mid-way (the hub is
// replaced by a successor on the same history, as in a restart), reconnects
// by itself with Last-Event-ID and receives every event exactly once: those
// published while it was away by replay, then live ones.
func TestEventSourceResumesAfterHubEndsStream(t *testing.T) {
	requireBrowser(t)
	history := herald.NewMemoryHistory(herald.Retention{})
	newAPI := func() *httpapi.Handler {
		hub := &herald.Hub{History: history}
		if err := hub.Open(); err != nil {
			t.Fatal(err)
		}
		return &httpapi.Handler{Hub: hub, OpenPublish: true, Page: web.Handler(), Retry: 300 * time.Millisecond}
	}
	var current atomic.Pointer[httpapi.Handler]
	first := newAPI()
	current.Store(first)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		current.Load().ServeHTTP(w, r)
	}))
	srv.Config.ConnContext = httpapi.ConnContext
	srv.Start()
	t.Cleanup(func() {
		current.Load().Hub.Close()
		srv.Close()
	})

	publish := func(hub *herald.Hub, from, to int) {
		t.Helper()
		for i := from; i < to; i++ {
			if _, err := hub.Publish(herald.Event{Topics: []string{"resume"}, Data: strconv.Itoa(i)}); err != nil {
				t.Fatal(err)
			}
		}
	}
	var res struct {
		Received []struct {
			Data        string
			LastEventID string `json:"lastEventId"`
		}
		Opens, Errors int
		Failure       string
		Diagnostics   []string
	}
	run := startNode(t, "resume.mjs", srv.URL, map[string]any{"topic": "resume", "end": "END", "timeoutMs": 30000})
	done := make(chan struct{})
	var finished *nodeRun
	go func() { finished = <-run; close(done) }()
	waitSubscribers(t, first.Hub, 1, done)
	publish(first.Hub, 0, 50)

	// The successor takes new requests; closing the first hub ends its
	// stream cleanly after what it had queued. Events 50-99 are published
	// while the browser waits its 300 ms retry delay.
	second := newAPI()
	current.Store(second)
	first.Hub.Close()
	publish(second.Hub, 50, 100)
	waitSubscribers(t, second.Hub, 1, done)
	publish(second.Hub, 100, 150)
	if _, err := second.Hub.Publish(herald.Event{Topics: []string{"resume"}, Data: "END"}); err != nil {
		t.Fatal(err)
	}
	<-done
	ended := make(chan *nodeRun, 1)
	ended <- finished
	checkNode(t, "resume.mjs", ended, &res)

	for _, d := range res.Diagnostics {
		t.Logf("page: %s", d)
	}
	if res.Opens != 2 {
		t.Errorf("EventSource opened %d times, want 2 (one reconnect)", res.Opens)
	}
	if len(res.Received) != 150 {
		t.Errorf("received %d events, want 150", len(res.Received))
	}
	for i, m := range res.Received {
		if m.Data != strconv.Itoa(i) {
			t.Fatalf("event %d has data %q: a gap, duplicate or reordering", i, m.Data)
		}
	}
}

// waitSubscribers waits until hub has n subscribers, or the browser script
// ended (it failed).
func waitSubscribers(t *testing.T, hub *herald.Hub, n int, scriptDone <-chan struct{}) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for hub.Stats().Subscribers < n {
		select {
		case <-scriptDone:
			t.Fatal("the browser script ended before subscribing")
		case <-deadline:
			t.Fatal("the browser did not subscribe within 30 s")
		case <-time.After(5 * time.Millisecond): // polling: the hub has no subscription event
		}
	}
}
