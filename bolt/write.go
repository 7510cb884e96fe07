package bolt

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/herald-sse/herald"
	"github.com/herald-sse/herald/internal/losses"
	bbolt "go.etcd.io/bbolt"
)

// batch is records appended together; their publishers wait on done.
type batch struct {
	recs  []herald.Record
	taken bool // the writer is committing it
	done  chan struct{}
	err   error
	wait  func() error
}

func newBatch() *batch {
	b := &batch{done: make(chan struct{})}
	b.wait = func() error {
		<-b.done
		return b.err
	}
	return b
}

// Append implements [herald.History]. It only queues the records; the
// returned wait blocks until the writer committed them (and synced them,
// under SyncAlways). It fails after Close, and for topics or IDs
// containing NUL (which the hub never publishes).
func (h *History) Append(recs []herald.Record) (func() error, error) {
	size := 0
	for i := range recs {
		r := &recs[i]
		if strings.IndexByte(r.ID, 0) >= 0 || len(r.ID) > bbolt.MaxKeySize-9 {
			return nil, fmt.Errorf("bolt: id with NUL or longer than %d bytes", bbolt.MaxKeySize-9)
		}
		for _, t := range r.Topics {
			if strings.IndexByte(t, 0) >= 0 || len(t) > bbolt.MaxKeySize-9 {
				return nil, fmt.Errorf("bolt: topic with NUL or longer than %d bytes", bbolt.MaxKeySize-9)
			}
		}
		size += r.Size()
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(recs) == 0 {
		return nil, nil
	}
	// Wait while the writer is far behind (the disk is too slow for the
	// publish rate), and for a reservation covering the positions: one
	// is normally persisted long before it is needed.
	for {
		if h.closed {
			return nil, ErrClosed
		}
		last := h.next + uint64(len(recs)) - 1
		if last+reserveBlock/2 > h.wantReserve {
			h.wantReserve = last + reserveBlock
			h.wakeWriter()
		}
		if last <= h.reserved && (h.queued < maxQueued && h.queuedBytes < maxQueuedBytes || h.queued == 0) {
			break
		}
		if last > h.reserved && h.resErr != nil {
			// Fail this publish; the next one has the writer try again.
			err := h.resErr
			h.resErr = nil
			h.wakeWriter()
			return nil, fmt.Errorf("bolt: reserving positions: %w", err)
		}
		h.cond.Wait()
	}
	var b *batch
	if n := len(h.queue); n > 0 && !h.queue[n-1].taken && len(h.queue[n-1].recs) < maxTxRecords {
		b = h.queue[n-1]
	} else {
		b = newBatch()
		h.queue = append(h.queue, b)
	}
	now := time.Now()
	for i := range recs {
		recs[i].Position = h.next
		h.next++
		r := recs[i]
		if r.Time.IsZero() {
			r.Time = now
		}
		if r.ID != "" {
			h.queuedIDs[r.ID] = r.Position
		}
		r.Topics = slices.Clone(r.Topics)
		r.ToUsers = slices.Clone(r.ToUsers)
		r.ToConnections = slices.Clone(r.ToConnections)
		b.recs = append(b.recs, r)
	}
	if h.front.IsZero() {
		h.front = b.recs[len(b.recs)-len(recs)].Time
	}
	h.head = h.next - 1
	h.queued += len(recs)
	h.queuedBytes += size
	h.wakeWriter()
	return b.wait, nil
}

// Healthy implements [herald.HealthChecker]: while the last commit failed
// (the disk is full, say), it returns why, and publishes fail. The writer
// tries again every second, and with every publish; the first commit that
// succeeds makes it healthy again.
func (h *History) Healthy() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.commitErr != nil {
		return fmt.Errorf("bolt: the last commit to %s failed, publishes fail until one succeeds: %w", h.path, h.commitErr)
	}
	return nil
}

func (h *History) wakeWriter() {
	select {
	case h.kick <- struct{}{}:
	default:
	}
}

// run is the writer: it commits what is queued, and removes records as
// they age out.
func (h *History) run() {
	defer close(h.done)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		h.mu.Lock()
		front, failing := h.front, h.commitErr != nil
		h.mu.Unlock()
		var wait time.Duration = -1
		if !front.IsZero() {
			wait = max(time.Until(front.Add(h.retention.MaxAge)), 0) + time.Millisecond
		}
		if failing && (wait < 0 || wait > retryInterval) {
			wait = retryInterval
		}
		if wait >= 0 {
			timer.Reset(wait)
		}
		select {
		case <-h.kick:
		case <-timer.C:
		case <-h.stop:
			for h.flush() {
			}
			return
		}
		timer.Stop()
		for h.flush() {
		}
	}
}

// flush commits one transaction of queued records (and retention) and
// reports whether more work is waiting.
func (h *History) flush() bool {
	h.mu.Lock()
	if h.paused || h.crashing {
		h.mu.Unlock()
		return false
	}
	var take []*batch
	n, size := 0, 0
	for _, b := range h.queue {
		if len(take) > 0 && (n+len(b.recs) > maxTxRecords || size > maxTxBytes) {
			break
		}
		b.taken = true
		take = append(take, b)
		n += len(b.recs)
		for i := range b.recs {
			size += b.recs[i].Size()
		}
	}
	wantReserve := h.wantReserve
	expire := !h.front.IsZero() && h.front.Before(time.Now().Add(-h.retention.MaxAge))
	gaps := slices.Clone(h.newGaps)
	probe := h.commitErr != nil // a commit after a failure shows whether the store writes again
	h.started++
	gen := h.started
	h.mu.Unlock()

	var recs []herald.Record
	if len(take) == 1 {
		recs = take[0].recs
	} else {
		for _, b := range take {
			recs = append(recs, b.recs...)
		}
	}
	var (
		more      bool
		err       error
		reserved  = h.st.reserved
		committed = false
	)
	if len(recs) > 0 || wantReserve > reserved || expire || len(gaps) > 0 || probe {
		more, err = h.commit(recs, wantReserve, gaps)
		committed = err == nil
	}
	var resErr error
	if committed && h.st.reserved > reserved && h.noSync {
		// The reservation must survive a power loss even when records
		// need not.
		resErr = h.db.Sync()
	}

	h.mu.Lock()
	for _, b := range take {
		for i := range b.recs {
			r := &b.recs[i]
			if p, ok := h.queuedIDs[r.ID]; ok && p <= r.Position {
				delete(h.queuedIDs, r.ID) // no newer queued record carries it
			}
		}
	}
	if committed {
		// Readers may have added gaps meanwhile; those of the snapshot
		// are on disk.
		for _, g := range gaps {
			h.newGaps = h.newGaps.Remove(g)
		}
		h.commitErr = nil
	}
	if err != nil {
		// The records were never stored: their publishes fail, and they
		// are gone like those a crash cuts off before their commit (see
		// the package doc). They are not lost events: nothing
		// acknowledged is missing, so resumes over their positions
		// continue without a reset.
		h.commitErr = err
	}
	k := copy(h.queue, h.queue[len(take):])
	clear(h.queue[k:])
	h.queue = h.queue[:k]
	h.queued -= n
	h.queuedBytes -= size
	switch {
	case err != nil && wantReserve > reserved:
		h.resErr = err
	case resErr != nil:
		h.resErr = resErr
	case committed:
		h.reserved = h.st.reserved
		h.resErr = nil
	}
	switch {
	case !h.st.front.IsZero():
		h.front = h.st.front
	case len(h.queue) > 0:
		h.front = h.queue[0].recs[0].Time
	default:
		h.front = time.Time{}
	}
	h.finished = gen
	more = more || len(h.queue) > 0
	h.cond.Broadcast()
	h.mu.Unlock()

	if err != nil {
		err = fmt.Errorf("bolt: committing to %s: %w", h.path, err)
	}
	for _, b := range take {
		b.err = err
		close(b.done)
	}
	return more
}

// commit writes the gaps not yet persisted and recs, and applies
// retention, in one transaction, updating h.st if it commits. It reports
// whether the global limits still need another transaction.
func (h *History) commit(recs []herald.Record, reserve uint64, gaps losses.Gaps) (more bool, err error) {
	st := h.st.clone()
	st.reserved = max(st.reserved, reserve)
	err = h.db.Update(func(tx *bbolt.Tx) error {
		w := writeTx{
			h:          h,
			st:         &st,
			meta:       tx.Bucket(bucketMeta),
			records:    tx.Bucket(bucketRecords),
			topics:     tx.Bucket(bucketTopics),
			ids:        tx.Bucket(bucketIDs),
			holes:      tx.Bucket(bucketHoles),
			holeTopics: tx.Bucket(bucketHoleTopics),
			gaps:       tx.Bucket(bucketGaps),
		}
		w.records.FillPercent = 1 // keys only ever grow
		for _, g := range gaps {
			if err := losses.AddGap(&w, &w, g.From, g.To); err != nil {
				return err
			}
		}
		for i := range recs {
			if err := w.insert(&recs[i]); err != nil {
				return err
			}
		}
		// Caps lowered since the last run.
		budget := maxTrim + len(recs)
		for t, n := range st.capCount {
			for ; n > h.retention.PerTopic[t] && budget > 0; n = st.capCount[t] {
				budget--
				if err := w.removeOldestOf(t); err != nil {
					return err
				}
			}
			more = more || n > h.retention.PerTopic[t]
		}
		trimmed, err := w.trim(budget)
		if err != nil {
			return err
		}
		more = more || trimmed
		if h.failCommits.Load() > 0 && h.failCommits.Add(-1) >= 0 {
			return errInjected
		}
		return w.finish()
	})
	if err == nil {
		h.st = st
	}
	return more, err
}

// errInjected is the failure of a commit the failCommits hook fails.
var errInjected = errors.New("injected failure")

// writeTx is the work of one write transaction.
type writeTx struct {
	h                                                   *History
	st                                                  *state
	meta, records, topics, ids, holes, holeTopics, gaps *bbolt.Bucket
}

func (w *writeTx) insert(r *herald.Record) error {
	// bbolt keeps the keys and values put until the commit: each gets
	// its own slice.
	pos := u64(r.Position)
	if err := w.records.Put(pos, encode(make([]byte, 0, 32+r.Size()), r)); err != nil {
		return err
	}
	for i, t := range r.Topics {
		if slices.Contains(r.Topics[:i], t) {
			continue
		}
		if err := w.topics.Put(indexKey(t, pos), nil); err != nil {
			return err
		}
		if _, ok := w.st.capCount[t]; ok {
			w.st.capCount[t]++
		}
	}
	if r.ID != "" {
		if err := w.ids.Put(indexKey(r.ID, pos), nil); err != nil {
			return err
		}
	}
	w.st.count++
	w.st.bytes += int64(r.Size())
	w.st.head = max(w.st.head, r.Position)
	if w.st.front.IsZero() {
		w.st.front = r.Time
	}
	for i, t := range r.Topics {
		limit, ok := w.h.retention.PerTopic[t]
		if !ok || slices.Contains(r.Topics[:i], t) {
			continue
		}
		for w.st.capCount[t] > limit {
			if err := w.removeOldestOf(t); err != nil {
				return err
			}
		}
	}
	return nil
}

// removeOldestOf removes the oldest record carrying t, over its cap.
func (w *writeTx) removeOldestOf(t string) error {
	prefix := topicPrefix(t)
	k, _ := w.topics.Cursor().Seek(prefix)
	if k == nil || !isTopicKey(k, prefix) {
		w.st.capCount[t] = 0 // cannot happen: the count says otherwise
		return nil
	}
	pos := binary.BigEndian.Uint64(k[len(prefix):])
	if w.records.Get(k[len(prefix):]) == nil {
		// The entry of a corrupt record removed without its topics.
		w.st.capCount[t]--
		return w.topics.Delete(slices.Clone(k))
	}
	return w.remove(pos, true)
}

// remove deletes the record at pos and its index entries. A record
// removed by a cap becomes a hole; one removed by a global limit (always
// the oldest) is lost to everyone.
func (w *writeTx) remove(pos uint64, byCap bool) error {
	pk := u64(pos)
	v := w.records.Get(pk)
	if v == nil {
		return nil
	}
	r, err := decode(pos, v)
	if err != nil {
		// Corrupt: its index entries cannot be found, and stay (readers
		// skip entries without a record). Retention must go on.
		w.h.log.Error("bolt: removing a corrupt record", "path", w.h.path, "position", pos, "error", err)
		w.st.count--
		w.st.bytes -= int64(len(v))
		if err := w.records.Delete(pk); err != nil {
			return err
		}
		if byCap {
			return losses.AddGap(w, w, pos, pos)
		}
		losses.Drop(w, pos)
		return nil
	}
	if err := w.records.Delete(pk); err != nil {
		return err
	}
	for i, t := range r.Topics {
		if slices.Contains(r.Topics[:i], t) {
			continue
		}
		if err := w.topics.Delete(indexKey(t, pk)); err != nil {
			return err
		}
		if _, ok := w.st.capCount[t]; ok {
			w.st.capCount[t]--
		}
	}
	if r.ID != "" {
		if err := w.ids.Delete(indexKey(r.ID, pk)); err != nil {
			return err
		}
	}
	w.st.count--
	w.st.bytes -= int64(r.Size())
	if byCap {
		// Lost to subscribers of any of its topics, not only the capped one.
		return losses.AddHole(w, w, pos, r.Topics, w.h.retention.MaxEvents)
	}
	losses.Drop(w, pos)
	return nil
}

// trim removes the oldest records while a global limit is exceeded, at
// most budget of them, and reports whether it stopped early.
func (w *writeTx) trim(budget int) (bool, error) {
	ret := w.h.retention
	cutoff := time.Now().Add(-ret.MaxAge)
	c := w.records.Cursor()
	for k, v := c.First(); k != nil; k, v = c.First() {
		if w.st.count <= uint64(ret.MaxEvents) && w.st.bytes <= ret.MaxBytes && !decodeTime(v).Before(cutoff) {
			break
		}
		if budget == 0 {
			return true, nil
		}
		budget--
		if err := w.remove(binary.BigEndian.Uint64(k), false); err != nil {
			return false, err
		}
	}
	w.st.front = time.Time{}
	if _, v := c.First(); v != nil {
		w.st.front = decodeTime(v)
	}
	// Holes at or below dropped say nothing more than dropped does.
	return false, losses.Forget(w, w, w.h.retention.MaxEvents)
}

func (w *writeTx) finish() error {
	for _, kv := range []struct {
		k []byte
		v uint64
	}{
		{keyHead, w.st.head}, {keyReserved, w.st.reserved}, {keyCount, w.st.count},
		{keyBytes, uint64(w.st.bytes)}, {keyDropped, w.st.dropped}, {keyHoles, w.st.holes},
	} {
		if err := w.meta.Put(kv.k, u64(kv.v)); err != nil {
			return err
		}
	}
	return nil
}
