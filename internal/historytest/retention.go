package historytest

import (
	"errors"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/herald-sse/herald"
)

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
	first := wantKeptWithin(t, h, recs, limit)
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
