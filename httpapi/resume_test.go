package httpapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herald-sse/herald"
	"github.com/herald-sse/herald/httpapi"
	"github.com/herald-sse/herald/sse"
)

// get opens a stream with extra request headers and returns its decoder.
func (th *transportHub) get(t *testing.T, c *http.Client, query url.Values, header http.Header) *sse.Decoder {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, th.srv.URL+"/events?"+query.Encode(), nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET /events: %v", err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /events: status %d", resp.StatusCode)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return sse.NewDecoder(resp.Body)
}

func publishN(t *testing.T, hub *herald.Hub, topic string, from, to int) []string {
	t.Helper()
	var ids []string
	for i := from; i < to; i++ {
		got, err := hub.Publish(herald.Event{Topics: []string{topic}, Data: strconv.Itoa(i)})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, got[0])
	}
	return ids
}

// expectData reads events and checks their data, in order.
func expectData(t *testing.T, dec *sse.Decoder, want ...string) []sse.Message {
	t.Helper()
	var got []sse.Message
	for _, w := range want {
		m, err := dec.Next()
		if err != nil {
			t.Fatalf("want event %q: %v", w, err)
		}
		if m.Data != w {
			t.Fatalf("got event %q (type %q), want %q", m.Data, m.Type, w)
		}
		got = append(got, m)
	}
	return got
}

func TestResume(t *testing.T) {
	for _, mode := range transports {
		t.Run(mode, func(t *testing.T) {
			th := startTransport(t, mode, nil)
			c := th.client(false, nil)
			ids := publishN(t, th.hub, "a", 0, 5)
			publishN(t, th.hub, "other", 100, 103) // not for these subscribers

			t.Run("header", func(t *testing.T) {
				dec := th.get(t, c, url.Values{"topic": {"a"}}, http.Header{"Last-Event-Id": {ids[1]}})
				msgs := expectData(t, dec, "2", "3", "4") // strictly after, only matching
				if msgs[2].LastEventID != ids[4] {
					t.Errorf("id of the last replayed event %q, want %q", msgs[2].LastEventID, ids[4])
				}
				if dec.Retry() != httpapi.DefaultRetry {
					t.Errorf("retry %v at stream start, want %v", dec.Retry(), httpapi.DefaultRetry)
				}
				publishN(t, th.hub, "a", 5, 6)
				expectData(t, dec, "5") // then live, no duplicate, no gap
			})
			for _, param := range []string{"lastEventId", "lastEventID", "last_event_id"} {
				t.Run("query "+param, func(t *testing.T) {
					dec := th.get(t, c, url.Values{"topic": {"a"}, param: {ids[3]}}, nil)
					expectData(t, dec, "4", "5")
				})
			}
			t.Run("earliest", func(t *testing.T) {
				dec := th.get(t, c, url.Values{"topic": {"a"}, "lastEventId": {herald.Earliest}}, nil)
				expectData(t, dec, "0", "1", "2", "3", "4", "5")
			})
			t.Run("header wins over query", func(t *testing.T) {
				dec := th.get(t, c, url.Values{"topic": {"a"}, "lastEventId": {ids[0]}}, http.Header{"Last-Event-Id": {ids[3]}})
				expectData(t, dec, "4", "5")
			})
		})
	}
}

// A publisher's own ID resumes like a generated one.
func TestResumeFromPublisherID(t *testing.T) {
	th := startTransport(t, "engine", nil)
	for i, id := range []string{"order-1", "order-2", "order-3"} {
		if _, err := th.hub.Publish(herald.Event{Topics: []string{"orders"}, ID: id, Data: strconv.Itoa(i)}); err != nil {
			t.Fatal(err)
		}
	}
	dec := th.get(t, th.client(false, nil), url.Values{"topic": {"orders"}}, http.Header{"Last-Event-Id": {"order-1"}})
	msgs := expectData(t, dec, "1", "2")
	if msgs[1].LastEventID != "order-3" {
		t.Errorf("replayed event carries id %q, want the publisher's order-3", msgs[1].LastEventID)
	}
}

// An ID the hub cannot resume from never gets an error status (which
// would stop an EventSource for good): the stream starts live with a
// reset event saying why, whose id lets the next reconnect resume.
func TestResumeImpossibleSendsReset(t *testing.T) {
	for _, mode := range transports {
		t.Run(mode, func(t *testing.T) {
			th := startTransport(t, mode, func(hub *herald.Hub, _ *httpapi.Handler) {
				hub.History = herald.NewMemoryHistory(herald.Retention{MaxEvents: 3})
			})
			c := th.client(false, nil)
			ids := publishN(t, th.hub, "a", 0, 10) // only 7, 8, 9 are kept
			epoch, _, _ := strings.Cut(ids[0], "-")
			newest := ids[9]
			for _, tc := range []struct{ lastID, reason string }{
				{ids[2], herald.ResetExpired},
				{"no-such-id", herald.ResetUnknown},
				{"garbage", herald.ResetUnknown},
				{epoch + "-zzzzzz", herald.ResetUnknown}, // not issued yet
				{"Qk9HVVNfRVBPQ0g-5", herald.ResetForeign},
				{strings.Repeat("x", 5000), herald.ResetUnknown},
			} {
				dec := th.get(t, c, url.Values{"topic": {"a"}}, http.Header{"Last-Event-Id": {tc.lastID}})
				m, err := dec.Next()
				if err != nil {
					t.Fatalf("%.20s: %v", tc.lastID, err)
				}
				var body struct{ Reason, LastEventID, Message string }
				if err := json.Unmarshal([]byte(m.Data), &body); err != nil {
					t.Fatalf("reset data %q: %v", m.Data, err)
				}
				if m.Type != httpapi.DefaultResetEvent || body.Reason != tc.reason || body.LastEventID != tc.lastID || body.Message == "" {
					t.Errorf("%.20s: got %s %+v, want %s with reason %s", tc.lastID, m.Type, body, httpapi.DefaultResetEvent, tc.reason)
				}
				if m.LastEventID != newest {
					t.Errorf("reset event id %q, want the newest event's %q", m.LastEventID, newest)
				}
				newest = publishN(t, th.hub, "a", 10, 11)[0]
				expectData(t, dec, "10") // then live
			}
		})
	}
}

// The reset event's name is configurable, and a hub with no history yet
// clears the client's last ID instead of naming one.
func TestResetEventNameAndEmptyHistory(t *testing.T) {
	th := startTransport(t, "engine", func(_ *herald.Hub, h *httpapi.Handler) { h.ResetEvent = "app.reload" })
	dec := th.get(t, th.client(false, nil), url.Values{"topic": {"a"}}, http.Header{"Last-Event-Id": {"x-1"}})
	m, err := dec.Next()
	if err != nil || m.Type != "app.reload" || m.LastEventID != "" {
		t.Fatalf("got %+v, %v; want app.reload with an empty id", m, err)
	}
}

// 200 subscribers on overlapping selectors drop their connections at
// random moments and reconnect with their last ID while 20,000 numbered
// events are published: each ends with exactly the events it matches, in
// order, once each.
func TestChaosResume(t *testing.T) {
	for _, mode := range []string{"engine", "goroutine"} {
		t.Run(mode, func(t *testing.T) {
			th := startTransport(t, mode, nil)
			runChaos(t, chaosTarget{hub: func() *herald.Hub { return th.hub }, url: th.srv.URL}, nil)
		})
	}
}

// chaosTarget is where the chaos test publishes and subscribes; hub is
// called for every publish so a test can replace the hub mid-run.
type chaosTarget struct {
	hub func() *herald.Hub
	url string
}

// runChaos runs the chaos test; if restart is set, it is called once
// half-way through publishing, with publishing paused.
func runChaos(t *testing.T, target chaosTarget, restart func()) {
	const (
		subscribers = 200
		events      = 20000
		topics      = 10
	)
	if testing.Short() {
		t.Skip("chaos test skipped in -short mode")
	}
	rng := rand.New(rand.NewPCG(1, 2))
	// Event i goes to one or two topics.
	eventTopics := make([][]string, events)
	for i := range eventTopics {
		eventTopics[i] = []string{fmt.Sprintf("t%d", rng.IntN(topics))}
		if rng.IntN(4) == 0 {
			eventTopics[i] = append(eventTopics[i], fmt.Sprintf("t%d", rng.IntN(topics)))
		}
	}
	type subscriber struct {
		selectors []string
		want      []int
	}
	subs := make([]subscriber, subscribers)
	for i := range subs {
		s := &subs[i]
		if i%25 == 0 {
			s.selectors = []string{herald.AllTopics}
		} else {
			for range 1 + rng.IntN(3) {
				s.selectors = append(s.selectors, fmt.Sprintf("t%d", rng.IntN(topics)))
			}
		}
		sels := make([]herald.Selector, len(s.selectors))
		for j, raw := range s.selectors {
			sels[j], _ = herald.ParseSelector(raw)
		}
		for e, ts := range eventTopics {
			if herald.Matches(sels, ts) {
				s.want = append(s.want, e)
			}
		}
	}

	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: subscribers}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var connected sync.WaitGroup
	connected.Add(subscribers)
	var reconnects atomic.Int64
	errs := make(chan error, subscribers)
	for i := range subs {
		s := subs[i]
		seed := uint64(i)
		go func() {
			errs <- chaosSubscriber(ctx, client, target.url, s.selectors, s.want, rand.New(rand.NewPCG(seed, 7)), &connected, &reconnects)
		}()
	}
	connected.Wait() // everyone is subscribed before the first event

	for i := range events {
		if restart != nil && i == events/2 {
			restart()
		}
		data := strconv.Itoa(i)
		if _, err := target.hub().Publish(herald.Event{Topics: eventTopics[i], Data: data}); err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
		if i%500 == 0 {
			time.Sleep(time.Millisecond) // let reconnects interleave with publishing; pacing, not synchronisation
		}
	}
	timeout := time.After(2 * time.Minute)
	for range subscribers {
		select {
		case err := <-errs:
			if err != nil {
				t.Error(err)
			}
		case <-timeout:
			t.Fatal("subscribers did not receive everything within 2 minutes")
		}
	}
	t.Logf("%d reconnects", reconnects.Load())
	if reconnects.Load() < subscribers {
		t.Errorf("only %d reconnects: the test did not exercise resuming", reconnects.Load())
	}
}

// chaosSubscriber reads until it has every event in want, dropping the
// connection after a random number of events and resuming with the last
// ID it saw. Any gap, duplicate or reordering is an error.
func chaosSubscriber(ctx context.Context, client *http.Client, base string, selectors []string, want []int, rng *rand.Rand, connected *sync.WaitGroup, reconnects *atomic.Int64) error {
	q := url.Values{"topic": selectors}
	lastID := ""
	got := 0
	first := true
	for got < len(want) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/events?"+q.Encode(), nil)
		if lastID != "" {
			req.Header.Set("Last-Event-ID", lastID)
		}
		resp, err := client.Do(req)
		if err != nil || resp.StatusCode != http.StatusOK {
			if err == nil {
				resp.Body.Close()
				err = fmt.Errorf("status %d", resp.StatusCode)
			}
			if ctx.Err() != nil {
				return fmt.Errorf("%v: gave up after %d of %d events: %v", selectors, got, len(want), err)
			}
			time.Sleep(10 * time.Millisecond) // the hub is restarting: back off as a client would
			continue
		}
		if first {
			connected.Done()
			first = false
		} else {
			reconnects.Add(1)
		}
		dec := sse.NewDecoder(resp.Body)
		budget := 1 + rng.IntN(400)
		for ; budget > 0 && got < len(want); budget-- {
			m, err := dec.Next()
			if err != nil {
				break // the hub ended the stream (restart, slow drop): resume
			}
			if m.Type != "message" {
				resp.Body.Close()
				return fmt.Errorf("%v: unexpected %s event %q after %d events", selectors, m.Type, m.Data, got)
			}
			if m.Data != strconv.Itoa(want[got]) {
				resp.Body.Close()
				return fmt.Errorf("%v: event %d is %q, want %d", selectors, got, m.Data, want[got])
			}
			got++
			lastID = m.LastEventID
		}
		resp.Body.Close() // drop the connection mid-stream
	}
	return nil
}
