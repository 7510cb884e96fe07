package bolt

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/herald-sse/herald"
	bbolt "go.etcd.io/bbolt"
)

// pageSize is how many records Replay hands over at a time; no
// transaction is open while fn runs.
const pageSize = 256

// expireDue has the writer remove records that aged out, if the oldest
// did, before a read answers.
func (h *History) expireDue() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.front.IsZero() || !h.front.Before(time.Now().Add(-h.retention.MaxAge)) {
		return
	}
	want := h.started + 1
	h.wakeWriter()
	for h.finished < want && !h.closed && !h.paused {
		h.cond.Wait()
	}
}

// Lookup implements [herald.History] with the "ids" index, after the
// records not yet committed.
func (h *History) Lookup(id string) (uint64, bool) {
	if id == "" {
		return 0, false
	}
	h.expireDue()
	h.mu.Lock()
	pos, ok := h.queuedIDs[id]
	h.mu.Unlock()
	if ok {
		return pos, true
	}
	var found bool
	_ = h.db.View(func(tx *bbolt.Tx) error {
		prefix := append([]byte(id), 0)
		c := tx.Bucket(bucketIDs).Cursor()
		k, _ := c.Seek(append([]byte(id), 1))
		if k == nil {
			k, _ = c.Last()
		} else {
			k, _ = c.Prev()
		}
		if k != nil && len(k) == len(prefix)+8 && bytes.HasPrefix(k, prefix) {
			pos, found = binary.BigEndian.Uint64(k[len(prefix):]), true
		}
		return nil
	})
	return pos, found
}

// Replay implements [herald.History]. With only Topic selectors it seeks
// each topic's index and reads only the matching records; otherwise it
// scans the records in the range. It stops at the head as of the call.
func (h *History) Replay(after, upTo uint64, selectors []herald.Selector, fn func([]herald.Record) error) error {
	upTo = min(upTo, h.Head())
	topics := topicNames(selectors)
	// Pages grow to pageSize as needed: allocating and clearing a full
	// one (43 KB) per call cost more than most replays themselves.
	var page, pending []herald.Record
	// Only (cursor, upTo] matters: what was handed to fn may go.
	for cursor := after; cursor < upTo; {
		h.expireDue()
		// Snapshot the queue before the transaction: what the writer
		// commits in between is then in the transaction.
		pending, truncated, lost := h.pendingPage(pending[:0], cursor, upTo, selectors)
		if lost {
			return herald.ErrHistoryLost
		}
		var scanned uint64
		page = page[:0]
		err := h.db.View(func(tx *bbolt.Tx) error {
			if lostIn(tx, cursor, upTo, selectors, topics) {
				return herald.ErrHistoryLost
			}
			limit := min(upTo, getU64(tx.Bucket(bucketMeta).Get(keyHead)))
			var err error
			if topics != nil {
				page, err = pageByTopic(tx, page, cursor, limit, topics)
			} else {
				page, err = pageByScan(tx, page, cursor, limit, selectors)
			}
			if err != nil {
				return err
			}
			if len(page) == pageSize {
				scanned = page[len(page)-1].Position
				return nil
			}
			scanned = max(cursor, limit)
			if limit >= upTo {
				return nil
			}
			for _, r := range pending {
				if r.Position <= limit {
					continue
				}
				if len(page) == pageSize {
					return nil
				}
				page = append(page, r)
				scanned = r.Position
			}
			if !truncated {
				scanned = upTo
			}
			return nil
		})
		clear(pending)
		if ce := (*corruptError)(nil); errors.As(err, &ce) {
			h.markCorrupt(ce.pos, ce.err)
			return herald.ErrHistoryLost
		}
		if err != nil {
			return err
		}
		if len(page) > 0 {
			if err := fn(page); err != nil {
				return err
			}
			clear(page)
		}
		if scanned <= cursor {
			return fmt.Errorf("bolt: replay made no progress after %d", cursor) // a bug
		}
		cursor = scanned
	}
	return nil
}

// pendingPage appends to page the queued records after cursor up to upTo
// that selectors match, at most a page of them; truncated says whether it
// stopped for that, lost whether a gap not yet persisted is there.
func (h *History) pendingPage(page []herald.Record, cursor, upTo uint64, selectors []herald.Selector) (_ []herald.Record, truncated, lost bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.newGaps.Lost(cursor, upTo) {
		return page, false, true
	}
	for _, b := range h.queue {
		recs := b.recs
		if recs[len(recs)-1].Position <= cursor {
			continue
		}
		i := sort.Search(len(recs), func(i int) bool { return recs[i].Position > cursor })
		for _, r := range recs[i:] {
			if r.Position > upTo {
				return page, false, false
			}
			if herald.Matches(selectors, r.Topics) {
				if len(page) == pageSize {
					return page, true, false
				}
				page = append(page, r)
			}
		}
	}
	return page, false, false
}

// pageByTopic merges the index entries of topics after cursor up to
// limit, reading each record once even if it carries several of them.
func pageByTopic(tx *bbolt.Tx, page []herald.Record, cursor, limit uint64, topics []string) ([]herald.Record, error) {
	type walk struct {
		c      *bbolt.Cursor
		prefix []byte
		pos    uint64 // current entry; 0 when done
	}
	index := tx.Bucket(bucketTopics)
	walks := make([]walk, 0, len(topics))
	for _, t := range topics {
		w := walk{c: index.Cursor(), prefix: topicPrefix(t)}
		k, _ := w.c.Seek(append(slices.Clip(w.prefix), u64(cursor+1)...))
		if k != nil && isTopicKey(k, w.prefix) {
			w.pos = binary.BigEndian.Uint64(k[len(w.prefix):])
			walks = append(walks, w)
		}
	}
	records := tx.Bucket(bucketRecords).Cursor() // one cursor: Bucket.Get makes one per call
	var key [8]byte
	for len(page) < pageSize {
		next := uint64(0)
		for _, w := range walks {
			if w.pos != 0 && (next == 0 || w.pos < next) {
				next = w.pos
			}
		}
		if next == 0 || next > limit {
			break
		}
		for i := range walks {
			w := &walks[i]
			if w.pos != next {
				continue
			}
			w.pos = 0
			if k, _ := w.c.Next(); k != nil && isTopicKey(k, w.prefix) {
				w.pos = binary.BigEndian.Uint64(k[len(w.prefix):])
			}
		}
		binary.BigEndian.PutUint64(key[:], next)
		k, v := records.Seek(key[:])
		if !bytes.Equal(k, key[:]) {
			continue // cannot happen: index and records change together
		}
		r, err := decode(next, v)
		if err != nil {
			return page, &corruptError{next, err}
		}
		if !slices.ContainsFunc(r.Topics, func(t string) bool { return slices.Contains(topics, t) }) {
			continue // a damaged index entry: the record is not for these topics
		}
		r.Position = next
		page = append(page, r)
	}
	return page, nil
}

// pageByScan reads the records after cursor up to limit and keeps those
// selectors match. Only the topics of the others are read, and topic
// names are made strings once per page.
func pageByScan(tx *bbolt.Tx, page []herald.Record, cursor, limit uint64, selectors []herald.Selector) ([]herald.Record, error) {
	names := make(map[string]string)
	var topics []string
	c := tx.Bucket(bucketRecords).Cursor()
	for k, v := c.Seek(u64(cursor + 1)); k != nil && len(page) < pageSize; k, v = c.Next() {
		pos := binary.BigEndian.Uint64(k)
		if pos > limit {
			break
		}
		var err error
		topics, err = decodeTopics(topics[:0], pos, v, names)
		if err != nil {
			return page, &corruptError{pos, err}
		}
		if !herald.Matches(selectors, topics) {
			continue
		}
		r, err := decode(pos, v)
		if err != nil {
			return page, &corruptError{pos, err}
		}
		r.Position = pos
		page = append(page, r)
	}
	return page, nil
}
