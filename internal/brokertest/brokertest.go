// Package brokertest checks that a [herald.Broker] keeps every promise of
// the interface, so the in-process broker, Redis and NATS JetStream are
// held to one contract.
package brokertest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/herald-sse/herald"
)

// Opener returns a broker on a new, empty log whose retention follows r,
// and a function that opens another client of the same log, as a second
// node would. Run closes what they return; the opener cleans up the log
// itself (t.Cleanup).
type Opener func(t *testing.T, r herald.Retention) (b herald.Broker, another func() herald.Broker)

// Run checks every promise of [herald.Broker] on brokers made by open.
func Run(t *testing.T, open Opener) {
	s := &suite{open: open}
	for _, c := range []struct {
		name string
		fn   func(t *testing.T)
	}{
		{"AppendPositions", s.appendPositions},
		{"RoundTrip", s.roundTrip},
		{"FollowFromMiddle", s.followFromMiddle},
		{"FollowOtherEpoch", s.followOtherEpoch},
		{"FollowLive", s.followLive},
		{"FnError", s.fnError},
		{"TwoNodes", s.twoNodes},
		{"ConcurrentAppendsOneOrder", s.concurrentAppends},
		{"DuplicateID", s.duplicateID},
		{"Lost", s.lost},
		{"Nodes", s.nodes},
	} {
		t.Run(c.name, c.fn)
	}
}

type suite struct{ open Opener }

// timeout bounds each wait: generous, as CI machines are slow, and only
// reached when a test fails.
const timeout = 20 * time.Second

func (s *suite) openBroker(t *testing.T, r herald.Retention) (herald.Broker, func() herald.Broker) {
	t.Helper()
	b, another := s.open(t, r)
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return b, func() herald.Broker {
		o := another()
		t.Cleanup(func() { o.Close() })
		return o
	}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	t.Cleanup(cancel)
	return ctx
}

func rec(i int) herald.Record {
	return herald.Record{Topics: []string{fmt.Sprintf("t%d", i%3)}, Data: fmt.Sprintf("event %d", i), Time: time.Now()}
}

func appendN(t *testing.T, b herald.Broker, n int) (string, []herald.Record) {
	t.Helper()
	var all []herald.Record
	var epoch string
	for i := 0; i < n; {
		batch := make([]herald.Record, 0, 16)
		for ; i < n && len(batch) < 16; i++ {
			batch = append(batch, rec(i))
		}
		e, err := b.Append(ctxT(t), batch)
		if err != nil {
			t.Fatalf("Append: %v", err)
		}
		if epoch != "" && e != epoch {
			t.Fatalf("epoch changed from %q to %q between appends", epoch, e)
		}
		epoch = e
		all = append(all, batch...)
	}
	return epoch, all
}

var errEnough = errors.New("enough")

// follow reads from after until it has want records or the log is
// quiet for the timeout, and returns the batches' records and whether any
// batch reported a loss.
func follow(t *testing.T, b herald.Broker, epoch string, after uint64, want int) (string, []herald.Record, bool) {
	t.Helper()
	var got []herald.Record
	var lost bool
	var gotEpoch string
	err := b.Follow(ctxT(t), epoch, after, func(bt herald.Batch) error {
		if len(bt.Records) == 0 {
			return fmt.Errorf("empty batch")
		}
		if gotEpoch != "" && bt.Epoch != gotEpoch {
			return fmt.Errorf("epoch changed from %q to %q while following", gotEpoch, bt.Epoch)
		}
		gotEpoch = bt.Epoch
		lost = lost || bt.Lost
		for _, r := range bt.Records {
			// fn must not keep the batch's slice; the records' own
			// fields are ours.
			got = append(got, r)
		}
		if len(got) >= want {
			return errEnough
		}
		return nil
	})
	if !errors.Is(err, errEnough) {
		t.Fatalf("Follow(%q, %d) = %v after %d of %d records, want fn's error", epoch, after, err, len(got), want)
	}
	return gotEpoch, got, lost
}

func positions(recs []herald.Record) []uint64 {
	p := make([]uint64, len(recs))
	for i, r := range recs {
		p[i] = r.Position
	}
	return p
}

func validEpoch(e string) bool {
	if len(e) != 12 {
		return false
	}
	for _, c := range []byte(e) {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

func (s *suite) appendPositions(t *testing.T) {
	b, _ := s.openBroker(t, herald.Retention{})
	epoch, head, err := b.Head(ctxT(t))
	if err != nil || head != 0 || !validEpoch(epoch) {
		t.Fatalf("Head of an empty log = %q, %d, %v; want a 12-character [A-Za-z0-9_] epoch, 0, nil", epoch, head, err)
	}
	e, recs := appendN(t, b, 40)
	if e != epoch {
		t.Errorf("Append's epoch %q, Head's %q", e, epoch)
	}
	for i, r := range recs {
		if r.Position == 0 || i > 0 && r.Position <= recs[i-1].Position {
			t.Fatalf("positions not increasing from 1: %v", positions(recs))
		}
	}
	e2, head, err := b.Head(ctxT(t))
	if err != nil || e2 != epoch || head != recs[len(recs)-1].Position {
		t.Errorf("Head = %q, %d, %v; want %q, %d", e2, head, err, epoch, recs[len(recs)-1].Position)
	}
}

func (s *suite) roundTrip(t *testing.T) {
	b, _ := s.openBroker(t, herald.Retention{})
	now := time.Now().Round(time.Millisecond)
	in := []herald.Record{
		{ID: "pub-1", Topics: []string{"a", "https://example.com/b c"}, Type: "update", Data: "line1\nline2\r\nline3\rend é",
			Retry: 2500 * time.Millisecond, Time: now, Private: true, ToUsers: []string{"alice"}, ToConnections: []string{"c1", "c2"}},
		{Topics: []string{"a"}, Data: "", Time: now},
		{Topics: []string{"big"}, Data: string(make([]byte, 200<<10)), Time: now},
	}
	epoch, err := b.Append(ctxT(t), slices.Clone(in))
	if err != nil {
		t.Fatalf("Append: %v", err)
	}
	gotEpoch, got, lost := follow(t, b, "", 0, len(in))
	if gotEpoch != epoch || lost {
		t.Errorf("batch epoch %q lost %v, want %q false", gotEpoch, lost, epoch)
	}
	for i := range in {
		g, w := got[i], in[i]
		if !g.Time.Equal(w.Time) {
			t.Errorf("record %d: time %v, want %v", i, g.Time, w.Time)
		}
		g.Position, g.Time, w.Time = 0, time.Time{}, time.Time{}
		if fmt.Sprintf("%#v", g) != fmt.Sprintf("%#v", w) {
			t.Errorf("record %d:\n got %#v\nwant %#v", i, g, w)
		}
	}
}

func (s *suite) followFromMiddle(t *testing.T) {
	b, _ := s.openBroker(t, herald.Retention{})
	epoch, recs := appendN(t, b, 30)
	_, got, lost := follow(t, b, epoch, recs[9].Position, 20)
	if lost || !slices.Equal(positions(got), positions(recs[10:])) {
		t.Errorf("Follow after the 10th: lost %v, positions %v, want %v", lost, positions(got), positions(recs[10:]))
	}
	for i, r := range got {
		if r.Data != recs[10+i].Data {
			t.Fatalf("record %d: data %q, want %q", i, r.Data, recs[10+i].Data)
		}
	}
}

func (s *suite) followOtherEpoch(t *testing.T) {
	b, _ := s.openBroker(t, herald.Retention{})
	epoch, recs := appendN(t, b, 5)
	gotEpoch, got, lost := follow(t, b, "otherEpoch_0", recs[3].Position, 5)
	if gotEpoch != epoch || lost || !slices.Equal(positions(got), positions(recs)) {
		t.Errorf("Follow with another epoch: epoch %q lost %v positions %v; want %q false %v (from the start)", gotEpoch, lost, positions(got), epoch, positions(recs))
	}
}

func (s *suite) followLive(t *testing.T) {
	b, _ := s.openBroker(t, herald.Retention{})
	epoch, _, err := b.Head(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan herald.Record, 100)
	ctx, cancel := context.WithCancel(ctxT(t))
	done := make(chan error, 1)
	go func() {
		done <- b.Follow(ctx, epoch, 0, func(bt herald.Batch) error {
			for _, r := range bt.Records {
				got <- r
			}
			return nil
		})
	}()
	for i := range 3 {
		r := rec(i)
		if _, err := b.Append(ctxT(t), []herald.Record{r}); err != nil {
			t.Fatal(err)
		}
		select {
		case g := <-got:
			if g.Data != r.Data {
				t.Fatalf("live record %q, want %q", g.Data, r.Data)
			}
		case <-time.After(timeout):
			t.Fatalf("record %d appended while following never arrived", i)
		}
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Follow after cancel = %v, want context.Canceled", err)
		}
	case <-time.After(timeout):
		t.Fatal("Follow did not return after its context was cancelled")
	}
}

func (s *suite) fnError(t *testing.T) {
	b, _ := s.openBroker(t, herald.Retention{})
	appendN(t, b, 3)
	mine := errors.New("mine")
	if err := b.Follow(ctxT(t), "", 0, func(herald.Batch) error { return mine }); !errors.Is(err, mine) {
		t.Errorf("Follow = %v, want fn's error", err)
	}
}

func (s *suite) twoNodes(t *testing.T) {
	a, another := s.openBroker(t, herald.Retention{})
	b := another()
	ea, ra := appendN(t, a, 10)
	eb, rb := appendN(t, b, 10)
	if ea != eb {
		t.Fatalf("two clients of one log see epochs %q and %q", ea, eb)
	}
	all := append(ra, rb...)
	for _, n := range []herald.Broker{a, b} {
		e, got, _ := follow(t, n, "", 0, 20)
		if e != ea || !slices.Equal(positions(got), positions(all)) {
			t.Errorf("following: epoch %q positions %v, want %q %v", e, positions(got), ea, positions(all))
		}
	}
}

func (s *suite) concurrentAppends(t *testing.T) {
	b, another := s.openBroker(t, herald.Retention{})
	clients := []herald.Broker{b, another(), another()}
	const per = 50
	var mu sync.Mutex
	byData := map[string]uint64{}
	var wg sync.WaitGroup
	for c, cl := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range per {
				r := herald.Record{Topics: []string{"x"}, Data: fmt.Sprintf("%d/%d", c, i), Time: time.Now()}
				recs := []herald.Record{r}
				if _, err := cl.Append(context.Background(), recs); err != nil {
					t.Errorf("Append: %v", err)
					return
				}
				mu.Lock()
				byData[r.Data] = recs[0].Position
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	n := per * len(clients)
	for _, cl := range clients {
		_, got, _ := follow(t, cl, "", 0, n)
		last := map[int]int{}
		for i, r := range got {
			if i > 0 && r.Position <= got[i-1].Position {
				t.Fatalf("positions not increasing: %d after %d", r.Position, got[i-1].Position)
			}
			if byData[r.Data] != r.Position {
				t.Fatalf("%q followed at %d, Append said %d", r.Data, r.Position, byData[r.Data])
			}
			var c, k int
			fmt.Sscanf(r.Data, "%d/%d", &c, &k)
			if prev, ok := last[c]; ok && k != prev+1 {
				t.Fatalf("client %d's appends out of order: %d after %d", c, k, prev)
			}
			last[c] = k
		}
	}
}

func (s *suite) duplicateID(t *testing.T) {
	b, another := s.openBroker(t, herald.Retention{})
	if _, err := b.Append(ctxT(t), []herald.Record{{ID: "dup", Topics: []string{"a"}, Time: time.Now()}}); err != nil {
		t.Fatal(err)
	}
	for _, cl := range []herald.Broker{b, another()} {
		if _, err := cl.Append(ctxT(t), []herald.Record{{ID: "dup", Topics: []string{"a"}, Time: time.Now()}}); !errors.Is(err, herald.ErrDuplicateID) {
			t.Errorf("second Append with the same ID = %v, want ErrDuplicateID", err)
		}
	}
	batch := []herald.Record{{ID: "fresh", Topics: []string{"a"}, Time: time.Now()}, {ID: "dup", Topics: []string{"a"}, Time: time.Now()}}
	if _, err := b.Append(ctxT(t), batch); !errors.Is(err, herald.ErrDuplicateID) {
		t.Errorf("batch with a used ID = %v, want ErrDuplicateID", err)
	}
	if _, err := b.Append(ctxT(t), []herald.Record{{ID: "fresh", Topics: []string{"a"}, Time: time.Now()}}); err != nil {
		t.Errorf("an ID of a refused batch was taken: %v", err)
	}
	_, head, err := b.Head(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	_, got, _ := follow(t, b, "", 0, 2)
	if len(got) != 2 || got[1].Position != head || got[0].ID != "dup" || got[1].ID != "fresh" {
		t.Errorf("log holds %+v, want dup then fresh only", got)
	}
}

func (s *suite) lost(t *testing.T) {
	b, _ := s.openBroker(t, herald.Retention{MaxEvents: 10})
	epoch, recs := appendN(t, b, 500)
	_, got, lost := follow(t, b, epoch, recs[4].Position, 1)
	if !lost {
		t.Errorf("Follow after record 5 of 500 with MaxEvents 10: first batch from %d not marked lost", got[0].Position)
	}
	i := slices.Index(positions(recs), got[0].Position)
	if i <= 5 {
		t.Fatalf("Follow after record 5 started at record %d, which retention should have removed", i+1)
	}
	_, got, lost = follow(t, b, epoch, recs[498].Position, 1)
	if lost || got[0].Position != recs[499].Position {
		t.Errorf("Follow after the 499th: lost %v, first %d; want false, %d", lost, got[0].Position, recs[499].Position)
	}
}

func (s *suite) nodes(t *testing.T) {
	b, another := s.openBroker(t, herald.Retention{})
	o := another()
	now := time.Now().Round(time.Millisecond)
	sa := herald.NodeStatus{Node: "node-a", Connections: 3, Epoch: "e", Applied: 7, Head: 9, Time: now}
	sb := herald.NodeStatus{Node: "node-b", Connections: 5, Epoch: "e", Applied: 9, Head: 9, Time: now}
	if err := b.Announce(ctxT(t), sa); err != nil {
		t.Fatal(err)
	}
	if err := o.Announce(ctxT(t), sb); err != nil {
		t.Fatal(err)
	}
	sa.Connections = 4
	if err := b.Announce(ctxT(t), sa); err != nil {
		t.Fatal(err)
	}
	for _, cl := range []herald.Broker{b, o} {
		got, err := cl.Nodes(ctxT(t))
		if err != nil {
			t.Fatal(err)
		}
		slices.SortFunc(got, func(x, y herald.NodeStatus) int { return int(x.Connections - y.Connections) })
		if len(got) != 2 || got[0].Node != "node-a" || got[0].Connections != 4 || got[0].Applied != 7 || got[1].Node != "node-b" || !got[1].Time.Equal(now) {
			t.Errorf("Nodes = %+v, want node-a (4 connections, applied 7) and node-b", got)
		}
	}
}

// BenchAppendFollow measures a publish's round trip through br: append one
// 100-byte record, and wait until a Follow of the same broker delivers
// it. Run it from each implementation's benchmarks.
func BenchAppendFollow(b *testing.B, br herald.Broker) {
	epoch, head, err := br.Head(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	got := make(chan uint64, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- br.Follow(ctx, epoch, head, func(bt herald.Batch) error {
			got <- bt.Records[len(bt.Records)-1].Position
			return nil
		})
	}()
	defer func() {
		cancel()
		<-done
	}()
	r := herald.Record{Topics: []string{"bench"}, Data: string(make([]byte, 100)), Time: time.Now()}
	for b.Loop() {
		recs := []herald.Record{r}
		if _, err := br.Append(context.Background(), recs); err != nil {
			b.Fatal(err)
		}
		for p := uint64(0); p < recs[0].Position; {
			select {
			case p = <-got:
			case err := <-done:
				b.Fatalf("Follow: %v", err)
			}
		}
	}
}
