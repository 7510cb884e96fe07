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
