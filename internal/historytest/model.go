package historytest

import (
	"cmp"
	"errors"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/herald-sse/herald"
)

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
