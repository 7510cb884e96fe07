// Package chaostest is the resume chaos test, shared by the tests of the
// HTTP layer (memory history) and of herald serve (persistent history,
// restarted mid-run).
package chaostest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herald-sse/herald"
	"github.com/herald-sse/herald/sse"
)

// Target is the hub under test.
type Target struct {
	// URL is the hub's base URL, where GET /events is served.
	URL string
	// Publish publishes events in order (through HTTP or the Go API).
	Publish func(events []herald.Event) error
	// Restart, if set, is called once half-way through publishing, with
	// publishing paused: the hub may go away and come back on the same
	// URL. Subscribers keep reconnecting meanwhile.
	Restart func()
}

// Run is the chaos test: subscribers on overlapping selectors drop their
// connections at random moments and reconnect with their last ID while
// numbered events are published; each must end with exactly the events
// it matches, in order, once each. The default run has 100 subscribers
// and 5,000 events; long (go test -long) is the soak run, 200 and 20,000.
func Run(t *testing.T, long bool, target Target) {
	// maxRun is the most events a subscriber reads before it drops the
	// connection: in proportion to the events, so that the default run
	// resumes about as often per subscriber as the soak run.
	subscribers, events, maxRun := 100, 5000, 100
	if long {
		subscribers, events, maxRun = 200, 20000, 400
	}
	const topics = 10
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
	type sub struct {
		selectors []string
		want      []int
	}
	subs := make([]sub, subscribers)
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
			errs <- subscriber(ctx, client, target.URL, s.selectors, s.want, maxRun, rand.New(rand.NewPCG(seed, 7)), &connected, &reconnects)
		}()
	}
	connected.Wait() // everyone is subscribed before the first event

	const batch = 50 // events per publish call: a persistent store syncs per call
	for i := 0; i < events; i += batch {
		if target.Restart != nil && i == events/2 {
			target.Restart()
		}
		evs := make([]herald.Event, batch)
		for j := range evs {
			evs[j] = herald.Event{Topics: eventTopics[i+j], Data: strconv.Itoa(i + j)}
		}
		if err := target.Publish(evs); err != nil {
			t.Fatalf("publish %d-%d: %v", i, i+batch-1, err)
		}
		if i%1000 == 0 {
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
	if reconnects.Load() < int64(subscribers) {
		t.Errorf("only %d reconnects: the test did not exercise resuming", reconnects.Load())
	}
}

// subscriber reads until it has every event in want, dropping the
// connection after a random number of events (1 to maxRun) and resuming
// with the last ID it saw. Any gap, duplicate or reordering is an error.
func subscriber(ctx context.Context, client *http.Client, base string, selectors []string, want []int, maxRun int, rng *rand.Rand, connected *sync.WaitGroup, reconnects *atomic.Int64) error {
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
		budget := 1 + rng.IntN(maxRun)
		for ; budget > 0 && got < len(want); budget-- {
			m, err := dec.Next()
			if err != nil {
				break // the hub ended the stream (restart, slow drop): resume
			}
			if m.Type == "herald.connected" {
				budget++ // the stream's announcement, not an event
				continue
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
