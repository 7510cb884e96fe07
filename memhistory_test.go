package herald

import (
	"flag"
	"fmt"
	"runtime"
	"testing"
	"time"
)

// Under a constant publish rate, a bounded history holds a bounded amount
// of memory: removed records, tombstones and index entries are released.
// With -long, the soak-sized run: 200,000 more publishes instead of
// 50,000.
func TestMemoryHistoryStaysFlat(t *testing.T) {
	more := 50_000
	if long() {
		more = 200_000
	}
	for _, tc := range []struct {
		name string
		r    Retention
		keep int
	}{
		{"by count", Retention{MaxEvents: 1000}, 1000},
		{"by bytes", Retention{MaxBytes: 1000 * int64((&Record{Topics: []string{"t0"}, Data: string(make([]byte, 100))}).Size())}, 1000},
		// One old record of another topic stays while a capped topic
		// churns: its removed records must not pile up behind it.
		{"per topic", Retention{MaxEvents: 10_000, PerTopic: map[string]int{"t0": 1000}}, 1001},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := NewMemoryHistory(tc.r)
			if _, err := m.Append([]Record{{Topics: []string{"old"}, Data: "x"}}); err != nil {
				t.Fatal(err)
			}
			data := string(make([]byte, 100))
			publish := func(n int) {
				for i := range n {
					rec := []Record{{Topics: []string{"t0"}, Data: data}}
					if i%7 == 0 {
						rec[0].Topics = append(rec[0].Topics, fmt.Sprintf("u%d", i%50))
					}
					if _, err := m.Append(rec); err != nil {
						t.Fatal(err)
					}
				}
			}
			publish(50_000)
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			publish(more)
			runtime.GC()
			runtime.ReadMemStats(&after)
			if got := m.Len(); got > tc.keep {
				t.Errorf("%d records kept, want at most %d", got, tc.keep)
			}
			if grew := int64(after.HeapInuse) - int64(before.HeapInuse); grew > 1<<20 {
				t.Errorf("heap grew by %d bytes over %d more publishes", grew, more)
			}
		})
	}
}

func TestMemoryHistoryAge(t *testing.T) {
	m := NewMemoryHistory(Retention{MaxAge: time.Minute})
	now := time.Unix(1000, 0)
	m.now = func() time.Time { return now }
	m.Append([]Record{{Topics: []string{"a"}, Data: "1"}})
	now = now.Add(30 * time.Second)
	m.Append([]Record{{Topics: []string{"a"}, Data: "2"}})
	if m.Lost(0, 2, []Selector{Topic("a")}) || m.Len() != 2 {
		t.Fatal("records removed before their age")
	}
	now = now.Add(45 * time.Second) // the first is 75 s old: gone, without any publish
	if m.Len() != 1 || !m.Lost(0, 2, []Selector{Topic("a")}) || m.Lost(1, 2, []Selector{Topic("a")}) {
		t.Fatalf("after the age limit: %d records, lost from 0 %v, from 1 %v", m.Len(), m.Lost(0, 2, []Selector{Topic("a")}), m.Lost(1, 2, []Selector{Topic("a")}))
	}
}

// MaxBytes counts what the history really holds, the per-topic index
// too: with 100 topics per event (shared by all events, or each event's
// own), the heap stays near the limit.
func TestMemoryHistoryBytesCountIndexes(t *testing.T) {
	heap := func() int64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return int64(m.HeapAlloc)
	}
	const limit = 4 << 20
	for _, unique := range []bool{false, true} {
		t.Run(fmt.Sprint("unique=", unique), func(t *testing.T) {
			base := heap()
			m := NewMemoryHistory(Retention{MaxEvents: 1 << 30, MaxBytes: limit})
			defer m.Close()
			for i := range 3000 {
				topics := make([]string, 100)
				for j := range topics {
					if unique {
						topics[j] = fmt.Sprintf("user/%d/%d", i, j)
					} else {
						topics[j] = fmt.Sprintf("topic/%d", j)
					}
				}
				m.Append([]Record{{ID: fmt.Sprint("id", i), Topics: topics, Data: "hello"}})
			}
			if n := m.Len(); n >= 3000 {
				t.Fatalf("all %d records retained: the limit never applied", n)
			}
			grown := heap() - base
			t.Logf("heap %.1f MB for a %d MB limit, %d records retained", float64(grown)/(1<<20), limit>>20, m.Len())
			if grown > limit*3/2 {
				t.Errorf("heap grew by %.1f MB with MaxBytes %d MB: more than 1.5 times the limit", float64(grown)/(1<<20), limit>>20)
			}
			runtime.KeepAlive(m)
		})
	}
}

// long reports -long, the flag internal/historytest defines (this
// package's tests cannot import it: it imports herald).
func long() bool {
	f := flag.Lookup("long")
	return f != nil && f.Value.String() == "true"
}

// Holes folded for the bound (more than MaxEvents) while an older record
// is retained become a gap above it, not a mark below which everything
// counts as lost: the older record is still reported whole.
func TestMemoryHistoryFoldedHolesKeepOlderRecords(t *testing.T) {
	m := NewMemoryHistory(Retention{MaxEvents: 3, PerTopic: map[string]int{"c": 1}})
	for _, topic := range []string{"x", "c", "c", "c", "c", "c"} { // positions 1 to 6
		if _, err := m.Append([]Record{{Topics: []string{topic}}}); err != nil {
			t.Fatal(err)
		}
	}
	// The cap removed 2 to 5; the hole at 2 was folded.
	x, c := []Selector{Topic("x")}, []Selector{Topic("c")}
	for _, tc := range []struct {
		after, upTo uint64
		sels        []Selector
		want        bool
	}{
		{0, 1, x, false}, // the record at 1 is retained
		{1, 2, x, true},  // folded: lost to everyone
		{2, 3, x, false}, // a hole of c
		{2, 3, c, true},
		{5, 6, c, false},
	} {
		if got := m.Lost(tc.after, tc.upTo, tc.sels); got != tc.want {
			t.Errorf("Lost(%d, %d, %v) = %v, want %v", tc.after, tc.upTo, tc.sels, got, tc.want)
		}
	}
	var got []uint64
	if err := m.Replay(0, 1, x, func(recs []Record) error {
		for _, r := range recs {
			got = append(got, r.Position)
		}
		return nil
	}); err != nil || len(got) != 1 || got[0] != 1 {
		t.Errorf("Replay(0, 1, x) = %v, %v; want [1]", got, err)
	}
}
