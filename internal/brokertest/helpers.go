package brokertest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/herald-sse/herald"
)

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
