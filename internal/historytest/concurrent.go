package historytest

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"

	"github.com/herald-sse/herald"
)

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
