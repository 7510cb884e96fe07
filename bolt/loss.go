package bolt

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"

	"github.com/herald-sse/herald"
	"github.com/herald-sse/herald/internal/losses"
	bbolt "go.etcd.io/bbolt"
)

// The loss record (dropped, the holes, the gaps; see Layout) follows the
// rules of internal/losses, which MemoryHistory follows too. Here it is
// kept in the file: a writeTx is its losses.Store (and losses.Retained)
// during a write transaction, a lossView its losses.Reader for reads.

// Lost implements [herald.History]. Records removed by the global limits
// are lost to everyone; those removed by a per-topic cap, or whose commit
// failed, to the selectors matching one of their topics.
func (h *History) Lost(after, upTo uint64, selectors []herald.Selector) bool {
	if after >= upTo {
		return false
	}
	h.expireDue()
	// The gaps before the file: the writer deletes them from memory only
	// once a transaction persisted them.
	h.mu.Lock()
	lost := h.newGaps.Lost(after, upTo)
	h.mu.Unlock()
	if lost {
		return true
	}
	lost = true
	_ = h.db.View(func(tx *bbolt.Tx) error {
		lost = lostIn(tx, after, upTo, selectors, topicNames(selectors))
		return nil
	})
	return lost
}

// topicNames returns the distinct names of selectors if they are all
// Topics, else nil.
func topicNames(selectors []herald.Selector) []string {
	var names []string
	for _, s := range selectors {
		t, ok := s.(herald.Topic)
		if !ok {
			return nil
		}
		if !slices.Contains(names, string(t)) {
			names = append(names, string(t))
		}
	}
	return names
}

// lostIn is Lost as committed: dropped, the gaps, then the holes in
// (after, upTo], through the "holetopics" index if topics (the names of
// selectors) is not nil.
func lostIn(tx *bbolt.Tx, after, upTo uint64, selectors []herald.Selector, topics []string) bool {
	return losses.Lost(lossView{tx, topics}, after, upTo, func(t []string) bool { return herald.Matches(selectors, t) })
}

// lossView is the loss record as a read transaction sees it.
type lossView struct {
	tx     *bbolt.Tx
	topics []string // the names of the selectors Lost is asked about if all are topics, else nil
}

// Dropped implements losses.Reader.
func (v lossView) Dropped() uint64 { return getU64(v.tx.Bucket(bucketMeta).Get(keyDropped)) }

// GapAtOrBefore implements losses.Reader.
func (v lossView) GapAtOrBefore(pos uint64) (losses.Gap, bool) {
	return gapAtOrBefore(v.tx.Bucket(bucketGaps), pos)
}

// HoleIn implements losses.Reader: for topics, it seeks each in the
// "holetopics" index; else it reads the holes in the range.
func (v lossView) HoleIn(after, upTo uint64, match losses.Match) bool {
	from := u64(after + 1)
	if v.topics != nil {
		c := v.tx.Bucket(bucketHoleTopics).Cursor()
		for _, t := range v.topics {
			prefix := topicPrefix(t)
			k, _ := c.Seek(append(prefix, from...))
			if k != nil && isTopicKey(k, prefix) && binary.BigEndian.Uint64(k[len(prefix):]) <= upTo {
				return true
			}
		}
		return false
	}
	var names []string
	c := v.tx.Bucket(bucketHoles).Cursor()
	for k, val := c.Seek(from); k != nil && binary.BigEndian.Uint64(k) <= upTo; k, val = c.Next() {
		var err error
		names, err = decodeTopicList(names[:0], val, nil)
		if err != nil || match(names) {
			return true
		}
	}
	return false
}

// gapAtOrBefore returns the gap of the bucket gaps with the highest start
// at or before pos.
func gapAtOrBefore(gaps *bbolt.Bucket, pos uint64) (losses.Gap, bool) {
	c := gaps.Cursor()
	k, v := c.Seek(u64(pos + 1))
	if k == nil {
		k, v = c.Last()
	} else {
		k, v = c.Prev()
	}
	if k == nil {
		return losses.Gap{}, false
	}
	return losses.Gap{From: getU64(k), To: getU64(v)}, true
}

// Dropped implements losses.Store.
func (w *writeTx) Dropped() uint64 { return w.st.dropped }

// SetDropped implements losses.Store.
func (w *writeTx) SetDropped(pos uint64) { w.st.dropped = pos }

// Holes implements losses.Store with the count kept in "meta".
func (w *writeTx) Holes() int { return int(min(w.st.holes, math.MaxInt)) }

// OldestHole implements losses.Store.
func (w *writeTx) OldestHole() (uint64, bool) {
	k, _ := w.holes.Cursor().First()
	if k == nil {
		w.st.holes = 0 // the count can only be wrong in a damaged file
		return 0, false
	}
	return binary.BigEndian.Uint64(k), true
}

// PutHole implements losses.Store: the hole and its "holetopics" entries.
func (w *writeTx) PutHole(pos uint64, topics []string) error {
	pk := u64(pos)
	if w.holes.Get(pk) != nil {
		return nil // cannot happen: a position is removed once
	}
	if err := w.holes.Put(pk, encodeTopics(nil, topics)); err != nil {
		return err
	}
	for i, t := range topics {
		if slices.Contains(topics[:i], t) {
			continue
		}
		if err := w.holeTopics.Put(indexKey(t, pk), nil); err != nil {
			return err
		}
	}
	w.st.holes++
	return nil
}

// DeleteHole implements losses.Store.
func (w *writeTx) DeleteHole(pos uint64) error {
	pk := u64(pos)
	v := w.holes.Get(pk)
	if v == nil {
		return nil
	}
	topics, err := decodeTopicList(nil, v, nil)
	if err != nil {
		return fmt.Errorf("hole %d: %w", pos, err)
	}
	for _, t := range topics {
		if err := w.holeTopics.Delete(indexKey(t, pk)); err != nil {
			return err
		}
	}
	if err := w.holes.Delete(pk); err != nil {
		return err
	}
	w.st.holes--
	return nil
}

// GapAtOrBefore implements losses.Store.
func (w *writeTx) GapAtOrBefore(pos uint64) (losses.Gap, bool) { return gapAtOrBefore(w.gaps, pos) }

// GapAtOrAfter implements losses.Store.
func (w *writeTx) GapAtOrAfter(pos uint64) (losses.Gap, bool) {
	k, v := w.gaps.Cursor().Seek(u64(pos))
	if k == nil {
		return losses.Gap{}, false
	}
	return losses.Gap{From: getU64(k), To: getU64(v)}, true
}

// PutGap implements losses.Store.
func (w *writeTx) PutGap(g losses.Gap) error { return w.gaps.Put(u64(g.From), u64(g.To)) }

// DeleteGap implements losses.Store.
func (w *writeTx) DeleteGap(from uint64) error { return w.gaps.Delete(u64(from)) }

// First implements losses.Retained: the oldest retained position, 0 if
// none.
func (w *writeTx) First() uint64 {
	k, _ := w.records.Cursor().First()
	if k == nil {
		return 0
	}
	return binary.BigEndian.Uint64(k)
}

// NoneBetween implements losses.Retained.
func (w *writeTx) NoneBetween(a, b uint64) bool {
	if b <= a+1 {
		return true
	}
	k, _ := w.records.Cursor().Seek(u64(a + 1))
	return k == nil || binary.BigEndian.Uint64(k) >= b
}

// markCorrupt reports a record that failed its checksum, and makes it
// lost to everyone (a gap, persisted by the writer): a resume over it
// gets a reset instead of altered data or a silent gap.
func (h *History) markCorrupt(pos uint64, err error) {
	h.mu.Lock()
	known := h.newGaps.Lost(pos-1, pos)
	if !known {
		h.newGaps = h.newGaps.Add(pos, pos)
	}
	h.mu.Unlock()
	if !known {
		h.log.Error("bolt: corrupt record, treated as lost: restore the file from a backup to get it back", "path", h.path, "position", pos, "error", err)
		h.wakeWriter()
	}
}
