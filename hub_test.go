package herald

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"

	"github.com/herald-sse/herald/sse"
)

// newTestHub returns a hub without a heartbeat goroutine, closed at the end
// of the test.
func newTestHub(t testing.TB, queueBytes int) *Hub {
	t.Helper()
	h := &Hub{QueueBytes: queueBytes, Heartbeat: -1}
	if err := h.Open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

func subscribe(t testing.TB, h *Hub, selectors ...string) *Subscriber {
	t.Helper()
	var sels []Selector
	for _, s := range selectors {
		sel, err := ParseSelector(s)
		if err != nil {
			t.Fatalf("ParseSelector(%q): %v", s, err)
		}
		sels = append(sels, sel)
	}
	s, err := h.Subscribe(sels...)
	if err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func publish(t testing.TB, h *Hub, events ...Event) []string {
	t.Helper()
	ids, err := h.Publish(events...)
	if err != nil {
		t.Fatalf("Publish: %v", err)
	}
	return ids
}

// received decodes everything queued for s, as a client would see it.
func received(t testing.TB, s *Subscriber) []sse.Message {
	t.Helper()
	dec := sse.NewDecoder(strings.NewReader(drained(s)))
	var out []sse.Message
	for {
		m, err := dec.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("decoding queued frames: %v", err)
		}
		out = append(out, m)
	}
}

// drained returns everything queued for s as the bytes a stream would get.
func drained(s *Subscriber) string {
	return string(bytes.Join(s.Drain(nil), nil))
}

func datas(ms []sse.Message) []string {
	out := []string{}
	for _, m := range ms {
		out = append(out, m.Data)
	}
	return out
}

func TestPublishReachesMatchingSubscribersOnce(t *testing.T) {
	h := newTestHub(t, 0)
	news := subscribe(t, h, "news")
	sports := subscribe(t, h, "sports")
	both := subscribe(t, h, "news", "sports")
	all := subscribe(t, h, "*")
	allAndNews := subscribe(t, h, "*", "news")
	none := subscribe(t, h, "weather")

	publish(t, h, Event{Topics: []string{"news"}, Data: "n1"})
	publish(t, h, Event{Topics: []string{"sports"}, Data: "s1"})
	publish(t, h, Event{Topics: []string{"news", "sports"}, Data: "ns1"})

	cases := []struct {
		name string
		sub  *Subscriber
		want []string
	}{
		{"news", news, []string{"n1", "ns1"}},
		{"sports", sports, []string{"s1", "ns1"}},
		{"news+sports", both, []string{"n1", "s1", "ns1"}},
		{"*", all, []string{"n1", "s1", "ns1"}},
		{"*+news", allAndNews, []string{"n1", "s1", "ns1"}},
		{"weather", none, []string{}},
	}
	for _, c := range cases {
		if got := datas(received(t, c.sub)); fmt.Sprint(got) != fmt.Sprint(c.want) {
			t.Errorf("%s received %q, want %q", c.name, got, c.want)
		}
	}
	if st := h.Stats(); st.Published != 3 || st.Delivered != 13 {
		t.Errorf("stats = %+v, want 3 published, 13 delivered", st)
	}
}

func TestPublishIDs(t *testing.T) {
	h := newTestHub(t, 0)
	s := subscribe(t, h, "t")
	ids := publish(t, h,
		Event{Topics: []string{"t"}, Data: "a"},
		Event{Topics: []string{"t"}, Data: "b", ID: "mine"},
		Event{Topics: []string{"t"}, Data: "c"},
	)
	if ids[1] != "mine" {
		t.Errorf("publisher id replaced: %q", ids[1])
	}
	if ids[0] == "" || ids[0] == ids[2] {
		t.Errorf("assigned ids not unique: %q", ids)
	}
	other := &Hub{Heartbeat: -1}
	if err := other.Open(); err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if otherIDs := publish(t, other, Event{Topics: []string{"t"}}); otherIDs[0] == ids[0] {
		t.Errorf("two hubs assigned the same first id %q", ids[0])
	}
	msgs := received(t, s)
	for i, m := range msgs {
		if m.LastEventID != ids[i] {
			t.Errorf("event %d carries id %q, Publish returned %q", i, m.LastEventID, ids[i])
		}
	}
}

func TestPublishInvalidBatchPublishesNothing(t *testing.T) {
	h := newTestHub(t, 0)
	s := subscribe(t, h, "*")
	bad := []Event{
		{Data: "no topic"},
		{Topics: []string{""}},
		{Topics: []string{"*"}},
		{Topics: []string{"a\nb"}},
		{Topics: []string{strings.Repeat("x", MaxTopicLength+1)}},
		{Topics: []string{"t"}, ID: "a\nb"},
		{Topics: []string{"t"}, ID: "a\rb"},
		{Topics: []string{"t"}, ID: "a\x00b"},
		{Topics: []string{"t"}, Type: "a\nb"},
		{Topics: []string{"t"}, Type: "a\rb"},
		{Topics: []string{"t"}, Data: "\xff"},
		{Topics: []string{"t"}, Retry: -1},
	}
	for _, e := range bad {
		ids, err := h.Publish(Event{Topics: []string{"t"}, Data: "fine"}, e)
		if !errors.Is(err, ErrInvalidEvent) {
			t.Errorf("Publish(%+v) error = %v, want ErrInvalidEvent", e, err)
		}
		if !strings.HasPrefix(err.Error(), "event 1: ") {
			t.Errorf("batch error %q does not name the event", err)
		}
		if ids != nil {
			t.Errorf("ids returned for a rejected batch: %q", ids)
		}
	}
	if got := received(t, s); len(got) != 0 {
		t.Errorf("rejected batches delivered %d events", len(got))
	}
}

func TestSlowSubscriberIsDroppedAlone(t *testing.T) {
	const limit = 4 << 10
	h := newTestHub(t, limit)
	stalled := subscribe(t, h, "t")
	reader := subscribe(t, h, "t")

	payload := strings.Repeat("x", 100)
	for i := 0; i < 1000; i++ {
		publish(t, h, Event{Topics: []string{"t"}, Data: payload})
		if got := len(received(t, reader)); got != 1 {
			t.Fatalf("event %d: reader got %d events, want 1", i, got)
		}
		if st := h.Stats(); st.QueuedBytes > limit {
			t.Fatalf("queued %d bytes, above the %d limit", st.QueuedBytes, limit)
		}
	}
	select {
	case <-stalled.Done():
	default:
		t.Fatal("stalled subscriber was not dropped")
	}
	if !errors.Is(stalled.Err(), ErrSlowSubscriber) {
		t.Errorf("Err() = %v, want ErrSlowSubscriber", stalled.Err())
	}
	if got := drained(stalled); got != "" {
		t.Errorf("dropped subscriber still holds %d bytes", len(got))
	}
	st := h.Stats()
	if st.Dropped != 1 || st.Subscribers != 1 {
		t.Errorf("stats = %+v, want 1 dropped, 1 subscriber left", st)
	}
}

func TestEventLargerThanQueueFitsEmptyQueue(t *testing.T) {
	h := newTestHub(t, 64)
	s := subscribe(t, h, "t")
	big := strings.Repeat("b", 1000)
	publish(t, h, Event{Topics: []string{"t"}, Data: big})
	if got := received(t, s); len(got) != 1 || got[0].Data != big {
		t.Fatalf("big event not delivered whole")
	}
	publish(t, h, Event{Topics: []string{"t"}, Data: big})
	publish(t, h, Event{Topics: []string{"t"}, Data: "x"})
	if !errors.Is(s.Err(), ErrSlowSubscriber) {
		t.Errorf("a second event on a full queue did not drop the subscriber")
	}
}

func TestHeartbeatOnlyToIdleSubscribers(t *testing.T) {
	h := newTestHub(t, 0)
	idle := subscribe(t, h, "quiet")
	busy := subscribe(t, h, "busy")
	publish(t, h, Event{Topics: []string{"busy"}, Data: "x"})
	busy.Drain(nil)

	h.beatOnce()
	if got := drained(idle); got != string(heartbeatFrame) {
		t.Errorf("idle subscriber got %q, want a heartbeat", got)
	}
	if got := drained(busy); got != "" {
		t.Errorf("busy subscriber got a heartbeat %q right after data", got)
	}
	// Data still waiting for the writer makes a beat pointless.
	publish(t, h, Event{Topics: []string{"quiet"}, Data: "pending"})
	h.beatOnce()
	h.beatOnce()
	if got := datas(received(t, idle)); fmt.Sprint(got) != "[pending]" {
		t.Errorf("subscriber with pending data got %q, want only the data", got)
	}
	// Nothing sent since the last beat: now the busy one is idle too.
	h.beatOnce()
	if got := drained(busy); got != string(heartbeatFrame) {
		t.Errorf("subscriber idle for a whole beat got %q, want a heartbeat", got)
	}
}

func TestHeartbeatTimer(t *testing.T) {
	h := &Hub{Heartbeat: 1}
	if err := h.Open(); err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	s := subscribe(t, h, "t")
	<-s.Ready() // the hub-level timer queued a beat
	if got := drained(s); !strings.HasPrefix(got, ":") {
		t.Errorf("heartbeat frame %q is not a comment", got)
	}
}

func TestCloseEndsSubscribersButKeepsQueue(t *testing.T) {
	h := &Hub{Heartbeat: -1}
	if err := h.Open(); err != nil {
		t.Fatal(err)
	}
	s := subscribe(t, h, "t")
	publish(t, h, Event{Topics: []string{"t"}, Data: "last"})
	h.Close()
	h.Close()
	<-s.Done()
	if !errors.Is(s.Err(), ErrHubClosed) {
		t.Errorf("Err() = %v, want ErrHubClosed", s.Err())
	}
	if got := datas(received(t, s)); fmt.Sprint(got) != "[last]" {
		t.Errorf("queued events lost at close: %q", got)
	}
	if _, err := h.Subscribe(Topic("t")); !errors.Is(err, ErrHubClosed) {
		t.Errorf("Subscribe after Close: %v", err)
	}
	if _, err := h.Publish(Event{Topics: []string{"t"}}); !errors.Is(err, ErrHubClosed) {
		t.Errorf("Publish after Close: %v", err)
	}
}

func TestSubscriberCloseIsIdempotentAndConcurrent(t *testing.T) {
	h := newTestHub(t, 0)
	s := subscribe(t, h, "t", "*")
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Go(func() { s.Close() })
	}
	wg.Wait()
	<-s.Done()
	if s.Err() != nil {
		t.Errorf("Err() after Close = %v, want nil", s.Err())
	}
	publish(t, h, Event{Topics: []string{"t"}})
	if st := h.Stats(); st.Subscribers != 0 || st.Topics != 0 || st.Delivered != 0 {
		t.Errorf("closed subscriber still indexed: %+v", st)
	}
}

func TestSubscribeNeedsSelectors(t *testing.T) {
	h := newTestHub(t, 0)
	if _, err := h.Subscribe(); !errors.Is(err, ErrNoSelector) {
		t.Errorf("Subscribe() error = %v, want ErrNoSelector", err)
	}
	if _, err := h.Subscribe(Topic("a"), nil); !errors.Is(err, ErrInvalidSelector) {
		t.Errorf("Subscribe(nil selector) error = %v, want ErrInvalidSelector", err)
	}
	publish(t, h, Event{Topics: []string{"a"}}) // must not reach a nil selector
}

func TestTopicsPerEventLimit(t *testing.T) {
	h := newTestHub(t, 0)
	topics := make([]string, MaxEventTopics+1)
	for i := range topics {
		topics[i] = fmt.Sprint("t", i)
	}
	if _, err := h.Publish(Event{Topics: topics}); !errors.Is(err, ErrInvalidEvent) {
		t.Errorf("%d topics: error = %v, want ErrInvalidEvent", len(topics), err)
	}
	publish(t, h, Event{Topics: topics[:MaxEventTopics]})
}

// Concurrent publishers are serialised: every subscriber sees one global
// order, which gapless resume depends on.
func TestConcurrentPublishersOneOrder(t *testing.T) {
	h := newTestHub(t, 64<<20)
	a := subscribe(t, h, "x", "y")
	b := subscribe(t, h, "*")
	var wg sync.WaitGroup
	for p := 0; p < 4; p++ {
		wg.Go(func() {
			for i := 0; i < 500; i++ {
				topic := []string{"x", "y"}[i%2]
				if _, err := h.Publish(Event{Topics: []string{topic}, Data: fmt.Sprintf("%d-%d", p, i)}); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	ga, gb := datas(received(t, a)), datas(received(t, b))
	if len(ga) != 2000 || fmt.Sprint(ga) != fmt.Sprint(gb) {
		t.Fatalf("subscribers saw different orders (%d vs %d events)", len(ga), len(gb))
	}
}

func TestParseSelector(t *testing.T) {
	if s, err := ParseSelector("*"); err != nil || s != (All{}) {
		t.Errorf(`ParseSelector("*") = %v, %v`, s, err)
	}
	if s, err := ParseSelector("news"); err != nil || s != Topic("news") || !s.Match("news") || s.Match("new") {
		t.Errorf(`ParseSelector("news") = %v, %v`, s, err)
	}
	for _, bad := range []string{"", "a\x00", strings.Repeat("x", MaxTopicLength+1), "\xff"} {
		if _, err := ParseSelector(bad); !errors.Is(err, ErrInvalidSelector) {
			t.Errorf("ParseSelector(%q) error = %v, want ErrInvalidSelector", bad, err)
		}
	}
}

// A wake-driven subscriber is woken once per empty→non-empty turn and on
// removal, and never gets channels it did not ask for.
func TestSubscribeWakes(t *testing.T) {
	h := newTestHub(t, 1<<20)
	var wakes int // wake runs under the hub's locks, so this is serialised with Publish
	s, err := h.SubscribeWith(SubscribeOptions{Selectors: []Selector{Topic("a")}, Wake: func() { wakes++ }})
	if err != nil {
		t.Fatal(err)
	}
	publish := func() {
		t.Helper()
		if _, err := h.Publish(Event{Topics: []string{"a"}, Data: "x"}); err != nil {
			t.Fatal(err)
		}
	}
	publish()
	publish()
	if wakes != 1 {
		t.Fatalf("wakes after two publishes = %d, want 1: only the turn to non-empty wakes", wakes)
	}
	if got := len(s.Drain(nil)); got != 2 {
		t.Fatalf("drained %d frames, want 2", got)
	}
	if removed, _ := s.Removed(); removed {
		t.Fatal("Removed before removal")
	}
	s.Drain(nil)
	publish()
	if wakes != 2 {
		t.Fatalf("wakes after drain and publish = %d, want 2", wakes)
	}
	h.Close()
	removed, err := s.Removed()
	if !removed || !errors.Is(err, ErrHubClosed) {
		t.Fatalf("Removed() = %v, %v after hub close", removed, err)
	}
	if wakes != 3 {
		t.Fatalf("wakes after removal = %d, want 3", wakes)
	}
	select {
	case <-s.Done():
	default:
		t.Fatal("Done asked for after removal is not closed")
	}
}

// Ready asked for after events were queued is already signalled.
func TestReadyAfterQueueIsSignalled(t *testing.T) {
	h := newTestHub(t, 1<<20)
	s := subscribe(t, h, "a")
	if _, err := h.Publish(Event{Topics: []string{"a"}, Data: "x"}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.Ready():
	default:
		t.Fatal("Ready not signalled for an event queued before the first call")
	}
}

// After a burst, a drained subscriber keeps at most a small queue array:
// idle streams outnumber busy ones, so high-water marks must not stay.
func TestDrainDropsLargeQueueArray(t *testing.T) {
	h := newTestHub(t, 1<<20)
	s := subscribe(t, h, "a")
	for range 30 {
		if _, err := h.Publish(Event{Topics: []string{"a"}, Data: "x"}); err != nil {
			t.Fatal(err)
		}
	}
	if got := len(s.Drain(nil)); got != 30 {
		t.Fatalf("drained %d, want 30", got)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if c := cap(s.queue); c > 4 {
		t.Fatalf("drained queue keeps an array of %d slots, want at most 4 (96 B)", c)
	}
}

// Stats.QueuedBytes is kept as queues change, without visiting them: it
// follows enqueues, drains, slow drops and closes back to zero.
func TestQueuedBytesFollowsQueues(t *testing.T) {
	h := newTestHub(t, 1<<10)
	a := subscribe(t, h, "t")
	b := subscribe(t, h, "t")
	slow := subscribe(t, h, "t")
	data := strings.Repeat("x", 300)
	publish := func() {
		if _, err := h.Publish(Event{Topics: []string{"t"}, Data: data}); err != nil {
			t.Fatal(err)
		}
	}
	publish()
	frame := h.Stats().QueuedBytes / 3
	if frame < 300 {
		t.Fatalf("queued %d bytes for three subscribers of a 300-byte event", h.Stats().QueuedBytes)
	}
	a.Drain(nil)
	if got := h.Stats().QueuedBytes; got != 2*frame {
		t.Fatalf("after one drain: %d, want %d", got, 2*frame)
	}
	b.Close() // never drained
	if got := h.Stats().QueuedBytes; got != frame {
		t.Fatalf("after a close: %d, want %d", got, frame)
	}
	for range 4 { // overflows slow's 1 KiB queue; a keeps draining
		publish()
		a.Drain(nil)
	}
	if removed, err := slow.Removed(); !removed || err != ErrSlowSubscriber {
		t.Fatalf("slow subscriber not dropped: %v, %v", removed, err)
	}
	if got := h.Stats().QueuedBytes; got != 0 {
		t.Fatalf("after drains and a slow drop: %d, want 0", got)
	}
}
