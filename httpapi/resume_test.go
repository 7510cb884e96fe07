package httpapi_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/herald-sse/herald"
	"github.com/herald-sse/herald/httpapi"
	"github.com/herald-sse/herald/internal/chaostest"
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
				{herald.NewEpoch() + "-5", herald.ResetForeign},
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

// The reset event's name is configurable, and with nothing published yet
// it still carries an ID (position 0), so a client that drops before the
// first event resumes without missing what came meanwhile.
func TestResetEventNameAndEmptyHistory(t *testing.T) {
	th := startTransport(t, "engine", func(_ *herald.Hub, h *httpapi.Handler) { h.ResetEvent = "app.reload" })
	c := th.client(false, nil)
	dec := th.get(t, c, url.Values{"topic": {"a"}}, http.Header{"Last-Event-Id": {"x-1"}})
	m, err := dec.Next()
	if err != nil || m.Type != "app.reload" || !strings.HasSuffix(m.LastEventID, "-0") {
		t.Fatalf("got %+v, %v; want app.reload with id <epoch>-0", m, err)
	}
	publishN(t, th.hub, "a", 0, 2)
	again := th.get(t, c, url.Values{"topic": {"a"}}, http.Header{"Last-Event-Id": {m.LastEventID}})
	expectData(t, again, "0", "1")
}

// Subscribers on overlapping selectors drop their connections at random
// moments and reconnect with their last ID while numbered events are
// published: each ends with exactly the events it matches, in order, once
// each (chaostest.Run; -long for the soak size).
func TestChaosResume(t *testing.T) {
	for _, mode := range []string{"engine", "goroutine"} {
		t.Run(mode, func(t *testing.T) {
			th := startTransport(t, mode, nil)
			chaostest.Run(t, *long, chaostest.Target{
				URL: th.srv.URL,
				Publish: func(events []herald.Event) error {
					_, err := th.hub.Publish(events...)
					return err
				},
			})
		})
	}
}

// "earliest" replays what is retained even after retention removed older
// events (it is not an ID that can expire).
func TestEarliestAfterRetention(t *testing.T) {
	th := startTransport(t, "engine", func(hub *herald.Hub, _ *httpapi.Handler) {
		hub.History = herald.NewMemoryHistory(herald.Retention{MaxEvents: 3})
	})
	publishN(t, th.hub, "a", 0, 10)
	dec := th.get(t, th.client(false, nil), url.Values{"topic": {"a"}, "lastEventId": {herald.Earliest}}, nil)
	expectData(t, dec, "7", "8", "9")
	publishN(t, th.hub, "a", 10, 11)
	expectData(t, dec, "10")
}

// failingHistory refuses to store anything, as a full disk would.
type failingHistory struct{ herald.History }

func (failingHistory) Append([]herald.Record) (func() error, error) {
	return nil, errors.New("no space left on device")
}

// A publish the history cannot store is not acknowledged: 503 with
// Retry-After and the reason, so the publisher retries.
func TestPublishStoreFailureIs503(t *testing.T) {
	th := startTransport(t, "engine", func(hub *herald.Hub, _ *httpapi.Handler) {
		hub.History = failingHistory{herald.NewMemoryHistory(herald.Retention{})}
	})
	resp, err := th.client(false, nil).Post(th.srv.URL+"/publish", "application/x-www-form-urlencoded", strings.NewReader("topic=a&data=x"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct{ Error string }
	_ = json.NewDecoder(resp.Body).Decode(&body)
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" || !strings.Contains(body.Error, "no space left") {
		t.Fatalf("status %d, Retry-After %q, error %q", resp.StatusCode, resp.Header.Get("Retry-After"), body.Error)
	}
	if th.logs.take("request rejected") != 1 {
		t.Error("not logged once")
	}
}

// A publisher ID identifies one retained event: reusing it would make a
// resume after it ambiguous (and could skip events), so it is refused
// with 409 until retention has removed the first event.
func TestDuplicatePublisherID(t *testing.T) {
	th := startTransport(t, "engine", func(hub *herald.Hub, _ *httpapi.Handler) {
		hub.History = herald.NewMemoryHistory(herald.Retention{MaxEvents: 2})
	})
	c := th.client(false, nil)
	post := func(body string) int {
		t.Helper()
		resp, err := c.Post(th.srv.URL+"/publish", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := post(`{"topic":"a","id":"42","data":"first"}`); got != http.StatusOK {
		t.Fatalf("first publish: %d", got)
	}
	post(`{"topic":"a","data":"a2"}`)
	if got := post(`{"topic":"b","id":"42","data":"again"}`); got != http.StatusConflict {
		t.Fatalf("reused id: status %d, want 409", got)
	}
	// Resuming after 42 is unambiguous: a2 follows.
	dec := th.get(t, c, url.Values{"topic": {"a"}}, http.Header{"Last-Event-Id": {"42"}})
	expectData(t, dec, "a2")
	post(`{"topic":"a","data":"a3"}`) // retention (2 events) removes 42
	if got := post(`{"topic":"a","id":"42","data":"later"}`); got != http.StatusOK {
		t.Fatalf("id free again after retention: status %d", got)
	}
}
