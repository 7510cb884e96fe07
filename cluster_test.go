package herald

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/herald-sse/herald/sse"
)

const clusterTestWait = 10 * time.Second

var quiet = slog.New(slog.DiscardHandler)

// newNode returns a hub joined to b, in sync, closed at the end of the
// test.
func newNode(t *testing.T, b Broker, name string) *Hub {
	t.Helper()
	h := &Hub{Broker: b, NodeID: name, Heartbeat: -1, AnnounceEvery: 10 * time.Millisecond, Logger: quiet}
	if err := h.Open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), clusterTestWait)
	defer cancel()
	if err := h.WaitSynced(ctx); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return h
}

// streamOf collects what a client of s reads: the replay, then the queue,
// until it has n events.
type streamOf struct {
	t        *testing.T
	s        *Subscriber
	replayed bool
	buf      strings.Builder
}

func (c *streamOf) next(n int) []sse.Message {
	c.t.Helper()
	if !c.replayed {
		c.replayed = true
		if err := c.s.Replay(func(frames [][]byte) error {
			for _, f := range frames {
				c.buf.Write(f)
			}
			return nil
		}); err != nil {
			c.t.Fatalf("Replay: %v", err)
		}
	}
	deadline := time.After(clusterTestWait)
	for {
		for _, f := range c.s.Drain(nil) {
			c.buf.Write(f)
		}
		ms := decodeAll(c.t, c.buf.String())
		if len(ms) >= n {
			return ms
		}
		select {
		case <-c.s.Ready():
		case <-c.s.Done():
			if removed, err := c.s.Removed(); removed && err != nil {
				c.t.Fatalf("subscriber removed with %v after %d of %d events", err, len(ms), n)
			}
		case <-deadline:
			c.t.Fatalf("%d of %d events after %v: %v", len(ms), n, clusterTestWait, datas(ms))
		}
	}
}

func decodeAll(t *testing.T, s string) []sse.Message {
	t.Helper()
	dec := sse.NewDecoder(strings.NewReader(s))
	var out []sse.Message
	for {
		m, err := dec.Next()
		if err != nil {
			return out
		}
		out = append(out, m)
	}
}

func ids(ms []sse.Message) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.LastEventID)
	}
	return out
}

func subscribeWith(t *testing.T, h *Hub, opts SubscribeOptions) *streamOf {
	t.Helper()
	if opts.Selectors == nil {
		opts.Selectors = []Selector{All{}}
	}
	s, err := h.SubscribeWith(opts)
	if err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return &streamOf{t: t, s: s}
}

func ev(i int) Event { return Event{Topics: []string{"t"}, Data: fmt.Sprint(i)} }

func TestClusterNodesDeliverOneLogWithTheSameIDs(t *testing.T) {
	b := &MemoryBroker{}
	a, c := newNode(t, b, "a"), newNode(t, b, "c")
	sa := subscribeWith(t, a, SubscribeOptions{})
	sc := subscribeWith(t, c, SubscribeOptions{})
	var want, wantIDs []string
	for i := range 100 {
		node := []*Hub{a, c}[i%2]
		id := publish(t, node, ev(i))
		want, wantIDs = append(want, fmt.Sprint(i)), append(wantIDs, id[0])
	}
	for name, s := range map[string]*streamOf{"a": sa, "c": sc} {
		got := s.next(100)
		if !slices.Equal(datas(got), want) || !slices.Equal(ids(got), wantIDs) {
			t.Errorf("node %s delivered %v with IDs %v\nwant %v with %v", name, datas(got), ids(got), want, wantIDs)
		}
	}
}

func TestClusterResumeOnAnotherNode(t *testing.T) {
	b := &MemoryBroker{}
	a, c := newNode(t, b, "a"), newNode(t, b, "c")
	sa := subscribeWith(t, a, SubscribeOptions{})
	for i := range 50 {
		publish(t, a, ev(i))
	}
	last := sa.next(50)[49].LastEventID
	// Wait until c has read everything, so the resume is a replay.
	waitApplied(t, c, b)
	sc := subscribeWith(t, c, SubscribeOptions{LastEventID: last})
	for i := 50; i < 80; i++ {
		publish(t, c, ev(i))
	}
	got := sc.next(30)
	if want := seq(50, 80); !slices.Equal(datas(got), want) || sc.s.Reset() != nil {
		t.Errorf("resumed on another node: %v (reset %v), want %v", datas(got), sc.s.Reset(), want)
	}
}

func seq(from, to int) []string {
	var out []string
	for i := from; i < to; i++ {
		out = append(out, fmt.Sprint(i))
	}
	return out
}

func waitApplied(t *testing.T, h *Hub, b Broker) {
	t.Helper()
	_, head, err := b.Head(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), clusterTestWait)
	defer cancel()
	for {
		h.mu.Lock()
		done, applied := h.History.Head() >= head, h.log.(*clusterLog).applied
		h.mu.Unlock()
		if done {
			return
		}
		select {
		case <-applied:
		case <-ctx.Done():
			t.Fatalf("node never read the log up to %d", head)
		}
	}
}

// gatedBroker holds back what a node reads until the test lets it
// through: a node lagging behind the others. Each batch is read from the
// log only once the gate is open, so it reflects the log at that time.
type gatedBroker struct {
	*MemoryBroker
	mu     sync.Mutex
	gate   chan struct{} // closed while batches may pass
	passes int           // how often the follower passed the gate
	passed chan struct{} // closed, then replaced, each time it does
}

func newGate(b *MemoryBroker, open bool) *gatedBroker {
	g := &gatedBroker{MemoryBroker: b, gate: make(chan struct{}), passed: make(chan struct{})}
	if open {
		close(g.gate)
	}
	return g
}

func (g *gatedBroker) hold() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.gate = make(chan struct{})
}

// waitPasses waits until the follower has passed the gate n times.
func (g *gatedBroker) waitPasses(t *testing.T, n int) {
	t.Helper()
	timeout := time.After(clusterTestWait)
	for {
		g.mu.Lock()
		passes, passed := g.passes, g.passed
		g.mu.Unlock()
		if passes >= n {
			return
		}
		select {
		case <-passed:
		case <-timeout:
			t.Fatalf("the follower passed the gate %d times, not %d", passes, n)
		}
	}
}

func (g *gatedBroker) release() {
	g.mu.Lock()
	defer g.mu.Unlock()
	close(g.gate)
}

var errOneBatch = errors.New("one batch")

func (g *gatedBroker) Follow(ctx context.Context, epoch string, after uint64, fn func(Batch) error) error {
	for {
		g.mu.Lock()
		gate := g.gate
		g.mu.Unlock()
		select {
		case <-gate:
		case <-ctx.Done():
			return ctx.Err()
		}
		g.mu.Lock()
		g.passes++
		close(g.passed)
		g.passed = make(chan struct{})
		g.mu.Unlock()
		err := g.MemoryBroker.Follow(ctx, epoch, after, func(b Batch) error {
			epoch, after = b.Epoch, b.Records[len(b.Records)-1].Position
			if err := fn(b); err != nil {
				return err
			}
			return errOneBatch
		})
		if err != errOneBatch {
			return err
		}
	}
}

func (g *gatedBroker) Close() error { return nil }

func TestClusterResumeOnALaggingNode(t *testing.T) {
	b := &MemoryBroker{}
	a := newNode(t, b, "a")
	lag := newGate(b, false)
	c := newNode(t, lag, "lagging") // in sync: the log is empty
	sa := subscribeWith(t, a, SubscribeOptions{})
	publish(t, a, Event{Topics: []string{"t"}, Data: "0"})
	publish(t, a, Event{Topics: []string{"t"}, Data: "1", ID: "pub-1"})
	for i := 2; i < 10; i++ {
		publish(t, a, ev(i))
	}
	got := sa.next(10)

	// A generated ID the lagging node has not read: it places it at once.
	byPosition := subscribeWith(t, c, SubscribeOptions{LastEventID: got[4].LastEventID})
	// A publisher's ID it has not read: it waits until it has.
	byPublisherID := make(chan *streamOf)
	go func() { byPublisherID <- subscribeWith(t, c, SubscribeOptions{LastEventID: "pub-1"}) }()
	select {
	case <-byPublisherID:
		t.Fatal("resuming after a publisher's ID the node has not read did not wait for the node")
	case <-time.After(50 * time.Millisecond): // only the absence of an answer can be checked
	}
	lag.release()
	s := <-byPublisherID
	if g := s.next(8); !slices.Equal(datas(g), seq(2, 10)) || s.s.Reset() != nil {
		t.Errorf("after pub-1 on the lagging node: %v (reset %v), want %v", datas(g), s.s.Reset(), seq(2, 10))
	}
	if g := byPosition.next(5); !slices.Equal(datas(g), seq(5, 10)) || byPosition.s.Reset() != nil {
		t.Errorf("after event 4 on the lagging node: %v (reset %v), want %v", datas(g), byPosition.s.Reset(), seq(5, 10))
	}
}

// A lagging node that cannot learn how far the log goes (the broker is
// down), or cannot read that far within the wait, refuses a resume after
// a publisher's ID it has not read: "unknown" would send the client back
// to the node's own head, before events it has had.
func TestClusterLaggingNodeRefusesWhatItCannotPlace(t *testing.T) {
	b := &MemoryBroker{}
	a := newNode(t, b, "a")
	lag := newGate(b, false)
	c := newNode(t, lag, "lagging") // in sync: the log is empty
	sa := subscribeWith(t, a, SubscribeOptions{})
	publish(t, a, ev(0))
	publish(t, a, Event{Topics: []string{"t"}, Data: "1", ID: "pub-1"})
	for i := 2; i < 5; i++ {
		publish(t, a, ev(i))
	}
	sa.next(5)

	b.SetUnavailable(errors.New("connection refused"))
	s, err := c.SubscribeWith(SubscribeOptions{Selectors: []Selector{All{}}, LastEventID: "pub-1"})
	if err == nil {
		t.Fatalf("resuming after an unread publisher ID during an outage: subscribed, reset %+v; want an error", s.Reset())
	}
	if !errors.Is(err, ErrNotSynced) || !errors.Is(err, ErrBrokerUnavailable) {
		t.Errorf("resuming after an unread publisher ID during an outage: %v, want ErrNotSynced and ErrBrokerUnavailable", err)
	}

	b.SetUnavailable(nil)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	s, err = c.SubscribeWith(SubscribeOptions{Selectors: []Selector{All{}}, LastEventID: "pub-1", Context: ctx})
	if !errors.Is(err, ErrNotSynced) {
		reset := "no subscriber"
		if s != nil {
			reset = fmt.Sprintf("reset %+v", s.Reset())
		}
		t.Errorf("resuming after an unread publisher ID not read in time: %v (%s), want ErrNotSynced", err, reset)
	}

	lag.release()
	r := subscribeWith(t, c, SubscribeOptions{LastEventID: "pub-1"})
	if g := r.next(3); !slices.Equal(datas(g), seq(2, 5)) || r.s.Reset() != nil {
		t.Errorf("after pub-1 once the node reads the log: %v (reset %v), want %v", datas(g), r.s.Reset(), seq(2, 5))
	}
}

// A node answers a resume after the publisher's ID of an event the stream
// may not see as it answers an ID never issued, outage or not; a stream
// that may see it resumes, even during an outage, as the node has read it.
func TestClusterHiddenIDAnsweredAsNeverIssued(t *testing.T) {
	b := &MemoryBroker{}
	a, c := newNode(t, b, "a"), newNode(t, b, "c")
	publish(t, a, Event{Topics: []string{"t"}, ID: "secret", Data: "secret", Private: true})
	publish(t, a, Event{Topics: []string{"t"}, ID: "for-bob", Data: "for-bob", ToUsers: []string{"bob"}})
	publish(t, a, ev(2))
	waitApplied(t, c, b)
	answer := func(o SubscribeOptions) string {
		t.Helper()
		o.Selectors = []Selector{Topic("t")}
		s, err := c.SubscribeWith(o)
		if err != nil {
			return "error: " + err.Error()
		}
		defer s.Close()
		if r := s.Reset(); r != nil {
			return "reset " + r.Reason + " to " + r.ResumeID
		}
		return fmt.Sprint("resumed after ", s.replayAfter)
	}
	for _, down := range []bool{false, true} {
		if down {
			b.SetUnavailable(errors.New("connection refused"))
		}
		for _, o := range []SubscribeOptions{{LastEventID: "secret"}, {LastEventID: "for-bob", Subject: "alice", Rights: []Selector{All{}}}} {
			never := o
			never.LastEventID = "never-issued"
			if got, want := answer(o), answer(never); got != want {
				t.Errorf("broker down %v: after %q as %q: %s; after an ID never issued: %s", down, o.LastEventID, o.Subject, got, want)
			}
		}
		if got := answer(SubscribeOptions{LastEventID: "secret", Rights: []Selector{Topic("t")}}); got != "resumed after 1" {
			t.Errorf("broker down %v: after %q with the right to see it: %s, want resumed after 1", down, "secret", got)
		}
		if got := answer(SubscribeOptions{LastEventID: "for-bob", Subject: "bob"}); got != "resumed after 2" {
			t.Errorf("broker down %v: after %q as bob: %s, want resumed after 2", down, "for-bob", got)
		}
	}
}

func TestClusterBrokerOutage(t *testing.T) {
	b := &MemoryBroker{}
	a, c := newNode(t, b, "a"), newNode(t, b, "c")
	sc := subscribeWith(t, c, SubscribeOptions{})
	publish(t, a, ev(0))
	sc.next(1)

	b.SetUnavailable(errors.New("connection refused"))
	if _, err := a.Publish(ev(99)); !errors.Is(err, ErrBrokerUnavailable) {
		t.Fatalf("Publish during an outage = %v, want ErrBrokerUnavailable", err)
	}
	waitFor(t, "nodes report not ready", func() bool {
		return errors.Is(a.Ready(), ErrBrokerUnavailable) && errors.Is(c.Ready(), ErrBrokerUnavailable)
	})
	if removed, _ := sc.s.Removed(); removed {
		t.Fatal("a stream was ended by the outage")
	}

	b.SetUnavailable(nil)
	waitFor(t, "nodes ready again", func() bool { return a.Ready() == nil && c.Ready() == nil })
	for i := 1; i < 5; i++ {
		publish(t, a, ev(i))
	}
	if got := sc.next(5); !slices.Equal(datas(got), seq(0, 5)) {
		t.Errorf("across the outage the subscriber got %v, want %v", datas(got), seq(0, 5))
	}
}

// waitFor polls cond, for states that offer nothing to wait on.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(clusterTestWait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestClusterLogReplacedEndsStreams(t *testing.T) {
	b := &MemoryBroker{}
	a := newNode(t, b, "a")
	s := subscribeWith(t, a, SubscribeOptions{})
	old := publish(t, a, ev(0))[0]
	s.next(1)
	b.Wipe()
	publish(t, a, ev(1))
	select {
	case <-s.s.Done():
	case <-time.After(clusterTestWait):
		t.Fatal("stream still open after the log was replaced")
	}
	if err := s.s.Err(); !errors.Is(err, ErrResync) {
		t.Errorf("Err = %v, want ErrResync", err)
	}
	r := subscribeWith(t, a, SubscribeOptions{LastEventID: old})
	if reset := r.s.Reset(); reset == nil || reset.Reason != ResetForeign {
		t.Errorf("resuming after an ID of the replaced log: reset %+v, want %q", reset, ResetForeign)
	}
}

func TestClusterLaggingNodePastRetentionEndsStreams(t *testing.T) {
	b := &MemoryBroker{MaxEvents: 5}
	a := newNode(t, b, "a")
	lag := newGate(b, true)
	first := publish(t, a, ev(0))[0]
	c := newNode(t, lag, "lagging")
	s := subscribeWith(t, c, SubscribeOptions{})
	// Hold the node back while retention removes what it has not read.
	// Once the follower has passed the gate again after reading the first
	// batch, it waits for the next one: publishing one event lets it take
	// that.
	lag.waitPasses(t, 2)
	lag.hold()
	publish(t, a, ev(1))
	s.next(1)
	for i := 2; i < 20; i++ {
		publish(t, a, ev(i))
	}
	lag.release()
	select {
	case <-s.s.Done():
	case <-time.After(clusterTestWait):
		t.Fatal("stream of a node that missed events still open")
	}
	if err := s.s.Err(); !errors.Is(err, ErrResync) {
		t.Errorf("Err = %v, want ErrResync", err)
	}
	r := subscribeWith(t, c, SubscribeOptions{LastEventID: first})
	if reset := r.s.Reset(); reset == nil || reset.Reason != ResetExpired {
		t.Errorf("resuming after a removed event: reset %+v, want %q", reset, ResetExpired)
	}
}

func TestClusterPrivateAndTargetedAcrossNodes(t *testing.T) {
	b := &MemoryBroker{}
	a, c := newNode(t, b, "a"), newNode(t, b, "c")
	bob := subscribeWith(t, c, SubscribeOptions{Subject: "bob"})
	alice := subscribeWith(t, c, SubscribeOptions{Subject: "alice", Rights: []Selector{Topic("t")}, ConnectionID: "conn-a"})
	publish(t, a, Event{Topics: []string{"t"}, Data: "to bob", ToUsers: []string{"bob"}})
	publish(t, a, Event{Topics: []string{"t"}, Data: "private", Private: true})
	publish(t, a, Event{Topics: []string{"t"}, Data: "to conn-a", ToConnections: []string{"conn-a"}})
	publish(t, a, Event{Topics: []string{"t"}, Data: "public"})
	if got := datas(bob.next(2)); !slices.Equal(got, []string{"to bob", "public"}) {
		t.Errorf("bob got %v", got)
	}
	if got := datas(alice.next(3)); !slices.Equal(got, []string{"private", "to conn-a", "public"}) {
		t.Errorf("alice got %v", got)
	}
	// And on replay through the other node's copy of the log.
	waitApplied(t, a, b)
	replay := subscribeWith(t, a, SubscribeOptions{Subject: "bob", LastEventID: Earliest})
	if got := datas(replay.next(2)); !slices.Equal(got, []string{"to bob", "public"}) {
		t.Errorf("bob's replay got %v", got)
	}
}

func TestClusterDuplicateIDAcrossNodes(t *testing.T) {
	b := &MemoryBroker{}
	a, c := newNode(t, b, "a"), newNode(t, b, "c")
	publish(t, a, Event{Topics: []string{"t"}, ID: "once"})
	if _, err := c.Publish(Event{Topics: []string{"t"}, ID: "once"}); !errors.Is(err, ErrDuplicateID) {
		t.Errorf("same ID through another node = %v, want ErrDuplicateID", err)
	}
}

func TestClusterNotSynced(t *testing.T) {
	b := &MemoryBroker{}
	b.SetUnavailable(errors.New("down"))
	h := &Hub{Broker: b, Heartbeat: -1, Logger: quiet, AnnounceEvery: 10 * time.Millisecond}
	if err := h.Open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	if err := h.Ready(); !errors.Is(err, ErrNotSynced) {
		t.Errorf("Ready before reading the log = %v, want ErrNotSynced", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := h.SubscribeWith(SubscribeOptions{Selectors: []Selector{All{}}, Context: ctx}); !errors.Is(err, ErrNotSynced) {
		t.Errorf("Subscribe before reading the log = %v, want ErrNotSynced", err)
	}
	b.SetUnavailable(nil)
	waitFor(t, "the node is ready", func() bool { return h.Ready() == nil })
}

func TestClusterNodes(t *testing.T) {
	b := &MemoryBroker{}
	a, c := newNode(t, b, "a"), newNode(t, b, "c")
	subscribeWith(t, c, SubscribeOptions{})
	subscribeWith(t, c, SubscribeOptions{})
	publish(t, a, ev(0))
	waitFor(t, "both nodes report, c with 2 connections, none lagging", func() bool {
		nodes, err := a.Nodes(context.Background())
		if err != nil || len(nodes) != 2 {
			return false
		}
		return nodes[0].Node == "a" && nodes[0].Self && nodes[1].Node == "c" && !nodes[1].Self &&
			nodes[1].Connections == 2 && nodes[0].Lag == 0 && nodes[1].Lag == 0 && nodes[1].Applied > 0
	})
}

func TestClusterResumeAfterAnIDNeverIssued(t *testing.T) {
	b := &MemoryBroker{}
	a := newNode(t, b, "a")
	id := publish(t, a, ev(0))[0]
	epoch, _, _ := strings.Cut(id, "-")
	// Past the log's head: it cannot be an event this node has not read
	// yet, so it is unknown, as on a single hub.
	s := subscribeWith(t, a, SubscribeOptions{LastEventID: epoch + "-zzzz"})
	if r := s.s.Reset(); r == nil || r.Reason != ResetUnknown {
		t.Errorf("resuming after an ID past the log's head: reset %+v, want %q", r, ResetUnknown)
	}
}

func TestClusterCloseWakesWaitingSubscribers(t *testing.T) {
	b := &MemoryBroker{}
	b.SetUnavailable(errors.New("down"))
	h := &Hub{Broker: b, Heartbeat: -1, Logger: quiet}
	if err := h.Open(); err != nil {
		t.Fatal(err)
	}
	h.Ready() // starts the node
	errc := make(chan error, 2)
	go func() {
		_, err := h.SubscribeWith(SubscribeOptions{Selectors: []Selector{All{}}})
		errc <- err
	}()
	go func() { errc <- h.WaitSynced(context.Background()) }()
	h.Close()
	for range 2 {
		select {
		case err := <-errc:
			if !errors.Is(err, ErrHubClosed) {
				t.Errorf("waiting for sync when the hub closed: %v, want ErrHubClosed", err)
			}
		case <-time.After(clusterTestWait / 2):
			t.Fatal("Close did not end a wait for sync")
		}
	}
}

// failingFollow answers everything but cannot read the log.
type failingFollow struct{ *MemoryBroker }

func (f failingFollow) Follow(context.Context, string, uint64, func(Batch) error) error {
	return fmt.Errorf("%w: NOPERM no read access", ErrBrokerUnavailable)
}

func TestClusterNotReadyWhileTheLogCannotBeRead(t *testing.T) {
	h := &Hub{Broker: failingFollow{&MemoryBroker{}}, Heartbeat: -1, Logger: quiet, AnnounceEvery: time.Millisecond}
	if err := h.Open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	if err := h.WaitSynced(context.Background()); err != nil {
		t.Fatal(err) // an empty log: in sync at once
	}
	// Status calls succeed every millisecond; none may count as the
	// log being readable.
	for range 200 {
		// Not synced (before Follow first failed) or unavailable.
		if err := h.Ready(); err == nil {
			t.Fatal("Ready while Follow fails")
		}
		time.Sleep(time.Millisecond) // let the announcer run between checks
	}
}

// scriptedBroker serves a fixed log whose newest entry cannot be read.
type scriptedBroker struct {
	*MemoryBroker
	epoch string
}

func (s *scriptedBroker) Head(context.Context) (string, uint64, error) { return s.epoch, 9, nil }

func (s *scriptedBroker) Follow(ctx context.Context, _ string, after uint64, fn func(Batch) error) error {
	if after < 5 {
		rec := Record{Position: 5, Topics: []string{"t"}, Data: "readable", Time: time.Now()}
		if err := fn(Batch{Epoch: s.epoch, Records: []Record{rec}}); err != nil {
			return err
		}
	}
	if after < 9 {
		if err := fn(Batch{Epoch: s.epoch, Lost: true, Through: 9}); err != nil {
			return err
		}
	}
	<-ctx.Done()
	return ctx.Err()
}

func TestClusterUnreadableNewestEntry(t *testing.T) {
	b := &scriptedBroker{MemoryBroker: &MemoryBroker{}, epoch: "unreadable_1"}
	h := newNode(t, b, "n") // in sync although the head itself is unreadable
	s := subscribeWith(t, h, SubscribeOptions{LastEventID: "unreadable_1-5"})
	if r := s.s.Reset(); r == nil || r.Reason != ResetExpired {
		t.Errorf("resuming before an unreadable entry: reset %+v, want %q (it is lost)", r, ResetExpired)
	}
	s = subscribeWith(t, h, SubscribeOptions{LastEventID: "unreadable_1-9"})
	if r := s.s.Reset(); r != nil {
		t.Errorf("resuming after the unreadable entry: reset %+v, want none", r)
	}
}

// The copy's epoch changes under readers that do not hold the hub's
// lock: run with -race.
func TestClusterReplacedLogUnderReaders(t *testing.T) {
	b := &MemoryBroker{}
	a := newNode(t, b, "a")
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if i%10 == 0 {
				b.Wipe()
			}
			a.Publish(Event{Topics: []string{"t"}, ID: fmt.Sprint("p", i)})
		}
	}()
	for range 50 {
		a.Nodes(context.Background())
		if s, err := a.SubscribeWith(SubscribeOptions{Selectors: []Selector{All{}}, LastEventID: "p-unknown"}); err == nil {
			s.Close()
		}
	}
	close(stop)
	wg.Wait()
}
