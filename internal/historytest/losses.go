package historytest

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/herald-sse/herald"
)

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
