// Package historytest checks that a [herald.History] keeps every promise
// of the interface, so that each store (in memory, on disk, a shared log)
// is held to the same contract, and measures stores the same way (see
// bench.go).
package historytest

import (
	"flag"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/herald-sse/herald"
)

// long is -long: soak-sized runs, left out of the default suite for its
// time (go test -race ./bolt/ -long).
var long = flag.Bool("long", false, "run the soak-sized tests too (100,000s of records)")

// Long reports whether the test binary was run with -long, for the soak
// sized tests of the packages using this one.
func Long() bool { return *long }

// Opener returns a new, empty history with retention r. Run closes every
// history it opens (Close must return nil); the opener only cleans up
// what it made around it, such as files.
type Opener func(t *testing.T, r herald.Retention) herald.History

// Run checks every promise of [herald.History] on histories made by open.
func Run(t *testing.T, open Opener) {
	s := &suite{open: open}
	for _, c := range []struct {
		name string
		fn   func(t *testing.T)
	}{
		{"Positions", s.positions},
		{"Epoch", s.epoch},
		{"RoundTrip", s.roundTrip},
		{"Recipients", s.recipients},
		{"RecipientsReopened", s.recipientsReopened},
		{"MaxBytesRecipients", s.maxBytesRecipients},
		{"VisibleBeforeWait", s.visibleBeforeWait},
		{"Lookup", s.lookup},
		{"ReplayBounds", s.replayBounds},
		{"Selectors", s.selectors},
		{"Paging", s.paging},
		{"FnError", s.fnError},
		{"MaxEvents", s.maxEvents},
		{"MaxBytes", s.maxBytes},
		{"MaxAgeOnAppend", s.maxAgeOnAppend},
		{"MaxAgeAsTimePasses", s.maxAgeAsTimePasses},
		{"PerTopic", s.perTopic},
		{"PerTopicOtherTopicsOfRemoved", s.perTopicOtherTopics},
		{"LookupAfterCapRemovesNewest", s.lookupAfterCap},
		{"PerTopicHolesExact", s.perTopicHolesExact},
		{"LostUpTo", s.lostUpTo},
		{"LostMonotone", s.lostMonotone},
		{"HolesFoldedStayLost", s.holesFoldedStayLost},
		{"HolesBounded", s.holesBounded},
		{"LostDuringReplay", s.lostDuringReplay},
		{"RemovedAfterSent", s.removedAfterSent},
		{"RemovedAfterLastPage", s.removedAfterLastPage},
		{"ConcurrentReplay", s.concurrentReplay},
		{"Model", s.model},
		{"ModelManyHoles", s.modelManyHoles},
		{"ResumeHidesUnseen", s.resumeHidesUnseen},
	} {
		t.Run(c.name, c.fn)
	}
}

// Positions start at 1, are set in the records passed, increase across
// Append calls, and Head follows the last one.
func (s *suite) positions(t *testing.T) {
	h := s.history(t, herald.Retention{})
	if got := h.Head(); got != 0 {
		t.Errorf("Head of an empty history = %d, want 0", got)
	}
	first := add(t, h, rec("a", "t"), rec("b", "t"), rec("c", "u"))
	if first[0] != 1 {
		t.Errorf("first position %d, want 1", first[0])
	}
	if !slices.IsSorted(first) || first[0] == first[1] || first[1] == first[2] {
		t.Errorf("positions of one Append %v, want increasing", first)
	}
	if got := h.Head(); got != first[2] {
		t.Errorf("Head = %d, want %d", got, first[2])
	}
	last := first[2]
	for i := range 20 {
		n := i%4 + 1
		recs := make([]herald.Record, n)
		for j := range recs {
			recs[j] = rec(fmt.Sprint(i, j), "t")
		}
		for _, p := range add(t, h, recs...) {
			if p <= last {
				t.Fatalf("append %d: position %d after %d", i, p, last)
			}
			last = p
		}
		if got := h.Head(); got != last {
			t.Fatalf("append %d: Head = %d, want %d", i, got, last)
		}
	}
	if wait, err := h.Append(nil); err != nil {
		t.Errorf("Append of nothing: %v", err)
	} else if wait != nil {
		if err := wait(); err != nil {
			t.Errorf("Append of nothing: wait: %v", err)
		}
	}
	if got := h.Head(); got != last {
		t.Errorf("Head after appending nothing = %d, want %d", got, last)
	}
}

// Epoch is non-empty, made of [A-Za-z0-9_], stable, and differs between
// two stores.
func (s *suite) epoch(t *testing.T) {
	h := s.history(t, herald.Retention{MaxEvents: 2})
	e := h.Epoch()
	if e == "" {
		t.Fatal("empty epoch")
	}
	for _, c := range e {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			t.Errorf("epoch %q has %q, outside [A-Za-z0-9_]", e, c)
		}
	}
	addN(t, h, 5, "e", "t") // retention removes some too
	if got := h.Epoch(); got != e {
		t.Errorf("epoch changed from %q to %q", e, got)
	}
	if other := s.history(t, herald.Retention{}).Epoch(); other == e {
		t.Errorf("two histories share the epoch %q", e)
	}
}

// Every field comes back as appended; a zero Time becomes the time of the
// Append.
func (s *suite) roundTrip(t *testing.T) {
	h := s.history(t, herald.Retention{})
	stamp := time.Date(2030, 1, 2, 3, 4, 5, 6, time.UTC)
	in := []herald.Record{
		{ID: "full", Topics: []string{"b", "a", "ünï"}, Type: "update", Data: "line 1\nline 2\r\n \x00x", Retry: 1500 * time.Millisecond, Time: stamp},
		{Topics: []string{"a"}, Time: stamp}, // no ID, no type, empty data
		{ID: "now", Topics: []string{"a"}, Data: strings.Repeat("z", 70_000)},
	}
	want := slices.Clone(in)
	before := time.Now()
	pos := add(t, h, in...)
	after := time.Now()
	got, err := replay(t, h, 0, h.Head(), all...)
	if err != nil || len(got) != len(want) {
		t.Fatalf("Replay: %d records, %v; want %d", len(got), err, len(want))
	}
	for i, g := range got {
		w := want[i]
		if g.Position != pos[i] || g.ID != w.ID || !slices.Equal(g.Topics, w.Topics) || g.Type != w.Type || g.Data != w.Data || g.Retry != w.Retry {
			t.Errorf("record %d: got %+v, want %+v at position %d", i, g, w, pos[i])
		}
		if w.Time.IsZero() {
			if g.Time.Before(before.Add(-time.Second)) || g.Time.After(after.Add(time.Second)) {
				t.Errorf("record %d appended without a time got %v, want about %v", i, g.Time, before)
			}
		} else if !g.Time.Equal(w.Time) {
			t.Errorf("record %d: time %v, want %v", i, g.Time, w.Time)
		}
	}
}
