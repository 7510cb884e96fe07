package historytest

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/herald-sse/herald"
)

type suite struct{ open Opener }

// history opens a history that is closed when the test ends.
func (s *suite) history(t *testing.T, r herald.Retention) herald.History {
	t.Helper()
	h := s.open(t, r)
	t.Cleanup(func() {
		if err := h.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return h
}

// Prefix is a selector that is not a [herald.Topic]: a store must ask it
// about each record (its scan path).
type Prefix string

// Match reports whether topic starts with p.
func (p Prefix) Match(topic string) bool { return strings.HasPrefix(topic, string(p)) }

// String returns p followed by "*".
func (p Prefix) String() string { return string(p) + "*" }

// rec makes a record with a payload naming it.
func rec(id string, topics ...string) herald.Record {
	return herald.Record{ID: id, Topics: topics, Data: "data of " + id + strings.Join(topics, ",")}
}

// add appends recs as the hub does (wait after Append) and returns their
// positions.
func add(t testing.TB, h herald.History, recs ...herald.Record) []uint64 {
	t.Helper()
	wait, err := h.Append(recs)
	if err != nil {
		t.Fatalf("Append: %v", err)
	}
	if wait != nil {
		if err := wait(); err != nil {
			t.Fatalf("Append's wait: %v", err)
		}
	}
	pos := make([]uint64, len(recs))
	for i := range recs {
		pos[i] = recs[i].Position
	}
	return pos
}

// addN appends n records one Append at a time, each to topics, with IDs
// prefix+i, and returns their positions.
func addN(t testing.TB, h herald.History, n int, prefix string, topics ...string) []uint64 {
	t.Helper()
	var pos []uint64
	for i := range n {
		pos = append(pos, add(t, h, rec(prefix+strconv.Itoa(i), topics...))...)
	}
	return pos
}

// addBatch appends n records to topics in one Append, with IDs prefix+i,
// and returns their positions.
func addBatch(t testing.TB, h herald.History, n int, prefix string, topics ...string) []uint64 {
	t.Helper()
	recs := make([]herald.Record, n)
	for i := range recs {
		recs[i] = rec(prefix+strconv.Itoa(i), topics...)
	}
	return add(t, h, recs...)
}

// replay collects what Replay hands over, checking the pages as it goes:
// never empty, positions strictly increasing within (after, upTo].
func replay(t testing.TB, h herald.History, after, upTo uint64, sels ...herald.Selector) ([]herald.Record, error) {
	t.Helper()
	var got []herald.Record
	last := after
	err := h.Replay(after, upTo, sels, func(page []herald.Record) error {
		if len(page) == 0 {
			t.Errorf("Replay(%d, %d, %v) handed over an empty page", after, upTo, sels)
		}
		for _, r := range page {
			if r.Position <= last || r.Position > upTo {
				t.Errorf("Replay(%d, %d, %v) gave position %d after %d", after, upTo, sels, r.Position, last)
			}
			last = r.Position
			r.Topics = slices.Clone(r.Topics)
			r.ToUsers = slices.Clone(r.ToUsers)
			r.ToConnections = slices.Clone(r.ToConnections)
			got = append(got, r)
		}
		return nil
	})
	return got, err
}

// short abbreviates a long position list in messages.
type short []uint64

func (s short) String() string {
	if len(s) <= 24 {
		return fmt.Sprint([]uint64(s))
	}
	return fmt.Sprintf("%v … %v (%d positions)", []uint64(s[:12]), []uint64(s[len(s)-12:]), len(s))
}

// positionsOf returns the positions of recs.
func positionsOf(recs []herald.Record) []uint64 {
	var pos []uint64
	for _, r := range recs {
		pos = append(pos, r.Position)
	}
	return pos
}

// wantReplay checks that Replay returns exactly the records at want.
func wantReplay(t testing.TB, h herald.History, after, upTo uint64, sels []herald.Selector, want []uint64) {
	t.Helper()
	got, err := replay(t, h, after, upTo, sels...)
	if err != nil {
		t.Errorf("Replay(%d, %d, %v): %v", after, upTo, sels, err)
		return
	}
	if g := positionsOf(got); !slices.Equal(g, want) {
		t.Errorf("Replay(%d, %d, %v) = positions %v, want %v", after, upTo, sels, short(g), short(want))
	}
}

func wantLookup(t testing.TB, h herald.History, id string, want uint64, wantOK bool) {
	t.Helper()
	if pos, ok := h.Lookup(id); pos != want && wantOK || ok != wantOK {
		t.Errorf("Lookup(%q) = %d, %v; want %d, %v", id, pos, ok, want, wantOK)
	}
}

// wantLost checks Lost from after up to the head.
// wantKeptWithin checks that h, holding recs under a MaxBytes limit,
// kept the longest suffix of them whose sizes (Record.Size) fit: resuming
// after the record before it is gapless, one record earlier is not. It
// returns the index of the first record kept.
func wantKeptWithin(t testing.TB, h herald.History, recs []herald.Record, limit int64) int {
	t.Helper()
	var total int64
	first := len(recs)
	for first > 0 && total+int64(recs[first-1].Size()) <= limit {
		first--
		total += int64(recs[first].Size())
	}
	if first == 0 {
		t.Fatal("test records all fit the limit")
	}
	wantLost(t, h, recs[first-1].Position, all, false)
	wantLost(t, h, recs[first-1].Position-1, all, true)
	return first
}

func wantLost(t testing.TB, h herald.History, after uint64, sels []herald.Selector, want bool) {
	t.Helper()
	wantLostIn(t, h, after, h.Head(), sels, want)
}

// wantLostIn checks Lost(after, upTo, sels).
func wantLostIn(t testing.TB, h herald.History, after, upTo uint64, sels []herald.Selector, want bool) {
	t.Helper()
	if got := h.Lost(after, upTo, sels); got != want {
		t.Errorf("Lost(%d, %d, %v) = %v, want %v", after, upTo, sels, got, want)
	}
}

func sels(s ...herald.Selector) []herald.Selector { return s }

func topics(names ...string) []herald.Selector {
	var s []herald.Selector
	for _, n := range names {
		s = append(s, herald.Topic(n))
	}
	return s
}

var all = sels(herald.All{})
