// Package brokertest checks that a [herald.Broker] keeps every promise of
// the interface, so the in-process broker, Redis and NATS JetStream are
// held to one contract.
package brokertest

import (
	"context"
	"fmt"
	"slices"
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
