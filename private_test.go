package herald

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// 100 subscribers of mixed identities (anonymous, users with rights on
// some topics, connection IDs) and a mix of public, private and targeted
// events: each receives exactly the events it may see, live, and the same
// again when it replays from the start.
func TestPrivateAndTargetedEvents(t *testing.T) {
	h := newTestHub(t, 1<<20)
	type sub struct {
		opts SubscribeOptions
		s    *Subscriber
	}
	topics := []string{"t0", "t1", "t2"}
	var subs []sub
	for i := range 100 {
		o := SubscribeOptions{Selectors: []Selector{Topic(topics[i%3]), Topic(topics[(i+1)%3])}, ConnectionID: "c" + strconv.Itoa(i)}
		switch i % 4 {
		case 1:
			o.Subject = "u" + strconv.Itoa(i%10)
		case 2:
			o.Subject = "u" + strconv.Itoa(i%10)
			o.Rights = []Selector{Topic(topics[i%3])}
		case 3:
			o.Subject = "admin"
			o.Rights = []Selector{All{}}
		}
		s, err := h.SubscribeWith(o)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		subs = append(subs, sub{o, s})
	}
	var events []Event
	for i := range 300 {
		e := Event{Topics: []string{topics[i%3]}, Data: strconv.Itoa(i)}
		switch i % 5 {
		case 1:
			e.Private = true
		case 2:
			e.ToUsers = []string{"u" + strconv.Itoa(i%10), "admin"}
		case 3:
			e.ToConnections = []string{"c" + strconv.Itoa(i%100)}
		case 4:
			e.Private, e.ToUsers = true, []string{"u" + strconv.Itoa(i%10)}
		}
		events = append(events, e)
	}
	if _, err := h.Publish(events...); err != nil {
		t.Fatal(err)
	}
	// What each may see, computed independently of the hub.
	want := func(o SubscribeOptions) []string {
		var out []string
		for _, e := range events {
			if !Matches(o.Selectors, e.Topics) {
				continue
			}
			if e.Private && !Matches(o.Rights, e.Topics) {
				continue
			}
			if e.Targeted() && !(o.Subject != "" && slices.Contains(e.ToUsers, o.Subject) || slices.Contains(e.ToConnections, o.ConnectionID)) {
				continue
			}
			out = append(out, e.Data)
		}
		return out
	}
	datas := func(frames [][]byte) []string {
		var out []string
		for _, f := range frames {
			for line := range strings.Lines(string(f)) {
				if d, ok := strings.CutPrefix(line, "data: "); ok {
					out = append(out, strings.TrimSuffix(d, "\n"))
				}
			}
		}
		return out
	}
	seenPrivate, seenTargeted := false, false
	for i, sb := range subs {
		w := want(sb.opts)
		if live := datas(sb.s.Drain(nil)); !slices.Equal(live, w) {
			t.Fatalf("subscriber %d (%+v) live: got %d events %v, want %d", i, sb.opts.Subject, len(live), live, len(w))
		}
		o := sb.opts
		o.LastEventID = Earliest
		again, err := h.SubscribeWith(o)
		if err != nil {
			t.Fatal(err)
		}
		var replayed []string
		if err := again.Replay(func(frames [][]byte) error { replayed = append(replayed, datas(frames)...); return nil }); err != nil {
			t.Fatal(err)
		}
		again.Close()
		if !slices.Equal(replayed, w) {
			t.Fatalf("subscriber %d replay: got %d events, want %d", i, len(replayed), len(w))
		}
		for _, d := range w {
			n, _ := strconv.Atoi(d)
			seenPrivate = seenPrivate || events[n].Private
			seenTargeted = seenTargeted || events[n].Targeted()
		}
	}
	if !seenPrivate || !seenTargeted {
		t.Fatal(fmt.Sprint("the mix delivered no private or no targeted event: the test proves nothing"))
	}
}

// What was checked before the hub's lock counts only while the ID still
// points at the record checked: an event published (or removed) in
// between is checked again.
func TestLookupForRechecksAStaleAnswer(t *testing.T) {
	h := newTestHub(t, 1<<20)
	publish(t, h, Event{Topics: []string{"t"}, ID: "public", Data: "p"}, Event{Topics: []string{"t"}, ID: "secret", Data: "s", Private: true})
	anonymous := &Subscriber{}
	reader := &Subscriber{rights: []Selector{Topic("t")}}
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, c := range []struct {
		name string
		s    *Subscriber
		pre  idCheck
		want bool
	}{
		{"anonymous, not found before", anonymous, idCheck{}, false},
		{"anonymous, another record visible before", anonymous, idCheck{pos: 1, visible: true}, false},
		{"reader, not found before", reader, idCheck{}, true},
		{"reader, another record hidden before", reader, idCheck{pos: 1}, true},
		{"anonymous, checked before", anonymous, h.checkID(anonymous, "secret"), false},
		{"reader, checked before", reader, h.checkID(reader, "secret"), true},
	} {
		if got, ok := h.lookupFor(c.s, "secret", c.pre); ok != c.want || ok && got != 2 {
			t.Errorf("%s: lookupFor = %d, %v; want %v", c.name, got, ok, c.want)
		}
	}
}

// slowLookupHistory is a History whose check of a publisher's ID (the
// one-record Replay the hub makes for a store without lookupRecord)
// waits until release is closed, as a read from a slow disk would.
type slowLookupHistory struct {
	m       *MemoryHistory
	started chan struct{} // closed when the slow read begins
	once    sync.Once
	release chan struct{}
}

func (h *slowLookupHistory) Epoch() string                           { return h.m.Epoch() }
func (h *slowLookupHistory) Append(r []Record) (func() error, error) { return h.m.Append(r) }
func (h *slowLookupHistory) Head() uint64                            { return h.m.Head() }
func (h *slowLookupHistory) Lookup(id string) (uint64, bool)         { return h.m.Lookup(id) }
func (h *slowLookupHistory) Lost(a, u uint64, s []Selector) bool     { return h.m.Lost(a, u, s) }
func (h *slowLookupHistory) Close() error                            { return h.m.Close() }
func (h *slowLookupHistory) Replay(after, upTo uint64, sels []Selector, fn func([]Record) error) error {
	if upTo == after+1 && len(sels) == len(everything) && sels[0] == everything[0] {
		h.once.Do(func() { close(h.started) })
		<-h.release
	}
	return h.m.Replay(after, upTo, sels, fn)
}

// A subscriber resuming after a publisher's ID has it checked before the
// hub's lock is taken: publishing goes on while the store reads.
func TestPublisherIDCheckedOutsideTheLock(t *testing.T) {
	hist := &slowLookupHistory{m: NewMemoryHistory(Retention{}), started: make(chan struct{}), release: make(chan struct{})}
	h := &Hub{Heartbeat: -1, History: hist}
	if err := h.Open(); err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if _, err := h.Publish(Event{ID: "mine", Topics: []string{"t"}, Data: "a"}); err != nil {
		t.Fatal(err)
	}
	subscribed := make(chan error, 1)
	go func() {
		_, err := h.SubscribeWith(SubscribeOptions{Selectors: []Selector{Topic("t")}, LastEventID: "mine"})
		subscribed <- err
	}()
	<-hist.started
	published := make(chan error, 1)
	go func() {
		_, err := h.Publish(Event{Topics: []string{"t"}, Data: "b"})
		published <- err
	}()
	select {
	case err := <-published:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		close(hist.release) // let both finish, so the failure does not hang
		t.Fatal("a publish waited for the store to read a resuming subscriber's ID: it was read under the hub's lock")
	}
	close(hist.release)
	if err := <-subscribed; err != nil {
		t.Fatal(err)
	}
}
