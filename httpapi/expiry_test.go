package httpapi_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/herald-sse/herald"
	"github.com/herald-sse/herald/auth"
	"github.com/herald-sse/herald/httpapi"
	"github.com/herald-sse/herald/sse"
)

// A stream opened with a token that expires 3 s later ends then, on
// every transport: what was published before arrives, then one event
// saying why (so the application fetches a fresh token before its
// EventSource reconnects), then a clean end, within 1 s after exp. The
// verifier's 30 s clock-skew leeway does not extend the stream.
func TestStreamEndsAtTokenExpiry(t *testing.T) {
	cases := []struct{ mode, eventType string }{
		{"engine", ""}, {"goroutine", ""}, {"tls", ""}, {"h2", ""},
		{"engine", "token.gone"}, {"h2", "token.gone"},
	}
	for _, c := range cases {
		name := c.mode
		if c.eventType != "" {
			name += "/" + c.eventType
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel() // each waits 3 s for its token
			testStreamEndsAtTokenExpiry(t, c.mode, c.eventType)
		})
	}
}

func testStreamEndsAtTokenExpiry(t *testing.T, mode, eventType string) {
	v, err := auth.NewVerifier(context.Background(), auth.Config{Secret: testSecret, Leeway: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	th := startTransport(t, mode, func(_ *herald.Hub, h *httpapi.Handler) {
		h.SubscribeAuth, h.ExpiredEvent = v, eventType
	})
	// exp is whole seconds: 3 s after the next one begins.
	exp := time.Unix(time.Now().Unix()+4, 0)
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub": "alice", "exp": exp.Unix(), "herald": map[string][]string{"subscribe": {"t"}},
	}).SignedString(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	s := th.subscribe(t, tok, "t")
	// A stream that outlives its token fails the reads below instead of
	// hanging the test.
	time.AfterFunc(time.Until(exp)+5*time.Second, s.close)
	if _, err := th.hub.Publish(herald.Event{Topics: []string{"t"}, Data: "before"}); err != nil {
		t.Fatal(err)
	}
	first := s.next(t)
	if first.Data != "before" {
		t.Fatalf("first event %q, want the one published before expiry", first.Data)
	}
	m := s.next(t)
	got := time.Now()
	want := eventType
	if want == "" {
		want = "herald.expired"
	}
	if m.Type != want || m.Data != `{"reason":"token_expired"}` || m.LastEventID != first.LastEventID {
		t.Errorf("last event %+v, want type %s, data {\"reason\":\"token_expired\"}, no id (Last-Event-ID stays %q)", m, want, first.LastEventID)
	}
	if got.Before(exp) {
		t.Errorf("expired event %v before exp", exp.Sub(got))
	}
	if late := got.Sub(exp); late > time.Second {
		t.Errorf("expired event %v after exp, want within 1 s", late)
	}
	if _, err := s.dec.Next(); !errors.Is(err, io.EOF) {
		t.Errorf("after the expired event: %v, want a clean end", err)
	}
	waitFor(t, "the stream's slot to be freed", func() bool {
		return th.handler.ActiveStreams() == 0 && th.hub.Stats().Subscribers == 0
	})
}

// A token that expires while its stream's replay is being written stops
// the replay (nothing more is sent after exp) and ends the stream with the
// expired event alone: live events queued meanwhile must not follow a
// replay cut short, which would leave a gap before them.
func TestTokenExpiresDuringReplay(t *testing.T) {
	for _, mode := range []string{"engine", "goroutine"} {
		t.Run(mode, func(t *testing.T) {
			gate := make(chan struct{})
			hist := &gatedHistory{MemoryHistory: herald.NewMemoryHistory(herald.Retention{}), gate: gate}
			th := startTransport(t, mode, func(hub *herald.Hub, h *httpapi.Handler) {
				hub.History = hist
				h.SubscribeAuth = expiringAuth{ttl: 500 * time.Millisecond}
			})
			for range 3 {
				if _, err := th.hub.Publish(herald.Event{Topics: []string{"t"}, Data: "old"}); err != nil {
					t.Fatal(err)
				}
			}
			req, _ := http.NewRequest(http.MethodGet, th.srv.URL+"/events?topic=t&lastEventId=earliest", nil)
			resp, err := th.client(false, nil).Do(req)
			if err != nil || resp.StatusCode != http.StatusOK {
				t.Fatalf("stream: %v %v", resp, err)
			}
			defer resp.Body.Close()
			// The replay waits in the history until the subscription
			// has expired; a live event is queued meanwhile.
			if _, err := th.hub.Publish(herald.Event{Topics: []string{"t"}, Data: "live"}); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "the subscription to expire", func() bool { return th.hub.Stats().Expired == 1 })
			close(gate)
			dec := sse.NewDecoder(resp.Body)
			m, err := dec.Next()
			if err != nil || m.Type != httpapi.DefaultExpiredEvent {
				t.Fatalf("after the replay's expiry: %+v %v, want the expired event", m, err)
			}
			if _, err := dec.Next(); !errors.Is(err, io.EOF) {
				t.Errorf("after the expired event: %v, want a clean end", err)
			}
		})
	}
}

// expiringAuth lets every request subscribe to everything, for ttl.
type expiringAuth struct{ ttl time.Duration }

func (a expiringAuth) Authenticate(*http.Request) (*herald.Identity, error) {
	return &herald.Identity{Subject: "u", Subscribe: []herald.Selector{herald.All{}}, Expires: time.Now().Add(a.ttl)}, nil
}

// gatedHistory holds a replay's first page until gate is closed.
type gatedHistory struct {
	*herald.MemoryHistory
	gate chan struct{}
}

func (g *gatedHistory) Replay(after, upTo uint64, sels []herald.Selector, fn func([]herald.Record) error) error {
	return g.MemoryHistory.Replay(after, upTo, sels, func(recs []herald.Record) error {
		<-g.gate
		return fn(recs)
	})
}
