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

// UnreadableAppender is what the broker an [Opener] returns may also
// implement, in the test's own code (by writing to the log behind the
// broker's back), so that Run checks how it reads entries it cannot
// decode: written by another program, or by a newer version of Herald
// during a rolling upgrade. The cases that need it are skipped for a
// broker without it.
type UnreadableAppender interface {
	// AppendUnreadable adds an entry that Follow cannot decode to the end
	// of the log, and returns its position: the one Head reports next.
	AppendUnreadable(ctx context.Context) (uint64, error)
}

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
		{"FollowReachesHead", s.followReachesHead},
		{"UnreadableHead", s.unreadableHead},
		{"UnreadableMiddle", s.unreadableMiddle},
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

// reading is what a Follow delivered, checked against the contract as it
// came.
type reading struct {
	epoch   string
	batches []herald.Batch // copies: fn must not keep b.Records
	records []herald.Record
	// reached is the last position read: of the last record, or a
	// batch's Through beyond it.
	reached uint64
	// lost is whether a batch so far reported a loss.
	lost bool
}

// add checks bt and adds it to r.
func (r *reading) add(bt herald.Batch) error {
	if bt.Epoch == "" {
		return fmt.Errorf("batch without an epoch: %+v", bt)
	}
	if r.epoch != "" && bt.Epoch != r.epoch {
		return fmt.Errorf("epoch changed from %q to %q while following", r.epoch, bt.Epoch)
	}
	if len(bt.Records) == 0 && bt.Through == 0 {
		return fmt.Errorf("empty batch without Through: %+v", bt)
	}
	for _, rec := range bt.Records {
		if rec.Position <= r.reached {
			return fmt.Errorf("record at %d after the log was read up to %d", rec.Position, r.reached)
		}
		r.reached = rec.Position
	}
	if bt.Through != 0 {
		if bt.Through <= r.reached {
			return fmt.Errorf("batch's Through %d is not beyond %d, already read (its records: %v)", bt.Through, r.reached, positions(bt.Records))
		}
		r.reached = bt.Through
	}
	r.epoch = bt.Epoch
	r.lost = r.lost || bt.Lost
	bt.Records = slices.Clone(bt.Records)
	r.batches = append(r.batches, bt)
	r.records = append(r.records, bt.Records...)
	return nil
}

// batchOf returns the index of the batch that delivered the record at
// position p, -1 if none.
func (r *reading) batchOf(p uint64) int {
	return slices.IndexFunc(r.batches, func(bt herald.Batch) bool {
		return slices.ContainsFunc(bt.Records, func(rec herald.Record) bool { return rec.Position == p })
	})
}

// lostWithin reports whether a batch from the i-th to the j-th (included)
// reported a loss.
func (r *reading) lostWithin(i, j int) bool {
	return slices.ContainsFunc(r.batches[i:j+1], func(bt herald.Batch) bool { return bt.Lost })
}

// missesSilently reports whether the first of recs after position after
// was not read, and no batch up to the i-th reported a loss.
func (r *reading) missesSilently(recs []herald.Record, after uint64, i int) bool {
	k := slices.IndexFunc(recs, func(rec herald.Record) bool { return rec.Position > after })
	return k >= 0 && r.batchOf(recs[k].Position) < 0 && !r.lostWithin(0, i)
}

func (r *reading) String() string {
	var s []string
	for _, bt := range r.batches {
		s = append(s, fmt.Sprintf("{records %v lost %v through %d}", positions(bt.Records), bt.Lost, bt.Through))
	}
	return fmt.Sprintf("epoch %q, batches %v", r.epoch, s)
}

// followUntil follows the log from after until done says the reading is
// complete, and fails the test if it is not within the timeout or a
// batch breaks the contract.
func followUntil(t *testing.T, b herald.Broker, epoch string, after uint64, done func(*reading) bool) *reading {
	t.Helper()
	r := &reading{reached: after}
	err := b.Follow(ctxT(t), epoch, after, func(bt herald.Batch) error {
		if r.epoch == "" && bt.Epoch != epoch {
			r.reached = 0 // reading another log, from its start
		}
		if err := r.add(bt); err != nil {
			return err
		}
		if done(r) {
			return errEnough
		}
		return nil
	})
	if !errors.Is(err, errEnough) {
		t.Fatalf("Follow(%q, %d) = %v after reading %v; want fn's error", epoch, after, err, r)
	}
	return r
}

// follow reads from after until it has want records, and returns the
// batches' records and whether any batch reported a loss.
func follow(t *testing.T, b herald.Broker, epoch string, after uint64, want int) (string, []herald.Record, bool) {
	t.Helper()
	r := followUntil(t, b, epoch, after, func(r *reading) bool { return len(r.records) >= want })
	return r.epoch, r.records, r.lost
}

// quietly follows from after for d, and returns what it read, which must
// be no record: for a log nothing is appended to.
func quietly(t *testing.T, b herald.Broker, epoch string, after uint64, d time.Duration) *reading {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctxT(t), d)
	defer cancel()
	r := &reading{reached: after}
	err := b.Follow(ctx, epoch, after, func(bt herald.Batch) error {
		if r.epoch == "" && bt.Epoch != epoch {
			r.reached = 0
		}
		return r.add(bt)
	})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Follow(%q, %d) = %v after reading %v; want it to go on until its context ends", epoch, after, err, r)
	}
	if len(r.records) > 0 {
		t.Fatalf("Follow(%q, %d) read records of a log nothing was appended to: %v", epoch, after, r)
	}
	return r
}

// reachHead checks the promise a node's sync rests on: Follow reaches
// the position Head reports, whatever the log holds. It returns Head's
// epoch and position, and what Follow read (nil if Head is not beyond
// after: nothing to reach).
func reachHead(t *testing.T, b herald.Broker, after uint64) (string, uint64, *reading) {
	t.Helper()
	epoch, head, err := b.Head(ctxT(t))
	if err != nil {
		t.Fatalf("Head: %v", err)
	}
	if head <= after {
		return epoch, head, nil
	}
	r := followUntil(t, b, epoch, after, func(r *reading) bool { return r.reached >= head })
	if r.epoch != epoch {
		t.Errorf("Head's epoch %q, Follow's %q", epoch, r.epoch)
	}
	return epoch, head, r
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

// followReachesHead checks that a follower can always read up to Head,
// which a node must have done to be in sync: on a log that never had
// records, on one that has some, and on one whose records all outlived
// their retention.
func (s *suite) followReachesHead(t *testing.T) {
	t.Run("Empty", func(t *testing.T) {
		b, _ := s.openBroker(t, herald.Retention{})
		epoch, head, _ := reachHead(t, b, 0)
		if head != 0 {
			t.Fatalf("Head of a log that never had records = %d, want 0", head)
		}
		if r := quietly(t, b, epoch, 0, 500*time.Millisecond); len(r.batches) > 0 {
			t.Errorf("Follow of a log that never had records read %v", r)
		}
	})
	t.Run("Records", func(t *testing.T) {
		b, _ := s.openBroker(t, herald.Retention{})
		epoch, recs := appendN(t, b, 20)
		last := recs[len(recs)-1].Position
		for _, after := range []uint64{0, recs[9].Position, recs[18].Position} {
			e, head, r := reachHead(t, b, after)
			if e != epoch || head != last {
				t.Fatalf("Head = %q, %d; want %q, %d", e, head, epoch, last)
			}
			if r.lost || r.records[len(r.records)-1].Position != last {
				t.Errorf("Follow from %d read %v; want up to the last record, %d, none lost", after, r, last)
			}
		}
		if _, _, r := reachHead(t, b, last); r != nil {
			t.Errorf("Follow from Head had more to read: %v", r)
		}
	})
	t.Run("AgedOut", func(t *testing.T) {
		const age = time.Second
		b, _ := s.openBroker(t, herald.Retention{MaxAge: age})
		epoch, recs := appendN(t, b, 3)
		last := recs[2].Position
		// A broker may remove records as soon as they are older than
		// MaxAge, or only when something makes it look (Redis trims on
		// append), or never (MemoryBroker has no age limit). Either way
		// Head must be reachable.
		deadline := time.Now().Add(3 * age)
		var head uint64
		for {
			var err error
			_, head, err = b.Head(ctxT(t))
			if err != nil {
				t.Fatal(err)
			}
			if head == 0 || time.Now().After(deadline) {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if head != 0 && head != last {
			t.Fatalf("Head of a log whose last record is at %d = %d; want that, or 0 once retention removed them all", last, head)
		}
		emptied := head == 0
		t.Logf("records older than MaxAge: Head %d (emptied: %v)", head, emptied)
		for _, after := range []uint64{0, recs[0].Position, last} {
			e, head, r := reachHead(t, b, after)
			if e != epoch {
				t.Fatalf("Head's epoch %q, was %q", e, epoch)
			}
			if head == 0 {
				// Nothing to reach; a follower may be told what it
				// missed, but must not be handed a removed record.
				quietly(t, b, epoch, after, 500*time.Millisecond)
			} else if r != nil && r.missesSilently(recs, after, len(r.batches)-1) {
				t.Errorf("Follow from %d read %v: it misses records without reporting them lost", after, r)
			}
		}

		// And when the log gets a record again, followers reach it,
		// told of what they missed.
		_, more := appendN(t, b, 1)
		for _, after := range []uint64{0, recs[0].Position, last} {
			e, head, r := reachHead(t, b, after)
			if e != epoch || head != more[0].Position && head != 0 {
				t.Fatalf("Head = %q, %d; want %q, %d (or 0 if it aged out already)", e, head, epoch, more[0].Position)
			}
			if r == nil {
				continue // aged out already: nothing to reach
			}
			i := r.batchOf(more[0].Position)
			if i < 0 {
				// Only if it aged out before Follow could read it.
				if !r.lost {
					t.Errorf("Follow from %d read %v: neither the new record at %d nor a loss", after, r, more[0].Position)
				}
				continue
			}
			if emptied && after < last && !r.lostWithin(0, i) {
				t.Errorf("Follow from %d of a log emptied by retention read %v: the loss before %d not reported", after, r, more[0].Position)
			}
			if r.missesSilently(recs, after, i) {
				t.Errorf("Follow from %d read %v: it misses records without reporting them lost", after, r)
			}
		}
	})
}

// unreadable returns b as an UnreadableAppender, or skips the test.
func unreadable(t *testing.T, b herald.Broker) UnreadableAppender {
	t.Helper()
	ua, ok := b.(UnreadableAppender)
	if !ok {
		t.Skip("the opener's broker cannot write an unreadable entry (brokertest.UnreadableAppender)")
	}
	return ua
}

// unreadableHead checks that a follower reaches Head when the newest
// entry of the log is one it cannot read, as when a node of a newer
// version appended it during a rolling upgrade: it is told by a batch
// whose Through reaches it, marked lost.
func (s *suite) unreadableHead(t *testing.T) {
	b, _ := s.openBroker(t, herald.Retention{})
	ua := unreadable(t, b)
	epoch, good := appendN(t, b, 1)
	bad, err := ua.AppendUnreadable(ctxT(t))
	if err != nil {
		t.Fatalf("AppendUnreadable: %v", err)
	}
	if bad <= good[0].Position {
		t.Fatalf("unreadable entry at %d, after a record at %d", bad, good[0].Position)
	}
	e, head, r := reachHead(t, b, 0)
	if e != epoch || head != bad {
		t.Fatalf("Head = %q, %d; want %q and the unreadable entry's position, %d", e, head, epoch, bad)
	}
	i := r.batchOf(good[0].Position)
	if len(r.records) != 1 || i < 0 || r.batches[i].Lost {
		t.Fatalf("Follow read %v; want the readable record at %d, not lost", r, good[0].Position)
	}
	if i == len(r.batches)-1 || !r.lostWithin(i+1, len(r.batches)-1) {
		t.Errorf("Follow read %v; want a batch after the record's, reaching %d, marked lost", r, bad)
	}

	// A follower that had read the readable record.
	_, _, r = reachHead(t, b, good[0].Position)
	if len(r.records) != 0 || !r.lost {
		t.Errorf("Follow after the readable record read %v; want no record, and the unreadable one reported lost", r)
	}

	// A follower that had read up to the unreadable entry goes on from
	// there, with nothing lost.
	_, next := appendN(t, b, 1)
	r = followUntil(t, b, epoch, bad, func(r *reading) bool { return len(r.records) > 0 })
	if r.lost || r.records[0].Position != next[0].Position || r.records[0].Data != next[0].Data {
		t.Errorf("Follow after the unreadable entry read %v; want the record appended after it, %d, not lost", r, next[0].Position)
	}
}

// unreadableMiddle checks that an entry a follower cannot read, between
// two it can, is reported lost between them.
func (s *suite) unreadableMiddle(t *testing.T) {
	b, _ := s.openBroker(t, herald.Retention{})
	ua := unreadable(t, b)
	epoch, first := appendN(t, b, 1)
	bad, err := ua.AppendUnreadable(ctxT(t))
	if err != nil {
		t.Fatalf("AppendUnreadable: %v", err)
	}
	_, second := appendN(t, b, 1)
	if !(first[0].Position < bad && bad < second[0].Position) {
		t.Fatalf("positions %d, %d (unreadable), %d: want increasing", first[0].Position, bad, second[0].Position)
	}
	e, head, r := reachHead(t, b, 0)
	if e != epoch || head != second[0].Position {
		t.Fatalf("Head = %q, %d; want %q, %d", e, head, epoch, second[0].Position)
	}
	i, j := r.batchOf(first[0].Position), r.batchOf(second[0].Position)
	if len(r.records) != 2 || i < 0 || j < 0 || r.batches[i].Lost {
		t.Fatalf("Follow read %v; want the two readable records, the first not lost", r)
	}
	if !r.lostWithin(i+1, j) {
		t.Errorf("Follow read %v; want the unreadable entry at %d reported lost, at the latest with the record after it", r, bad)
	}
	if r.records[1].Data != second[0].Data {
		t.Errorf("record after the unreadable entry: %q, want %q", r.records[1].Data, second[0].Data)
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
			p := bt.Through
			if len(bt.Records) > 0 {
				p = max(p, bt.Records[len(bt.Records)-1].Position)
			}
			got <- p
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
