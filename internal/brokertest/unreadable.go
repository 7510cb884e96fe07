package brokertest

import (
	"testing"

	"github.com/herald-sse/herald"
)

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
