// Package historytest checks that a [herald.History] keeps every promise
// of the interface, so that each store (in memory, on disk, a shared log)
// is held to the same contract, and measures stores the same way (see
// bench.go).
package historytest

import (
	"cmp"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
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

// Reopener is an optional test hook: a store that survives a restart
// implements it by closing itself and opening the same store again, with
// the same retention. The suite then checks what a restart keeps.
type Reopener interface {
	Reopen() (herald.History, error)
}

// recipientRecords are records restricted in every way, and not, with
// the same topic "r".
func recipientRecords() []herald.Record {
	return []herald.Record{
		{ID: "private", Topics: []string{"r"}, Data: "p", Private: true},
		{ID: "users", Topics: []string{"r", "s"}, Data: "u", ToUsers: []string{"alice", "bob", "ünï"}},
		{ID: "conns", Topics: []string{"r"}, Data: "c", ToConnections: []string{"c1"}},
		{ID: "both", Topics: []string{"r"}, Data: "b", Private: true, ToUsers: []string{"carol"}, ToConnections: []string{"c2", "c3"}},
		{ID: "public", Topics: []string{"r"}, Data: "pub"},
		{ID: "empty", Topics: []string{"r"}, Data: "e", ToUsers: []string{""}},
	}
}

// wantRecipients checks that every way of replaying h from after gives
// want, Private and the recipients included.
func wantRecipients(t *testing.T, h herald.History, after uint64, want []herald.Record) {
	t.Helper()
	for _, sl := range [][]herald.Selector{all, topics("r"), topics("r", "s"), sels(Prefix("r"))} {
		got, err := replay(t, h, after, h.Head(), sl...)
		if err != nil || len(got) != len(want) {
			t.Errorf("Replay(%d, %v): %d records, %v; want %d", after, sl, len(got), err, len(want))
			continue
		}
		for i, g := range got {
			w := want[i]
			if g.Position != w.Position || g.ID != w.ID || g.Data != w.Data || g.Private != w.Private ||
				!slices.Equal(g.ToUsers, w.ToUsers) || !slices.Equal(g.ToConnections, w.ToConnections) {
				t.Errorf("Replay(%d, %v) record %d: got %+v, want %+v", after, sl, i, g, w)
			}
		}
	}
}

// Private, ToUsers and ToConnections come back as appended, before and
// after the store committed them: dropping them would make private or
// targeted events public on replay.
func (s *suite) recipients(t *testing.T) {
	h := s.history(t, herald.Retention{})
	add(t, h, rec("before", "r"))
	in := recipientRecords()
	wait, err := h.Append(in)
	if err != nil {
		t.Fatalf("Append: %v", err)
	}
	wantRecipients(t, h, 1, in) // perhaps only queued
	if wait != nil {
		if err := wait(); err != nil {
			t.Fatalf("Append's wait: %v", err)
		}
	}
	wantRecipients(t, h, 1, in)
	single := herald.Record{ID: "single", Topics: []string{"r"}, Private: true, ToUsers: []string{"dave"}}
	single.Position = add(t, h, single)[0]
	wantRecipients(t, h, single.Position-1, []herald.Record{single})
}

// Private and the recipients survive a restart of a store that
// implements Reopener, and so does the byte accounting of MaxBytes.
func (s *suite) recipientsReopened(t *testing.T) {
	const limit = 3000
	h := s.open(t, herald.Retention{MaxBytes: limit})
	if _, ok := h.(Reopener); !ok {
		if err := h.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		t.Skip("the store does not implement Reopener")
	}
	in := recipientRecords()
	add(t, h, in...)
	reopened, err := h.(Reopener).Reopen()
	if err != nil {
		t.Fatalf("Reopen: %v", err)
	}
	h = reopened
	t.Cleanup(func() {
		if err := h.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	wantRecipients(t, h, 0, in)
	// The sizes counted before the restart are those of the records:
	// appending the same again removes exactly the oldest that no longer
	// fit.
	recs := slices.Clone(in)
	for i := range 12 {
		r := herald.Record{ID: "more" + strconv.Itoa(i), Topics: []string{"r"}, Data: strings.Repeat("m", 100), ToUsers: []string{strings.Repeat("u", 50), "v"}, Private: i%2 == 0}
		r.Position = add(t, h, r)[0]
		recs = append(recs, r)
	}
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
	wantRecipients(t, h, recs[first-1].Position, recs[first:])
}

// MaxBytes counts the recipients too, as Record.Size does.
func (s *suite) maxBytesRecipients(t *testing.T) {
	const limit = 5000
	h := s.history(t, herald.Retention{MaxBytes: limit})
	var recs []herald.Record
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range 60 {
		r := rec("b"+strconv.Itoa(i), "r")
		r.Data = strings.Repeat("d", rng.IntN(100))
		for range rng.IntN(8) {
			r.ToUsers = append(r.ToUsers, strings.Repeat("u", rng.IntN(60)))
		}
		for range rng.IntN(4) {
			r.ToConnections = append(r.ToConnections, strings.Repeat("c", rng.IntN(60)))
		}
		r.Private = rng.IntN(2) == 0
		r.Position = add(t, h, r)[0]
		recs = append(recs, r)
	}
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
	wantRecipients(t, h, recs[first-1].Position, recs[first:])
}

// The hub replays up to Head right after Append, before calling wait:
// everything appended is visible at once.
func (s *suite) visibleBeforeWait(t *testing.T) {
	h := s.history(t, herald.Retention{})
	add(t, h, rec("old", "t"))
	recs := []herald.Record{rec("x", "t"), rec("y", "u"), rec("z", "t", "u")}
	wait, err := h.Append(recs)
	if err != nil {
		t.Fatal(err)
	}
	if got := h.Head(); got != recs[2].Position {
		t.Errorf("Head before wait = %d, want %d", got, recs[2].Position)
	}
	wantLookup(t, h, "y", recs[1].Position, true)
	wantLost(t, h, 0, all, false)
	wantReplay(t, h, 0, h.Head(), topics("t"), []uint64{1, recs[0].Position, recs[2].Position})
	wantReplay(t, h, 1, h.Head(), sels(Prefix("u")), []uint64{recs[1].Position, recs[2].Position})
	if wait != nil {
		if err := wait(); err != nil {
			t.Fatal(err)
		}
	}
	wantReplay(t, h, 0, h.Head(), all, []uint64{1, 2, 3, 4})
}

// Lookup finds the newest record that carried an ID.
func (s *suite) lookup(t *testing.T) {
	h := s.history(t, herald.Retention{})
	pos := add(t, h, rec("a", "t"), rec("b", "t"), herald.Record{Topics: []string{"t"}}, rec("a", "u"), rec("ab", "t"))
	wantLookup(t, h, "a", pos[3], true)
	wantLookup(t, h, "b", pos[1], true)
	wantLookup(t, h, "ab", pos[4], true)
	for _, id := range []string{"", "c", "A", "a ", "b\x00"} {
		wantLookup(t, h, id, 0, false)
	}
	more := add(t, h, rec("b", "v"))
	wantLookup(t, h, "b", more[0], true)
}

// Replay hands over after < Position <= upTo, and nothing past the head.
func (s *suite) replayBounds(t *testing.T) {
	h := s.history(t, herald.Retention{})
	pos := addN(t, h, 10, "r", "t")
	wantReplay(t, h, 0, pos[9], all, pos)
	wantReplay(t, h, pos[2], pos[6], all, pos[3:7])
	wantReplay(t, h, pos[2], pos[6], topics("t"), pos[3:7])
	wantReplay(t, h, pos[2], pos[6], sels(Prefix("t")), pos[3:7])
	wantReplay(t, h, 0, pos[9]+100, topics("t"), pos)
	wantReplay(t, h, pos[8], ^uint64(0), all, pos[9:])
	for _, r := range [][2]uint64{{pos[4], pos[4]}, {pos[6], pos[2]}, {pos[9], pos[9] + 5}, {0, 0}} {
		wantReplay(t, h, r[0], r[1], all, nil)
		wantReplay(t, h, r[0], r[1], topics("t"), nil)
	}
}

// Topic selectors, the all selector and other selectors choose records;
// a record matched several times appears once.
func (s *suite) selectors(t *testing.T) {
	h := s.history(t, herald.Retention{})
	p := add(t, h,
		rec("1", "a"),
		rec("2", "b"),
		rec("3", "a", "b"),
		rec("4", "c"),
		rec("5", "b", "c", "a"),
		rec("6", "cx"),
		rec("7", "d"),
	)
	head := h.Head()
	for _, c := range []struct {
		sels []herald.Selector
		want []uint64
	}{
		{topics("a"), []uint64{p[0], p[2], p[4]}},
		{topics("b"), []uint64{p[1], p[2], p[4]}},
		{topics("a", "b"), []uint64{p[0], p[1], p[2], p[4]}},
		{topics("b", "a", "a"), []uint64{p[0], p[1], p[2], p[4]}},
		{topics("c"), []uint64{p[3], p[4]}},
		{topics("nope"), nil},
		{topics("nope", "d"), []uint64{p[6]}},
		{all, p},
		{sels(herald.All{}, herald.Topic("a")), p},
		{sels(Prefix("c")), []uint64{p[3], p[4], p[5]}},
		{sels(Prefix("c"), herald.Topic("a")), []uint64{p[0], p[2], p[3], p[4], p[5]}},
		{sels(herald.Topic("d"), Prefix("cx")), []uint64{p[5], p[6]}},
		{sels(Prefix("z")), nil},
	} {
		wantReplay(t, h, 0, head, c.sels, c.want)
	}
}

// Replays longer than a page (256 records in MemoryHistory) arrive whole
// and in order, on every path.
func (s *suite) paging(t *testing.T) {
	h := s.history(t, herald.Retention{})
	var even, tens, evenOrTens, allPos []uint64
	batch := make([]herald.Record, 0, 7)
	flush := func() {
		add(t, h, batch...)
		for _, r := range batch {
			allPos = append(allPos, r.Position)
			if slices.Contains(r.Topics, "even") {
				even = append(even, r.Position)
			}
			if slices.Contains(r.Topics, "tens") {
				tens = append(tens, r.Position)
			}
			if slices.Contains(r.Topics, "even") || slices.Contains(r.Topics, "tens") {
				evenOrTens = append(evenOrTens, r.Position)
			}
		}
		batch = batch[:0]
	}
	for i := range 1200 {
		ts := []string{"odd"}
		if i%2 == 0 {
			ts = []string{"even"}
		}
		if i%10 == 5 {
			ts = append(ts, "tens")
		}
		batch = append(batch, rec(strconv.Itoa(i), ts...))
		if len(batch) == cap(batch) {
			flush()
		}
	}
	flush()
	head := h.Head()
	wantReplay(t, h, 0, head, topics("even"), even)
	wantReplay(t, h, 0, head, topics("even", "tens"), evenOrTens)
	wantReplay(t, h, 0, head, topics("tens"), tens)
	wantReplay(t, h, 0, head, all, allPos)
	wantReplay(t, h, 0, head, sels(Prefix("ev")), even)
	wantReplay(t, h, 0, head, sels(Prefix("ev"), herald.Topic("tens")), evenOrTens)
	wantReplay(t, h, allPos[100], allPos[1000], all, allPos[101:1001])
	wantReplay(t, h, allPos[99], allPos[999], topics("even"), even[50:500])
}

// An error from fn ends the replay and is returned.
func (s *suite) fnError(t *testing.T) {
	h := s.history(t, herald.Retention{})
	addN(t, h, 600, "f", "t")
	boom := errors.New("boom")
	for _, sl := range [][]herald.Selector{topics("t"), all, sels(Prefix("t"))} {
		calls := 0
		err := h.Replay(0, h.Head(), sl, func([]herald.Record) error {
			calls++
			return boom
		})
		if !errors.Is(err, boom) || calls != 1 {
			t.Errorf("Replay with %v: fn called %d times, returned %v; want once and %v", sl, calls, err, boom)
		}
	}
}

// MaxEvents keeps the newest records; the removed ones are lost to every
// selector and their IDs are forgotten.
func (s *suite) maxEvents(t *testing.T) {
	h := s.history(t, herald.Retention{MaxEvents: 5})
	pos := addN(t, h, 8, "m", "t")
	if got := h.Head(); got != pos[7] {
		t.Errorf("Head = %d, want %d", got, pos[7])
	}
	for i := range 3 {
		wantLookup(t, h, "m"+strconv.Itoa(i), 0, false)
	}
	for i := 3; i < 8; i++ {
		wantLookup(t, h, "m"+strconv.Itoa(i), pos[i], true)
	}
	for _, sl := range [][]herald.Selector{topics("t"), topics("other"), all, sels(Prefix("x"))} {
		wantLost(t, h, 0, sl, true)
		wantLost(t, h, pos[1], sl, true)
		wantLost(t, h, pos[2], sl, false)
		wantLost(t, h, pos[7], sl, false)
	}
	wantReplay(t, h, pos[2], h.Head(), topics("t"), pos[3:])
	wantReplay(t, h, pos[2], h.Head(), all, pos[3:])
	for _, sl := range [][]herald.Selector{topics("t"), all} {
		if _, err := replay(t, h, pos[0], h.Head(), sl...); !errors.Is(err, herald.ErrHistoryLost) {
			t.Errorf("Replay(%d, %v) over removed records: %v, want ErrHistoryLost", pos[0], sl, err)
		}
	}
	// One Append over the limit at once.
	recs := make([]herald.Record, 7)
	for i := range recs {
		recs[i] = rec("n"+strconv.Itoa(i), "t")
	}
	p2 := add(t, h, recs...)
	wantReplay(t, h, p2[1], h.Head(), all, p2[2:])
	wantLost(t, h, p2[1], all, false)
	wantLost(t, h, p2[0], all, true)
}

// MaxBytes keeps the newest records whose sizes (Record.Size) fit.
func (s *suite) maxBytes(t *testing.T) {
	const limit = 4000
	h := s.history(t, herald.Retention{MaxBytes: limit})
	var recs []herald.Record
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 60 {
		r := rec("b"+strconv.Itoa(i), "t")
		r.Data = strings.Repeat("d", rng.IntN(600))
		r.Position = add(t, h, r)[0]
		recs = append(recs, r)
	}
	// The longest suffix within the limit is kept.
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
	wantReplay(t, h, recs[first-1].Position, h.Head(), topics("t"), positionsOf(recs[first:]))
	wantLookup(t, h, recs[first-1].ID, 0, false)
	wantLookup(t, h, recs[first].ID, recs[first].Position, true)
}

// Records older than MaxAge are removed, oldest first.
func (s *suite) maxAgeOnAppend(t *testing.T) {
	h := s.history(t, herald.Retention{MaxAge: time.Hour})
	old := time.Now().Add(-2 * time.Hour)
	var olds []herald.Record
	for i := range 3 {
		r := rec("old"+strconv.Itoa(i), "t")
		r.Time = old
		olds = append(olds, r)
	}
	oldPos := add(t, h, olds...)
	newPos := add(t, h, rec("new0", "t"), rec("new1", "u"))
	wantLost(t, h, 0, topics("t"), true)
	wantLost(t, h, oldPos[2], topics("t"), false)
	wantLookup(t, h, "old2", 0, false)
	wantLookup(t, h, "new0", newPos[0], true)
	wantReplay(t, h, oldPos[2], h.Head(), all, newPos)
}

// A record older than MaxAge is gone for every reader as soon as it is,
// without another Append.
func (s *suite) maxAgeAsTimePasses(t *testing.T) {
	t.Parallel()
	const maxAge = time.Hour
	h := s.history(t, herald.Retention{MaxAge: maxAge})
	ttl := time.Second
	r := rec("soon", "t")
	r.Time = time.Now().Add(ttl - maxAge) // expires ttl from now
	pos := add(t, h, r)[0]
	keep := rec("keep", "t")
	keep.Time = time.Now().Add(10*time.Minute - maxAge)
	kpos := add(t, h, keep)[0]
	if time.Until(r.Time.Add(maxAge)) < ttl/4 {
		t.Skip("too slow to check the record before it expires")
	}
	wantLookup(t, h, "soon", pos, true)
	wantLost(t, h, 0, all, false)

	time.Sleep(time.Until(r.Time.Add(maxAge)) + 20*time.Millisecond)
	wantLookup(t, h, "soon", 0, false)
	wantLost(t, h, 0, all, true)
	wantLost(t, h, pos, all, false)
	wantLookup(t, h, "keep", kpos, true)
	if _, err := replay(t, h, 0, h.Head(), topics("t")...); !errors.Is(err, herald.ErrHistoryLost) {
		t.Errorf("Replay over the expired record: %v, want ErrHistoryLost", err)
	}
	wantReplay(t, h, pos, h.Head(), topics("t"), []uint64{kpos})
}

// A per-topic cap removes that topic's oldest records; they are lost only
// to selectors that match it.
func (s *suite) perTopic(t *testing.T) {
	h := s.history(t, herald.Retention{PerTopic: map[string]int{"capped": 3}})
	var capped, free []uint64
	for i := range 10 {
		capped = append(capped, add(t, h, rec("c"+strconv.Itoa(i), "capped"))...)
		free = append(free, add(t, h, rec("f"+strconv.Itoa(i), "free"))...)
	}
	lastRemoved := capped[6]
	wantReplay(t, h, 0, h.Head(), topics("free"), free)
	wantReplay(t, h, lastRemoved, h.Head(), topics("capped"), capped[7:])
	var freeAfter []uint64
	for _, p := range free {
		if p > lastRemoved {
			freeAfter = append(freeAfter, p)
		}
	}
	wantReplay(t, h, lastRemoved, h.Head(), topics("capped", "free"), mergeSorted(capped[7:], freeAfter))
	wantReplay(t, h, 0, h.Head(), sels(Prefix("fr")), free)
	for _, sl := range [][]herald.Selector{topics("capped"), all, topics("free", "capped"), sels(Prefix("cap"))} {
		wantLost(t, h, 0, sl, true)
		wantLost(t, h, lastRemoved-1, sl, true)
		wantLost(t, h, lastRemoved, sl, false)
		if _, err := replay(t, h, 0, h.Head(), sl...); !errors.Is(err, herald.ErrHistoryLost) {
			t.Errorf("Replay(0, %v) over capped records: %v, want ErrHistoryLost", sl, err)
		}
	}
	for _, sl := range [][]herald.Selector{topics("free"), topics("other"), sels(Prefix("fr"))} {
		wantLost(t, h, 0, sl, false)
	}
	wantLookup(t, h, "c6", 0, false)
	wantLookup(t, h, "c7", capped[7], true)
	wantLookup(t, h, "f0", free[0], true)
}

// A record removed by one topic's cap is lost to the subscribers of its
// other topics too: it matched their selectors.
func (s *suite) perTopicOtherTopics(t *testing.T) {
	h := s.history(t, herald.Retention{PerTopic: map[string]int{"capped": 1}})
	p := add(t, h, rec("x", "free"), rec("both", "capped", "free"), rec("y", "free"), rec("c", "capped"))
	// "both" (p[1]) was removed by the cap on "capped".
	wantLookup(t, h, "both", 0, false)
	wantReplay(t, h, p[1], h.Head(), topics("free"), []uint64{p[2]})
	for _, sl := range [][]herald.Selector{topics("free"), sels(Prefix("fr"))} {
		if h.Lost(p[0], h.Head(), sl) != true {
			t.Errorf("Lost(%d, %v) = false, but the record at %d carried topic free and was removed by the cap on capped: "+
				"a subscriber of free resuming after %d would miss it without being told", p[0], sl, p[1], p[0])
		}
		if got, err := replay(t, h, p[0], h.Head(), sl...); !errors.Is(err, herald.ErrHistoryLost) {
			t.Errorf("Replay(%d, %v) = positions %v, %v; want ErrHistoryLost (the record at %d, on free, was removed)",
				p[0], sl, positionsOf(got), err, p[1])
		}
	}
	wantLost(t, h, p[1], topics("free"), false)
	wantLost(t, h, 0, topics("unrelated"), false)
}

// Lookup returns the newest retained record with an ID, even when a newer
// one with the same ID was removed by a cap.
func (s *suite) lookupAfterCap(t *testing.T) {
	h := s.history(t, herald.Retention{PerTopic: map[string]int{"capped": 1}})
	p := add(t, h, rec("dup", "free"), rec("dup", "capped"))
	wantLookup(t, h, "dup", p[1], true)
	add(t, h, rec("c", "capped")) // removes p[1]
	if pos, ok := h.Lookup("dup"); !ok || pos != p[0] {
		t.Errorf("Lookup(dup) = %d, %v; want %d, true: the record at %d carrying dup is still retained "+
			"(only the newer one at %d was removed by the cap)", pos, ok, p[0], p[0], p[1])
	}
}

// Each record removed by a cap is lost exactly to the selectors matching
// one of its topics, over exactly the ranges that hold it.
func (s *suite) perTopicHolesExact(t *testing.T) {
	h := s.history(t, herald.Retention{PerTopic: map[string]int{"t": 2}})
	var recs []herald.Record
	for i := range 30 {
		r := rec("h"+strconv.Itoa(i), "t", "u"+strconv.Itoa(i%3))
		if i%5 == 4 {
			r.Topics = []string{"free"}
		}
		r.Position = add(t, h, r)[0]
		recs = append(recs, r)
	}
	head := h.Head()
	m := map[uint64]herald.Record{}
	for _, r := range recs {
		m[r.Position] = r
	}
	live := map[uint64]bool{}
	for _, r := range recs {
		live[r.Position] = true
	}
	var ts []uint64 // positions of records carrying t, of which the last 2 are retained
	for _, r := range recs {
		if slices.Contains(r.Topics, "t") {
			ts = append(ts, r.Position)
		}
	}
	for _, p := range ts[:len(ts)-2] {
		live[p] = false
	}
	for _, sl := range [][]herald.Selector{topics("u0"), topics("u1"), topics("u2", "free"), topics("free"), topics("v"), sels(Prefix("u1")), sels(Prefix("fr"))} {
		for after := uint64(0); after <= head; after++ {
			for upTo := after; upTo <= head; upTo++ {
				want := false
				var kept []uint64
				for p := after + 1; p <= upTo; p++ {
					if herald.Matches(sl, m[p].Topics) {
						if live[p] {
							kept = append(kept, p)
						} else {
							want = true
						}
					}
				}
				wantLostIn(t, h, after, upTo, sl, want)
				if !want {
					wantReplay(t, h, after, upTo, sl, kept)
				} else if _, err := replay(t, h, after, upTo, sl...); !errors.Is(err, herald.ErrHistoryLost) {
					t.Errorf("Replay(%d, %d, %v) over a removed record: %v, want ErrHistoryLost", after, upTo, sl, err)
				}
			}
		}
		if t.Failed() {
			return
		}
	}
}

// Lost looks only at (after, upTo]: a record removed above upTo is not a
// loss for that range, and Replay of the range succeeds.
func (s *suite) lostUpTo(t *testing.T) {
	h := s.history(t, herald.Retention{PerTopic: map[string]int{"c": 1}})
	free := addN(t, h, 5, "f", "f")
	c := add(t, h, rec("c0", "c", "f2"), rec("c1", "c"), rec("c2", "c")) // the cap removes c0 and c1
	head := h.Head()
	for _, sl := range [][]herald.Selector{topics("c"), topics("f2"), all, sels(Prefix("")), topics("f", "c")} {
		wantLostIn(t, h, 0, free[4], sl, false)
		wantLostIn(t, h, free[1], free[4], sl, false)
		wantLostIn(t, h, 0, c[0], sl, true)
		wantLostIn(t, h, free[4], c[0], sl, true)
		wantLostIn(t, h, free[4], head, sl, true)
		wantLostIn(t, h, c[0], c[0], sl, false) // an empty range
		wantLostIn(t, h, c[1], c[0], sl, false)
		wantLostIn(t, h, head, head+10, sl, false)
		if got, err := replay(t, h, 0, free[4], sl...); err != nil {
			t.Errorf("Replay(0, %d, %v) below the removed records = %v, %v", free[4], sl, short(positionsOf(got)), err)
		}
	}
	wantReplay(t, h, 0, free[4], all, free)
	wantReplay(t, h, 0, free[4], topics("c"), nil)
	// c0 carried f2, c1 only c.
	wantLostIn(t, h, c[0], head, topics("f2"), false)
	wantLostIn(t, h, c[0], head, topics("c"), true)
	wantLostIn(t, h, c[0], c[1], topics("c"), true)
	wantLostIn(t, h, c[1], head, topics("c"), false)
	wantLostIn(t, h, 0, head, topics("f"), false)
	wantReplay(t, h, c[0], head, topics("f2"), nil)
	wantReplay(t, h, c[1], head, topics("c"), c[2:])

	// The global limits: what they remove is below what they keep.
	g := s.history(t, herald.Retention{MaxEvents: 3})
	p := addN(t, g, 6, "g", "t")
	wantLostIn(t, g, 0, p[0], all, true)
	wantLostIn(t, g, p[1], p[2], all, true)
	wantLostIn(t, g, p[2], p[3], all, false)
	wantLostIn(t, g, p[2], p[5], topics("t"), false)
	wantReplay(t, g, p[2], p[4], topics("t"), p[3:5])
}

// Lost is monotone: a smaller after or a larger upTo never turns true
// into false; and it is never false when a matching record of the range
// is gone.
func (s *suite) lostMonotone(t *testing.T) {
	r := herald.Retention{MaxEvents: 30, PerTopic: map[string]int{"a": 3, "b": 5}}
	h := s.history(t, r)
	m := newModel(r)
	rng := rand.New(rand.NewPCG(5, 6))
	names := []string{"a", "b", "c", "d"}
	for range 60 {
		x := rec("", names[rng.IntN(len(names))])
		if rng.IntN(3) == 0 {
			x.Topics = append(x.Topics, names[rng.IntN(len(names))]+"x")
		}
		x.Position = add(t, h, x)[0]
		m.append([]herald.Record{x})
	}
	head := h.Head()
	for _, sl := range [][]herald.Selector{topics("a"), topics("c", "dx"), topics("ax"), all, sels(Prefix("b"))} {
		lost := make([][]bool, head+2)
		for after := range head + 2 {
			lost[after] = make([]bool, head+2)
			for upTo := range head + 2 {
				got := h.Lost(after, upTo, sl)
				lost[after][upTo] = got
				if got && after >= upTo {
					t.Errorf("Lost(%d, %d, %v) = true for an empty range", after, upTo, sl)
				}
				if !got && m.mustLost(after, upTo, sl) {
					t.Errorf("Lost(%d, %d, %v) = false, but %v are gone", after, upTo, sl, m.gone(after, upTo, sl))
				}
			}
		}
		for after := range head + 2 {
			for upTo := range head + 2 {
				if !lost[after][upTo] {
					continue
				}
				if after > 0 && !lost[after-1][upTo] {
					t.Errorf("Lost(%d, %d, %v) = true but Lost(%d, %d) = false", after, upTo, sl, after-1, upTo)
				}
				if upTo <= head && !lost[after][upTo+1] {
					t.Errorf("Lost(%d, %d, %v) = true but Lost(%d, %d) = false", after, upTo, sl, after, upTo+1)
				}
			}
		}
		if t.Failed() {
			return
		}
	}
}

// A record removed by a cap stays lost when holes are folded into the
// global mark (more of them than MaxEvents) and a global limit then
// removes an older record: the mark never moves back.
func (s *suite) holesFoldedStayLost(t *testing.T) {
	h := s.history(t, herald.Retention{MaxEvents: 2, PerTopic: map[string]int{"c": 1}})
	first := add(t, h, rec("x", "x"))[0]
	c := addN(t, h, 5, "c", "c") // the cap removes c[0] to c[3]: more holes than MaxEvents
	add(t, h, rec("y", "y"))     // 3 records: the global limit removes x
	head := h.Head()
	wantLookup(t, h, "x", 0, false)
	for i := range 4 {
		wantLostIn(t, h, c[i]-1, c[i], topics("c"), true)
		wantLostIn(t, h, c[i]-1, head, topics("c"), true)
		if _, err := replay(t, h, c[i]-1, head, topics("c")...); !errors.Is(err, herald.ErrHistoryLost) {
			t.Errorf("Replay(%d, %d, c) over the removed record at %d: %v, want ErrHistoryLost", c[i]-1, head, c[i], err)
		}
	}
	wantLostIn(t, h, first-1, first, all, true)
	wantReplay(t, h, c[3], head, topics("c", "y"), []uint64{c[4], head})
}

// HoleCounter is an optional test hook: a store that implements it says
// how many removed records it remembers one by one (in memory or on
// disk). The suite checks it stays within MaxEvents.
type HoleCounter interface {
	HoleCount() int
}

// Records removed by a per-topic cap are remembered in bounded space:
// with a unique second topic per record (["orders", "orders/<i>"], cap
// orders=10), what a store keeps, and the cost of Lost, stay bounded by
// MaxEvents, not by the records ever removed.
func (s *suite) holesBounded(t *testing.T) {
	n := 20_000 // 20 times MaxEvents
	if Long() {
		n = 100_000
	}
	const maxEvents, batch = 1000, 500
	h := s.history(t, herald.Retention{MaxEvents: maxEvents, PerTopic: map[string]int{"orders": 10}})
	heap := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	recs := make([]herald.Record, batch)
	var base uint64
	for i := 0; i < n; i += batch {
		for j := range recs {
			recs[j] = herald.Record{Topics: []string{"orders", "orders/" + strconv.Itoa(i+j)}, Data: "o"}
		}
		add(t, h, recs...)
		if i == 5*batch {
			base = heap()
		}
	}
	if grown := int64(heap()) - int64(base); grown > 4<<20 {
		t.Errorf("heap grew by %d bytes over %d records removed by a cap, with MaxEvents %d", grown, n, maxEvents)
	}
	if hc, ok := h.(HoleCounter); ok {
		if got := hc.HoleCount(); got > maxEvents {
			t.Errorf("HoleCount = %d after %d records removed by a cap, want at most MaxEvents (%d)", got, n, maxEvents)
		}
	}
	head := h.Head()
	// The recent holes are exact: record head-10 is the newest removed.
	gone := "orders/" + strconv.Itoa(int(head-10)-1)
	wantLostIn(t, h, head-11, head, topics(gone), true)
	wantLostIn(t, h, head-10, head, topics(gone), false)
	wantLostIn(t, h, head-11, head-11, topics(gone), false)
	wantLostIn(t, h, head-300, head, topics("orders/none"), false)
	wantLostIn(t, h, head-300, head, topics("orders"), true)
	wantLostIn(t, h, 0, head, topics("orders/none"), true) // folded: cautious
	wantReplay(t, h, head-10, head, topics("orders"), []uint64{head - 9, head - 8, head - 7, head - 6, head - 5, head - 4, head - 3, head - 2, head - 1, head})
	// Lost costs what the holes in its range cost, not what was removed.
	// Measured in CPU time: a loaded machine does not make it longer.
	const calls = 200
	start := cpuTime()
	for i := range calls {
		after := head - uint64(maxEvents/2+i)
		h.Lost(after, head, topics("orders/none"))
		h.Lost(after, head, sels(Prefix("none")))
	}
	if per := (cpuTime() - start) / (2 * calls); per > 2*time.Millisecond {
		t.Errorf("Lost took %v of CPU a call over at most %d holes", per, maxEvents)
	}
}

// Records removed after a replay handed them over do not fail it: only
// the part of the range not yet handed over matters.
func (s *suite) removedAfterSent(t *testing.T) {
	for _, c := range []struct {
		name string
		r    herald.Retention
		sels []herald.Selector
	}{
		{"MaxEvents/Topic", herald.Retention{MaxEvents: 600}, topics("t")},
		{"MaxEvents/All", herald.Retention{MaxEvents: 600}, all},
		{"MaxEvents/Prefix", herald.Retention{MaxEvents: 600}, sels(Prefix("t"))},
		{"PerTopic/Topic", herald.Retention{PerTopic: map[string]int{"t": 600}}, topics("t")},
		{"PerTopic/All", herald.Retention{PerTopic: map[string]int{"t": 600}}, all},
		{"PerTopic/Prefix", herald.Retention{PerTopic: map[string]int{"t": 600}}, sels(Prefix("t"))},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := s.history(t, c.r)
			pos := addBatch(t, h, 600, "s", "t")
			var got []uint64
			err := h.Replay(0, pos[len(pos)-1], c.sels, func(page []herald.Record) error {
				if len(got) == 0 && len(page) < len(pos) {
					addBatch(t, h, len(page), "n", "t") // removes exactly what this page holds
				}
				got = append(got, positionsOf(page)...)
				return nil
			})
			if err != nil || !slices.Equal(got, pos) {
				t.Errorf("Replay whose sent records were removed = %v, %v; want all %d records, nil", short(got), err, len(pos))
			}
			wantLostIn(t, h, 0, pos[len(pos)-1], c.sels, true)
		})
	}
}

// A replay that handed over its last page returns nil even if records of
// its range are removed meanwhile.
func (s *suite) removedAfterLastPage(t *testing.T) {
	for _, n := range []int{300, 512} { // a partial last page, full pages
		for _, c := range []struct {
			name string
			r    herald.Retention
			sels []herald.Selector
		}{
			{"MaxEvents/Topic", herald.Retention{MaxEvents: n}, topics("t")},
			{"MaxEvents/All", herald.Retention{MaxEvents: n}, all},
			{"MaxEvents/Prefix", herald.Retention{MaxEvents: n}, sels(Prefix("t"))},
			{"PerTopic/Topic", herald.Retention{PerTopic: map[string]int{"t": n}}, topics("t")},
		} {
			t.Run(fmt.Sprint(c.name, "/", n), func(t *testing.T) {
				h := s.history(t, c.r)
				pos := addBatch(t, h, n, "l", "t")
				last := pos[len(pos)-1]
				var got []uint64
				err := h.Replay(0, last, c.sels, func(page []herald.Record) error {
					got = append(got, positionsOf(page)...)
					if page[len(page)-1].Position == last {
						addBatch(t, h, n, "n", "t") // removes the whole range
					}
					return nil
				})
				if err != nil || !slices.Equal(got, pos) {
					t.Errorf("Replay whose range was removed after its last page = %v, %v; want all %d records, nil", short(got), err, len(pos))
				}
			})
		}
	}
}

// When retention removes records a running replay still has to hand over,
// it stops with ErrHistoryLost.
func (s *suite) lostDuringReplay(t *testing.T) {
	for _, c := range []struct {
		name string
		r    herald.Retention
		sels []herald.Selector
	}{
		{"MaxEvents/Topic", herald.Retention{MaxEvents: 600}, topics("t")},
		{"MaxEvents/All", herald.Retention{MaxEvents: 600}, all},
		{"MaxEvents/Prefix", herald.Retention{MaxEvents: 600}, sels(Prefix("t"))},
		{"PerTopic/Topic", herald.Retention{PerTopic: map[string]int{"t": 600}}, topics("t")},
		{"PerTopic/All", herald.Retention{PerTopic: map[string]int{"t": 600}}, all},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := s.history(t, c.r)
			batch := func(prefix string) []herald.Record {
				recs := make([]herald.Record, 600)
				for i := range recs {
					recs[i] = rec(prefix+strconv.Itoa(i), "t")
				}
				return recs
			}
			pos := add(t, h, batch("l")...)
			pages := 0
			err := h.Replay(0, pos[len(pos)-1], c.sels, func(page []herald.Record) error {
				pages++
				if pages == 1 {
					add(t, h, batch("n")...) // pushes the whole range out
				}
				return nil
			})
			if !errors.Is(err, herald.ErrHistoryLost) {
				t.Errorf("Replay after its range was removed: %v after %d pages, want ErrHistoryLost", err, pages)
			}
		})
	}
}

// Replays running while records are appended (the hub appends under its
// lock, replays up to the Head it read under it, and calls wait after
// unlocking) are gapless.
func (s *suite) concurrentReplay(t *testing.T) {
	h := s.history(t, herald.Retention{MaxEvents: 1 << 20, MaxBytes: 1 << 30})
	type entry struct {
		pos    uint64
		topics []string
	}
	var (
		hubMu sync.Mutex // the hub's publish lock
		// What was appended, in position order. Only appended to, under
		// hubMu: a reader takes the slice under it and reads it after.
		log  []entry
		done = make(chan struct{})
		wg   sync.WaitGroup
	)
	names := []string{"a", "b", "c"}
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for i := range 500 {
				recs := make([]herald.Record, rng.IntN(3)+1)
				for j := range recs {
					recs[j] = rec(fmt.Sprint(w, "-", i, "-", j), names[rng.IntN(3)])
					if rng.IntN(4) == 0 {
						recs[j].Topics = append(recs[j].Topics, names[rng.IntN(3)]+"x")
					}
				}
				hubMu.Lock()
				wait, err := h.Append(recs)
				for _, r := range recs {
					log = append(log, entry{r.Position, r.Topics})
				}
				hubMu.Unlock()
				if err != nil {
					t.Error(err)
					return
				}
				if wait != nil {
					if err := wait(); err != nil {
						t.Error(err)
						return
					}
				}
			}
		}()
	}
	go func() { wg.Wait(); close(done) }()

	var rwg sync.WaitGroup
	for r := range 3 {
		rwg.Add(1)
		go func() {
			defer rwg.Done()
			sl := []herald.Selector{herald.Topic(names[r]), herald.Topic(names[r] + "x")}
			if r == 2 {
				sl = []herald.Selector{Prefix("c")}
			}
			for n := 0; ; n++ {
				select {
				case <-done:
					if n > 0 {
						return
					}
				default:
				}
				hubMu.Lock()
				head := h.Head()
				after := uint64(0)
				if head > 50 {
					after = head - 50 - uint64(n%200)*3
					if after > head {
						after = 0
					}
				}
				hubMu.Unlock()
				got, err := replay(t, h, after, head, sl...)
				if err != nil {
					t.Errorf("Replay(%d, %d): %v", after, head, err)
					return
				}
				hubMu.Lock()
				appended := log
				hubMu.Unlock()
				var want []uint64
				i, _ := slices.BinarySearchFunc(appended, after+1, func(e entry, p uint64) int { return cmp.Compare(e.pos, p) })
				for _, e := range appended[i:] {
					if e.pos <= head && herald.Matches(sl, e.topics) {
						want = append(want, e.pos)
					}
				}
				if g := positionsOf(got); !slices.Equal(g, want) {
					t.Errorf("Replay(%d, %d, %v) during appends = %v, want %v", after, head, sl, short(g), short(want))
					return
				}
			}
		}()
	}
	rwg.Wait()
}

// mergeSorted merges two ascending position lists.
func mergeSorted(a, b []uint64) []uint64 {
	out := append(slices.Clone(a), b...)
	slices.Sort(out)
	return slices.Compact(out)
}

// model is the plain reference behaviour, record by record: after each
// Append, per-topic caps as each record arrives, then the global limits
// from the oldest. It knows exactly which records are gone (mustLost),
// and how cautious a store may be (mayLost): records removed by a global
// limit are lost to everyone, those removed by a cap to the selectors
// matching one of their topics, and holes beyond MaxEvents are folded,
// oldest first, into the global mark, as [herald.MemoryHistory] does.
type model struct {
	r       herald.Retention
	recs    []herald.Record // every record appended, removed ones too
	live    map[uint64]bool
	dropped uint64      // positions up to it may be reported lost to everyone
	holes   []modelHole // removed by a cap above dropped, ascending, at most MaxEvents
	folded  int         // holes folded into dropped because there were too many
}

type modelHole struct {
	pos    uint64
	topics []string
}

func newModel(r herald.Retention) *model {
	return &model{r: r.WithDefaults(), live: map[uint64]bool{}}
}

func (m *model) append(recs []herald.Record) {
	for _, r := range recs {
		m.recs = append(m.recs, r)
		m.live[r.Position] = true
		for _, t := range r.Topics {
			limit, ok := m.r.PerTopic[t]
			if !ok {
				continue
			}
			for {
				var of []int
				for i, x := range m.recs {
					if m.live[x.Position] && slices.Contains(x.Topics, t) {
						of = append(of, i)
					}
				}
				if len(of) <= limit {
					break
				}
				x := m.recs[of[0]]
				delete(m.live, x.Position)
				i, _ := slices.BinarySearchFunc(m.holes, x.Position, func(h modelHole, p uint64) int {
					return cmp.Compare(h.pos, p)
				})
				m.holes = slices.Insert(m.holes, i, modelHole{x.Position, x.Topics})
				m.forget()
			}
		}
	}
	var n int
	var bytes int64
	for _, x := range m.recs {
		if m.live[x.Position] {
			n++
			bytes += int64(x.Size())
		}
	}
	for _, x := range m.recs {
		if !m.live[x.Position] {
			continue
		}
		if n <= m.r.MaxEvents && bytes <= m.r.MaxBytes {
			break
		}
		delete(m.live, x.Position)
		m.dropped = max(m.dropped, x.Position)
		n--
		bytes -= int64(x.Size())
	}
	m.forget()
}

// forget drops the holes dropped covers, and folds the oldest into it
// while there are more than MaxEvents.
func (m *model) forget() {
	for len(m.holes) > 0 && (m.holes[0].pos <= m.dropped || len(m.holes) > m.r.MaxEvents) {
		if m.holes[0].pos > m.dropped {
			m.folded++
		}
		m.dropped = max(m.dropped, m.holes[0].pos)
		m.holes = m.holes[1:]
	}
}

// mustLost reports whether a record in (after, upTo] that sels match is
// gone: Lost must say so.
func (m *model) mustLost(after, upTo uint64, sels []herald.Selector) bool {
	for _, x := range m.between(after, upTo) {
		if !m.live[x.Position] && herald.Matches(sels, x.Topics) {
			return true
		}
	}
	return false
}

// between returns the records with after < Position <= upTo (m.recs is
// in position order).
func (m *model) between(after, upTo uint64) []herald.Record {
	i, _ := slices.BinarySearchFunc(m.recs, after+1, func(x herald.Record, p uint64) int { return cmp.Compare(x.Position, p) })
	j, _ := slices.BinarySearchFunc(m.recs, upTo+1, func(x herald.Record, p uint64) int { return cmp.Compare(x.Position, p) })
	return m.recs[i:max(i, j)]
}

// mayLost is the most cautious answer Lost may give.
func (m *model) mayLost(after, upTo uint64, sels []herald.Selector) bool {
	if after >= upTo {
		return false
	}
	if m.dropped > after {
		return true
	}
	for _, h := range m.holes {
		if h.pos > after && h.pos <= upTo && herald.Matches(sels, h.topics) {
			return true
		}
	}
	return false
}

func (m *model) replay(after, upTo uint64, sels []herald.Selector) []uint64 {
	var out []uint64
	for _, x := range m.between(after, upTo) {
		if m.live[x.Position] && herald.Matches(sels, x.Topics) {
			out = append(out, x.Position)
		}
	}
	return out
}

func (m *model) lookup(id string) (uint64, bool) {
	for i := len(m.recs) - 1; i >= 0; i-- {
		if x := m.recs[i]; x.ID == id && m.live[x.Position] {
			return x.Position, true
		}
	}
	return 0, false
}

// A long random run against the reference behaviour: several topics per
// record, IDs reused, records large and small, all limits at work.
// Records of capped topics carry a unique ID, and sometimes a topic of
// the pool too.
func (s *suite) model(t *testing.T) {
	s.runModel(t, herald.Retention{MaxEvents: 300, MaxBytes: 60_000, PerTopic: map[string]int{"c1": 20, "c2": 70, "a": 120}}, 1500, 97, 0)
}

// The same with tight caps and a small MaxEvents: holes outnumber the
// retained records, and the oldest are folded into the global mark.
func (s *suite) modelManyHoles(t *testing.T) {
	s.runModel(t, herald.Retention{MaxEvents: 25, PerTopic: map[string]int{"c1": 2, "c2": 3, "a": 3, "b": 3, "c": 3, "d": 4}}, 800, 11, 20)
}

// runModel appends steps random batches, checking every checkEvery
// steps, and requires at least minFolded holes folded.
func (s *suite) runModel(t *testing.T, r herald.Retention, steps, checkEvery, minFolded int) {
	h := s.history(t, r)
	m := newModel(r)
	rng := rand.New(rand.NewPCG(3, 4))
	pool := []string{"a", "b", "c", "d", "e"}
	selectorSets := [][]herald.Selector{
		topics("a"), topics("b"), topics("c1"), topics("c2"), topics("b", "d", "e"), topics("c1", "c2", "b"),
		topics("nope"), all, sels(Prefix("c")), sels(Prefix("d"), herald.Topic("a")),
	}
	ids := map[string]bool{}
	capID := 0
	for step := range steps {
		recs := make([]herald.Record, rng.IntN(3)+1)
		for i := range recs {
			var x herald.Record
			switch k := rng.IntN(10); {
			case k == 0 || k == 1:
				capID++
				x = rec("cap"+strconv.Itoa(capID), []string{"c1", "c2"}[k])
				if rng.IntN(2) == 0 {
					x.Topics = append(x.Topics, pool[rng.IntN(len(pool))])
				}
			default:
				ts := []string{pool[rng.IntN(len(pool))]}
				for rng.IntN(3) == 0 {
					if t := pool[rng.IntN(len(pool))]; !slices.Contains(ts, t) {
						ts = append(ts, t)
					}
				}
				x = rec("id"+strconv.Itoa(rng.IntN(40)), ts...)
				if rng.IntN(5) == 0 {
					x.ID = ""
				}
			}
			x.Data = strings.Repeat("x", rng.IntN(400))
			x.Time = time.Now()
			ids[x.ID] = true
			recs[i] = x
		}
		add(t, h, recs...)
		m.append(recs)
		if step%checkEvery != 0 && step != steps-1 {
			continue
		}
		head := h.Head()
		if want := m.recs[len(m.recs)-1].Position; head != want {
			t.Fatalf("step %d: Head %d, want %d", step, head, want)
		}
		for id := range ids {
			if id == "" {
				continue
			}
			wp, wok := m.lookup(id)
			if p, ok := h.Lookup(id); p != wp || ok != wok {
				t.Errorf("step %d: Lookup(%q) = %d, %v; want %d, %v", step, id, p, ok, wp, wok)
			}
		}
		for _, sl := range selectorSets {
			// Around the global mark too, where folded holes are. Each
			// range once: the same range checks the same thing.
			checked := map[[2]uint64]bool{}
			for _, after := range []uint64{0, head / 2, head - min(head, 300), head - min(head, 40), head - min(head, 8), head - 1, m.dropped, m.dropped - min(m.dropped, 4)} {
				for _, upTo := range []uint64{head, after + 1, after + 5, after + (head-after)/2} {
					upTo = min(upTo, head)
					if checked[[2]uint64{after, upTo}] {
						continue
					}
					checked[[2]uint64{after, upTo}] = true
					must, may := m.mustLost(after, upTo, sl), m.mayLost(after, upTo, sl)
					lost := h.Lost(after, upTo, sl)
					switch {
					case must && !lost:
						t.Errorf("step %d: Lost(%d, %d, %v) = false, but a matching record of the range is gone (model: %v)",
							step, after, upTo, sl, m.gone(after, upTo, sl))
					case lost && !may:
						t.Errorf("step %d: Lost(%d, %d, %v) = true; nothing matching is gone, and the reference folding "+
							"(global mark %d, %d holes) would not say so either", step, after, upTo, sl, m.dropped, len(m.holes))
					}
					got, err := replay(t, h, after, upTo, sl...)
					switch {
					case must:
						if !errors.Is(err, herald.ErrHistoryLost) {
							t.Errorf("step %d: Replay(%d, %d, %v) = %d records, %v; want ErrHistoryLost", step, after, upTo, sl, len(got), err)
						}
					case may && errors.Is(err, herald.ErrHistoryLost):
						// Allowed: the store is cautious.
					default:
						if want := m.replay(after, upTo, sl); err != nil || !slices.Equal(positionsOf(got), want) {
							t.Errorf("step %d: Replay(%d, %d, %v) = %v, %v; want %v", step, after, upTo, sl, short(positionsOf(got)), err, short(want))
						}
					}
				}
			}
		}
		if t.Failed() {
			return
		}
	}
	if m.folded < minFolded {
		t.Errorf("the run folded %d holes into the global mark, want at least %d: make the test harder", m.folded, minFolded)
	}
}

// gone lists the positions of the removed records in (after, upTo] that
// sels match.
func (m *model) gone(after, upTo uint64, sels []herald.Selector) short {
	var out []uint64
	for _, x := range m.recs {
		if x.Position > after && x.Position <= upTo && !m.live[x.Position] && herald.Matches(sels, x.Topics) {
			out = append(out, x.Position)
		}
	}
	return out
}
