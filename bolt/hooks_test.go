package bolt

import (
	"errors"
	"slices"

	"github.com/herald-sse/herald"
	"github.com/herald-sse/herald/internal/losses"

	bbolt "go.etcd.io/bbolt"
)

// Test hooks: a writer that leaves the queue alone, and a process that
// dies with records appended but not committed.

func (h *History) pause() {
	h.mu.Lock()
	h.paused = true
	h.mu.Unlock()
}

func (h *History) resume() {
	h.mu.Lock()
	h.paused = false
	h.cond.Broadcast()
	h.mu.Unlock()
	h.wakeWriter()
}

var errCrashed = errors.New("crashed")

// crash stops the writer at once, without committing the queue nor
// lowering the reservation, and closes the file as a dying process
// would.
func (h *History) crash() {
	h.mu.Lock()
	h.crashing, h.closed = true, true
	h.cond.Broadcast()
	h.mu.Unlock()
	close(h.stop)
	<-h.done
	h.mu.Lock()
	queue := h.queue
	h.queue = nil
	h.mu.Unlock()
	for _, b := range queue {
		b.err = errCrashed
		close(b.done)
	}
	h.db.Close()
}

// HoleCount implements historytest.HoleCounter: the holes on disk.
func (h *History) HoleCount() int {
	holes, _, _ := h.holeKeys()
	return holes
}

// holeKeys counts the keys of the holes buckets, and returns the count
// kept in meta.
func (h *History) holeKeys() (holes, holeTopics int, meta uint64) {
	_ = h.db.View(func(tx *bbolt.Tx) error {
		holes = tx.Bucket(bucketHoles).Stats().KeyN
		holeTopics = tx.Bucket(bucketHoleTopics).Stats().KeyN
		meta = getU64(tx.Bucket(bucketMeta).Get(keyHoles))
		return nil
	})
	return holes, holeTopics, meta
}

// failNextCommits makes the next n transactions fail, as a full disk
// would.
func (h *History) failNextCommits(n int) { h.failCommits.Store(int32(n)) }

// pending returns the gaps not yet persisted, and the number of
// publisher IDs indexed in the queue.
func (h *History) pending() (gaps losses.Gaps, queuedIDs int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.newGaps), len(h.queuedIDs)
}

// gapKeys returns the gaps on disk.
func (h *History) gapKeys() []losses.Gap {
	var gaps []losses.Gap
	_ = h.db.View(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketGaps).ForEach(func(k, v []byte) error {
			gaps = append(gaps, losses.Gap{From: getU64(k), To: getU64(v)})
			return nil
		})
	})
	return gaps
}

// Reopen implements historytest.Reopener: it closes h and opens its file
// again with the same options.
func (h *History) Reopen() (herald.History, error) {
	if err := h.Close(); err != nil {
		return nil, err
	}
	sync := SyncAlways
	if h.noSync {
		sync = SyncNever
	}
	return Open(h.path, Options{Retention: h.retention, Sync: sync})
}
