package losses

import (
	"slices"
	"testing"
)

// retained is a Retained of the positions listed, ascending.
type retained []uint64

func (r retained) First() uint64 {
	if len(r) == 0 {
		return 0
	}
	return r[0]
}

func (r retained) NoneBetween(a, b uint64) bool {
	for _, p := range r {
		if p > a && p < b {
			return false
		}
	}
	return true
}

func all([]string) bool { return true }

func topic(t string) Match { return func(ts []string) bool { return slices.Contains(ts, t) } }

func TestLost(t *testing.T) {
	var m Memory
	Drop(&m, 3)
	if err := AddHole(&m, retained{10}, 7, []string{"a"}, 10); err != nil {
		t.Fatal(err)
	}
	if err := AddGap(&m, retained{10}, 12, 13); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		after, upTo uint64
		match       Match
		want        bool
	}{
		{2, 3, all, true},        // dropped
		{3, 3, all, false},       // empty range
		{3, 6, all, false},       // nothing between
		{6, 7, topic("a"), true}, // the hole
		{6, 7, topic("b"), false},
		{7, 11, all, false},
		{11, 12, topic("b"), true}, // a gap is lost to everyone
		{13, 20, all, false},
	} {
		if got := Lost(&m, c.after, c.upTo, c.match); got != c.want {
			t.Errorf("Lost(%d, %d) = %v, want %v", c.after, c.upTo, got, c.want)
		}
	}
}

// Holes beyond the bound fold into dropped when no record is retained
// below them, and into a gap when one is: that record stays reachable.
func TestForgetFolds(t *testing.T) {
	var m Memory
	below := retained{1, 20}
	for _, p := range []uint64{2, 3, 4, 5} {
		if err := AddHole(&m, below, p, []string{"c"}, 2); err != nil {
			t.Fatal(err)
		}
	}
	if m.Holes() != 2 || m.Dropped() != 0 {
		t.Fatalf("%d holes, dropped %d; want 2 holes, dropped 0", m.Holes(), m.Dropped())
	}
	if g, ok := m.GapAtOrAfter(0); !ok || g != (Gap{2, 3}) {
		t.Fatalf("gap %v %v, want 2..3 (folded holes, merged)", g, ok)
	}
	if Lost(&m, 0, 1, all) {
		t.Error("the record retained below the folded holes is reported lost")
	}

	var n Memory
	above := retained{20}
	for _, p := range []uint64{2, 3, 4, 5} {
		if err := AddHole(&n, above, p, []string{"c"}, 2); err != nil {
			t.Fatal(err)
		}
	}
	if n.Holes() != 2 || n.Dropped() != 3 {
		t.Errorf("%d holes, dropped %d; want 2 holes, dropped 3", n.Holes(), n.Dropped())
	}
	if _, ok := n.GapAtOrAfter(0); ok {
		t.Error("a gap below every retained record, instead of dropped")
	}
}

// Dropped swallows the holes and gaps it covers, and the gaps below the
// oldest retained record.
func TestForgetAfterDrop(t *testing.T) {
	var m Memory
	r := retained{5, 9}
	for _, p := range []uint64{4, 6} {
		if err := AddHole(&m, r, p, []string{"c"}, 10); err != nil {
			t.Fatal(err)
		}
	}
	if err := AddGap(&m, r, 7, 8); err != nil {
		t.Fatal(err)
	}
	Drop(&m, 5)
	if err := Forget(&m, retained{9}, 10); err != nil {
		t.Fatal(err)
	}
	if m.Dropped() != 8 || m.Holes() != 1 || !Lost(&m, 5, 6, topic("c")) {
		t.Errorf("dropped %d, %d holes; want 8 (the gap below 9 folded), the hole at 6 kept until the next Forget", m.Dropped(), m.Holes())
	}
	if err := Forget(&m, retained{9}, 10); err != nil {
		t.Fatal(err)
	}
	if m.Dropped() != 8 || m.Holes() != 0 {
		t.Errorf("dropped %d, %d holes; want 8, 0 (dropped covers the hole at 6)", m.Dropped(), m.Holes())
	}
	if _, ok := m.GapAtOrAfter(0); ok {
		t.Error("a gap left below the oldest retained record")
	}
	if err := AddHole(&m, retained{9}, 8, []string{"c"}, 10); err != nil || m.Holes() != 0 {
		t.Errorf("a hole dropped covers was kept (%d holes, %v)", m.Holes(), err)
	}
}

// Gaps merge across positions where no record is retained, not across a
// retained one.
func TestAddGapMerges(t *testing.T) {
	var m Memory
	r := retained{6}
	for _, g := range []Gap{{2, 2}, {4, 4}, {8, 8}, {3, 3}} {
		if err := AddGap(&m, r, g.From, g.To); err != nil {
			t.Fatal(err)
		}
	}
	var got []Gap
	for g, ok := m.GapAtOrAfter(0); ok; g, ok = m.GapAtOrAfter(g.From + 1) {
		got = append(got, g)
	}
	if want := []Gap{{2, 4}, {8, 8}}; !slices.Equal(got, want) {
		t.Errorf("gaps %v, want %v", got, want)
	}
}

func TestGaps(t *testing.T) {
	var gs Gaps
	gs = gs.Add(5, 6)
	gs = gs.Add(1, 2)
	gs = gs.Add(3, 4) // touches both
	if want := (Gaps{{1, 6}}); !slices.Equal(gs, want) {
		t.Fatalf("Add: %v, want %v", gs, want)
	}
	gs = gs.Remove(Gap{3, 4})
	if want := (Gaps{{1, 2}, {5, 6}}); !slices.Equal(gs, want) {
		t.Fatalf("Remove: %v, want %v", gs, want)
	}
	for _, c := range []struct {
		after, upTo uint64
		want        bool
	}{{0, 1, true}, {2, 4, false}, {4, 5, true}, {6, 9, false}} {
		if got := gs.Lost(c.after, c.upTo); got != c.want {
			t.Errorf("Lost(%d, %d) = %v, want %v", c.after, c.upTo, got, c.want)
		}
	}
}
