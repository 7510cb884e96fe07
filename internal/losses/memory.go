package losses

import (
	"cmp"
	"slices"
	"sort"
)

// Memory is a loss record in memory, a [Store] and a [Reader]. The zero
// value is an empty record; its methods never fail.
type Memory struct {
	dropped uint64
	holes   []Hole // ascending
	gaps    Gaps
}

// Dropped implements [Reader] and [Store].
func (m *Memory) Dropped() uint64 { return m.dropped }

// SetDropped implements [Store].
func (m *Memory) SetDropped(pos uint64) { m.dropped = pos }

// Holes implements [Store].
func (m *Memory) Holes() int { return len(m.holes) }

// OldestHole implements [Store].
func (m *Memory) OldestHole() (uint64, bool) {
	if len(m.holes) == 0 {
		return 0, false
	}
	return m.holes[0].Pos, true
}

func byPos(h Hole, pos uint64) int { return cmp.Compare(h.Pos, pos) }

// PutHole implements [Store]. It keeps topics, which the caller must not
// change.
func (m *Memory) PutHole(pos uint64, topics []string) error {
	i, found := slices.BinarySearchFunc(m.holes, pos, byPos)
	if !found {
		m.holes = slices.Insert(m.holes, i, Hole{Pos: pos, Topics: topics})
	}
	return nil
}

// DeleteHole implements [Store]. Deleting the oldest, as Forget does,
// costs no copy.
func (m *Memory) DeleteHole(pos uint64) error {
	if len(m.holes) > 0 && m.holes[0].Pos == pos {
		m.holes[0] = Hole{}
		m.holes = m.holes[1:]
		return nil
	}
	if i, found := slices.BinarySearchFunc(m.holes, pos, byPos); found {
		m.holes = slices.Delete(m.holes, i, i+1)
	}
	return nil
}

// HoleIn implements [Reader].
func (m *Memory) HoleIn(after, upTo uint64, match Match) bool {
	i, _ := slices.BinarySearchFunc(m.holes, after+1, byPos)
	for ; i < len(m.holes) && m.holes[i].Pos <= upTo; i++ {
		if match(m.holes[i].Topics) {
			return true
		}
	}
	return false
}

// GapAtOrBefore implements [Reader] and [Store].
func (m *Memory) GapAtOrBefore(pos uint64) (Gap, bool) {
	i := sort.Search(len(m.gaps), func(i int) bool { return m.gaps[i].From > pos })
	if i == 0 {
		return Gap{}, false
	}
	return m.gaps[i-1], true
}

// GapAtOrAfter implements [Store].
func (m *Memory) GapAtOrAfter(pos uint64) (Gap, bool) {
	i := sort.Search(len(m.gaps), func(i int) bool { return m.gaps[i].From >= pos })
	if i == len(m.gaps) {
		return Gap{}, false
	}
	return m.gaps[i], true
}

// PutGap implements [Store].
func (m *Memory) PutGap(g Gap) error {
	m.gaps = m.gaps.Add(g.From, g.To)
	return nil
}

// DeleteGap implements [Store].
func (m *Memory) DeleteGap(from uint64) error {
	i := sort.Search(len(m.gaps), func(i int) bool { return m.gaps[i].From >= from })
	if i < len(m.gaps) && m.gaps[i].From == from {
		m.gaps = slices.Delete(m.gaps, i, i+1)
	}
	return nil
}

// Gaps is ascending, disjoint gaps: the bolt package keeps those readers
// find (corrupt records) in one until its writer persists them.
type Gaps []Gap

// Add returns gs with from..to added, merged with the gaps it overlaps
// or touches.
func (gs Gaps) Add(from, to uint64) Gaps {
	i := sort.Search(len(gs), func(i int) bool { return gs[i].To+1 >= from })
	j := i
	for j < len(gs) && gs[j].From <= to+1 {
		from, to = min(from, gs[j].From), max(to, gs[j].To)
		j++
	}
	return slices.Replace(gs, i, j, Gap{from, to})
}

// Remove returns gs without the positions of g.
func (gs Gaps) Remove(g Gap) Gaps {
	var out Gaps
	for _, x := range gs {
		if x.To < g.From || x.From > g.To {
			out = append(out, x)
			continue
		}
		if x.From < g.From {
			out = append(out, Gap{x.From, g.From - 1})
		}
		if x.To > g.To {
			out = append(out, Gap{g.To + 1, x.To})
		}
	}
	return out
}

// Lost reports whether one of gs has a position in (after, upTo].
func (gs Gaps) Lost(after, upTo uint64) bool {
	i := sort.Search(len(gs), func(i int) bool { return gs[i].To > after })
	return i < len(gs) && gs[i].From <= upTo
}
