package historytest

import (
	"errors"
	"slices"
	"strconv"
	"testing"

	"github.com/herald-sse/herald"
)

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
