package herald

import (
	"errors"
	"runtime"
	"sync"
	"testing"
	"time"
)

// A subscription with an expiry ends then, with ErrSubscriptionExpired,
// however long the heartbeat (here none at all): what was queued before
// can still be drained, and a subscriber without an expiry stays.
func TestSubscriptionEndsAtExpiry(t *testing.T) {
	h := newTestHub(t, 0)
	exp := time.Now().Add(300 * time.Millisecond)
	s, err := h.SubscribeWith(SubscribeOptions{Selectors: []Selector{Topic("t")}, Expires: exp})
	if err != nil {
		t.Fatal(err)
	}
	forever, err := h.Subscribe(Topic("t"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.Publish(Event{Topics: []string{"t"}, Data: "before"}); err != nil {
		t.Fatal(err)
	}
	<-s.Done()
	ended := time.Now()
	if ended.Before(exp) {
		t.Fatalf("ended %v before its expiry", exp.Sub(ended))
	}
	if late := ended.Sub(exp); late > time.Second {
		t.Errorf("ended %v after its expiry, want within 1 s", late)
	}
	if !errors.Is(s.Err(), ErrSubscriptionExpired) {
		t.Fatalf("Err = %v, want ErrSubscriptionExpired", s.Err())
	}
	if frames := s.Drain(nil); len(frames) != 1 {
		t.Errorf("%d frames left to drain after expiry, want the 1 queued before", len(frames))
	}
	if removed, _ := forever.Removed(); removed {
		t.Error("a subscriber without an expiry was removed")
	}
	if st := h.Stats(); st.Subscribers != 1 || st.Expired != 1 {
		t.Errorf("stats %+v, want 1 subscriber left and 1 expired", st)
	}
}

// An expiry already past (a token accepted within the clock-skew leeway)
// ends the subscription at once: the leeway accepts a token, it does not
// extend it.
func TestPastExpiryEndsAtOnce(t *testing.T) {
	h := newTestHub(t, 0)
	s, err := h.SubscribeWith(SubscribeOptions{Selectors: []Selector{Topic("t")}, Expires: time.Now().Add(-time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.Done():
	case <-time.After(time.Second):
		t.Fatal("a subscription past its expiry was not ended")
	}
	if !errors.Is(s.Err(), ErrSubscriptionExpired) {
		t.Fatalf("Err = %v", s.Err())
	}
}

// A subscriber that leaves before its expiry is taken out of the schedule
// (nothing keeps it alive until its token would have expired), and an
// earlier expiry added later still comes first.
func TestExpiryScheduleFollowsSubscribers(t *testing.T) {
	h := newTestHub(t, 0)
	late, err := h.SubscribeWith(SubscribeOptions{Selectors: []Selector{Topic("t")}, Expires: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	early, err := h.SubscribeWith(SubscribeOptions{Selectors: []Selector{Topic("t")}, Expires: time.Now().Add(100 * time.Millisecond)})
	if err != nil {
		t.Fatal(err)
	}
	<-early.Done()
	if removed, _ := late.Removed(); removed {
		t.Fatal("the later subscriber expired with the earlier one")
	}
	late.Close()
	h.mu.Lock()
	n := len(h.expiries)
	h.mu.Unlock()
	if n != 0 {
		t.Errorf("%d subscribers still scheduled after they left", n)
	}
}

// 10,000 subscribers with staggered expiries each end within 1 s after
// theirs, never before, without a timer or a goroutine per subscriber.
// Timers: by construction the hub has one (Hub.expiryTimer, a single
// time.AfterFunc set for the earliest expiry of its heap); subscribers
// hold none. Goroutines: counted below, the same with 10,000 scheduled
// subscribers as with none (the timer's callback runs on a goroutine of
// its own only while it fires).
func TestStaggeredExpiriesShareOneTimer(t *testing.T) {
	const subs = 10000
	h := newTestHub(t, 0)
	base := runtime.NumGoroutine()
	start := time.Now().Add(time.Second)
	spread := 2 * time.Second
	var wg sync.WaitGroup
	wg.Add(subs)
	exps := make([]time.Time, subs)
	ended := make([]time.Time, subs)
	for i := range subs {
		// Interleaved, so the heap is not filled in order.
		exps[i] = start.Add(spread * time.Duration((i*7919)%subs) / subs)
		_, err := h.SubscribeWith(SubscribeOptions{
			Selectors: []Selector{Topic("t")},
			Expires:   exps[i],
			// Called once at removal (nothing is published): records
			// when, and returns at once as a wake function must.
			Wake: func() { ended[i] = time.Now(); wg.Done() },
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	scheduled := runtime.NumGoroutine()
	h.mu.Lock()
	if len(h.expiries) != subs {
		t.Errorf("%d subscribers scheduled, want %d", len(h.expiries), subs)
	}
	h.mu.Unlock()
	wg.Wait()
	after := runtime.NumGoroutine()

	var worst time.Duration
	for i := range subs {
		late := ended[i].Sub(exps[i])
		if late < 0 {
			t.Fatalf("subscriber %d ended %v before its expiry", i, -late)
		}
		worst = max(worst, late)
	}
	t.Logf("%d staggered expiries over %v: latest end %v after expiry; goroutines %d before, %d with all scheduled, %d after",
		subs, spread, worst, base, scheduled, after)
	if worst > time.Second {
		t.Errorf("a subscriber ended %v after its expiry, want within 1 s", worst)
	}
	if scheduled > base {
		t.Errorf("goroutines went from %d to %d with %d subscribers scheduled", base, scheduled, subs)
	}
	if st := h.Stats(); st.Subscribers != 0 || st.Expired != subs {
		t.Errorf("stats %+v", st)
	}
}
