package herald

import (
	"cmp"
	"slices"
	"sync"
	"time"

	"github.com/herald-sse/herald/internal/losses"
)

// replayPage is how many records a replay hands over at a time: the lock
// is released between pages so publishing never waits for a slow replay.
const replayPage = 256

// MemoryHistory is a [History] in memory, bounded by its retention. It is
// the hub's default; everything is lost when the process ends.
type MemoryHistory struct {
	retention Retention
	now       func() time.Time

	mu        sync.Mutex
	epoch     string
	recs      []Record // ascending positions; removed records are dropped from the front or tombstoned (Topics nil)
	start     int      // recs[:start] are removed
	dead      int      // tombstones in recs[start:]
	head      uint64
	bytes     int64
	live      int
	byTopic   map[string]*topicIndex
	ids       map[string]idEntry
	lost      losses.Memory  // what was removed: lost to everyone, or to the subscribers of some topics
	liveTopic map[string]int // per capped topic: live records carrying it
}

// idEntry is where a publisher-supplied ID points: the newest retained
// record carrying it, and how many retained records carry it.
type idEntry struct {
	pos uint64
	n   int
}

// topicIndex lists the positions of one topic's records, ascending; some
// may be removed records, skipped when read and compacted away.
type topicIndex struct {
	pos   []uint64
	start int
	dead  int
}

// NewMemoryHistory returns an empty history with the given retention
// (zero fields take the defaults) and a fresh random epoch.
func NewMemoryHistory(r Retention) *MemoryHistory {
	return &MemoryHistory{
		retention: r.WithDefaults(),
		now:       time.Now,
		epoch:     NewEpoch(),
		byTopic:   make(map[string]*topicIndex),
		ids:       make(map[string]idEntry),
		liveTopic: make(map[string]int),
	}
}

// Epoch implements [History].
func (m *MemoryHistory) Epoch() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.epoch // a cluster node's copy adopts its log's epoch
}

// Head implements [History].
func (m *MemoryHistory) Head() uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.head
}

// Close implements [History]; it releases the records.
func (m *MemoryHistory) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.recs, m.start, m.dead, m.live, m.bytes = nil, 0, 0, 0, 0
	clear(m.byTopic)
	clear(m.ids)
	return nil
}

// Len returns the number of records retained.
func (m *MemoryHistory) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.expireLocked()
	return m.live
}

// Append implements [History]. Records are in memory at once: there is
// nothing to wait for.
func (m *MemoryHistory) Append(recs []Record) (func() error, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i := range recs {
		m.head++
		recs[i].Position = m.head
		r := recs[i]
		// Copies: the caller may reuse its slices.
		r.Topics, r.ToUsers, r.ToConnections = slices.Clone(r.Topics), slices.Clone(r.ToUsers), slices.Clone(r.ToConnections)
		m.insertLocked(r)
	}
	m.trimLocked()
	return nil, nil
}

// appendAt adds records whose positions a broker assigned: increasing,
// above the head, not necessarily consecutive. It keeps the records'
// slices, which a Broker hands over (see Follow).
func (m *MemoryHistory) appendAt(recs []Record) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, r := range recs {
		if r.Position <= m.head {
			panic("herald: mirror given a position at or below its head")
		}
		m.head = r.Position
		m.insertLocked(r)
	}
	m.trimLocked()
}

// insertLocked adds r, whose position is set and is the head.
func (m *MemoryHistory) insertLocked(r Record) {
	if r.Time.IsZero() {
		r.Time = m.now()
	}
	m.recs = append(m.recs, r)
	m.live++
	m.bytes += int64(r.Size())
	for _, t := range r.Topics {
		ti := m.byTopic[t]
		if ti == nil {
			ti = &topicIndex{}
			m.byTopic[t] = ti
		}
		ti.pos = append(ti.pos, r.Position)
		if _, ok := m.retention.PerTopic[t]; ok {
			m.liveTopic[t]++
		}
	}
	if r.ID != "" {
		m.ids[r.ID] = idEntry{pos: r.Position, n: m.ids[r.ID].n + 1}
	}
	for _, t := range r.Topics {
		if limit, ok := m.retention.PerTopic[t]; ok {
			for m.liveTopic[t] > limit {
				m.removeOldestOfTopicLocked(t)
			}
		}
	}
}

// adopt empties the history and renames it epoch: it now mirrors
// another log.
func (m *MemoryHistory) adopt(epoch string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.epoch = epoch
	m.recs, m.start, m.dead, m.head, m.bytes, m.live = nil, 0, 0, 0, 0, 0
	m.lost = losses.Memory{}
	clear(m.byTopic)
	clear(m.ids)
	clear(m.liveTopic)
}

// markLost records that everything up to upTo is gone, to everyone.
func (m *MemoryHistory) markLost(upTo uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	losses.Drop(&m.lost, upTo)
	m.forgetHolesLocked()
}

// countBetween returns how many retained records have after < Position
// <= upTo, counting those removed by a per-topic cap: how far a reader
// at after is behind one at upTo.
func (m *MemoryHistory) countBetween(after, upTo uint64) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	recs := m.recs[m.start:]
	i, _ := slices.BinarySearchFunc(recs, after+1, byPosition)
	j, _ := slices.BinarySearchFunc(recs, upTo+1, byPosition)
	return max(0, j-i)
}

// trimLocked removes the oldest records while a global limit is exceeded.
func (m *MemoryHistory) trimLocked() {
	cutoff := m.now().Add(-m.retention.MaxAge)
	for m.start < len(m.recs) {
		r := &m.recs[m.start]
		if r.Topics != nil && m.live <= m.retention.MaxEvents && m.bytes <= m.retention.MaxBytes && !r.Time.Before(cutoff) {
			break
		}
		if r.Topics == nil {
			m.dead--
		} else {
			losses.Drop(&m.lost, r.Position) // folded holes may have raised it above r
			m.forgetLocked(r)
		}

		*r = Record{}
		m.start++
	}
	m.forgetHolesLocked()
	m.compactLocked()
}

// forgetHolesLocked drops the holes and gaps that dropped covers, and
// folds the oldest holes while there are more than MaxEvents: bounded
// memory, paid for with caution (more resumes report a loss).
func (m *MemoryHistory) forgetHolesLocked() {
	_ = losses.Forget(&m.lost, (*liveRecords)(m), m.retention.MaxEvents) // Memory never fails
}

// liveRecords is what the loss record reads of the records retained (see
// losses.Retained); the caller holds the lock.
type liveRecords MemoryHistory

// First implements losses.Retained.
func (l *liveRecords) First() uint64 {
	for _, r := range l.recs[l.start:] {
		if r.Topics != nil {
			return r.Position
		}
	}
	return 0
}

// NoneBetween implements losses.Retained.
func (l *liveRecords) NoneBetween(a, b uint64) bool {
	if b <= a+1 {
		return true
	}
	recs := l.recs[l.start:]
	i, _ := slices.BinarySearchFunc(recs, a+1, byPosition)
	for ; i < len(recs) && recs[i].Position < b; i++ {
		if recs[i].Topics != nil {
			return false
		}
	}
	return true
}

// expireLocked applies the age limit, which time alone can exceed.
func (m *MemoryHistory) expireLocked() {
	if m.start < len(m.recs) && m.recs[m.start].Time.Before(m.now().Add(-m.retention.MaxAge)) {
		m.trimLocked()
	}
}

// removeOldestOfTopicLocked tombstones the oldest live record carrying t,
// which is over its per-topic cap.
func (m *MemoryHistory) removeOldestOfTopicLocked(t string) {
	ti := m.byTopic[t]
	for ti != nil && ti.start < len(ti.pos) {
		pos := ti.pos[ti.start]
		i, ok := m.indexLocked(pos)
		if !ok {
			ti.start++ // removed earlier, counted dead until now
			ti.dead--
			continue
		}
		r := &m.recs[i]
		topics := r.Topics
		m.forgetLocked(r)
		*r = Record{Position: pos} // tombstone: Topics nil
		m.dead++
		// Lost to subscribers of any of its topics, not only t.
		_ = losses.AddHole(&m.lost, (*liveRecords)(m), pos, topics, m.retention.MaxEvents) // Memory never fails
		return
	}
}

// forgetLocked takes a live record out of the counters and indexes; the
// caller then removes or tombstones it.
func (m *MemoryHistory) forgetLocked(r *Record) {
	m.live--
	m.bytes -= int64(r.Size())
	if r.ID != "" {
		switch e := m.ids[r.ID]; {
		case e.n <= 1:
			delete(m.ids, r.ID)
		case e.pos == r.Position:
			// A cap removed the newest of several records with this ID
			// (publishers rarely reuse IDs): point at the next newest.
			e.n--
			e.pos = m.newestWithIDLocked(r.ID, r.Position)
			m.ids[r.ID] = e
		default:
			e.n--
			m.ids[r.ID] = e
		}
	}
	for _, t := range r.Topics {
		if _, ok := m.retention.PerTopic[t]; ok {
			m.liveTopic[t]--
		}
		ti := m.byTopic[t]
		if ti == nil {
			continue
		}
		if ti.pos[ti.start] == r.Position {
			ti.start++
		} else {
			ti.dead++ // listed further in; skipped when read
		}
		switch {
		case ti.start+ti.dead >= len(ti.pos):
			delete(m.byTopic, t) // nothing of it is retained
		case (ti.start+ti.dead)*2 > len(ti.pos) && len(ti.pos) > 64:
			m.compactTopicLocked(ti, r.Position)
		}
	}
}

// newestWithIDLocked finds the newest live record other than the one at
// except that carries id.
func (m *MemoryHistory) newestWithIDLocked(id string, except uint64) uint64 {
	for i := len(m.recs) - 1; i >= m.start; i-- {
		r := &m.recs[i]
		if r.Topics != nil && r.ID == id && r.Position != except {
			return r.Position
		}
	}
	return 0
}

// compactLocked drops removed records from the slice once they are half
// of it, so memory follows what is retained.
func (m *MemoryHistory) compactLocked() {
	if m.start+m.dead <= len(m.recs)/2 || len(m.recs) < 64 {
		return
	}
	kept := make([]Record, 0, m.live+m.live/4)
	for _, r := range m.recs[m.start:] {
		if r.Topics != nil {
			kept = append(kept, r)
		}
	}
	m.recs, m.start, m.dead = kept, 0, 0
}

// compactTopicLocked rebuilds ti without removed positions, nor
// removing, the one being removed now.
func (m *MemoryHistory) compactTopicLocked(ti *topicIndex, removing uint64) {
	kept := make([]uint64, 0, len(ti.pos)-ti.start-ti.dead)
	for _, p := range ti.pos[ti.start:] {
		if _, ok := m.indexLocked(p); ok && p != removing {
			kept = append(kept, p)
		}
	}
	ti.pos, ti.start, ti.dead = kept, 0, 0
}

// indexLocked finds the live record at pos.
func (m *MemoryHistory) indexLocked(pos uint64) (int, bool) {
	recs := m.recs[m.start:]
	i, ok := slices.BinarySearchFunc(recs, pos, byPosition)
	if !ok || recs[i].Topics == nil {
		return 0, false
	}
	return m.start + i, true
}

// Lookup implements [History].
func (m *MemoryHistory) Lookup(id string) (uint64, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.expireLocked()
	e, ok := m.ids[id]
	return e.pos, ok
}

// lookupRecord is Lookup returning the record too, so the hub can tell
// who may resume after a publisher's ID without a Replay (see
// Hub.lookupFor). The record's slices are shared: read them only.
func (m *MemoryHistory) lookupRecord(id string) (Record, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.expireLocked()
	e, ok := m.ids[id]
	if !ok {
		return Record{}, false
	}
	recs := m.recs[m.start:]
	i, found := slices.BinarySearchFunc(recs, e.pos, byPosition)
	if !found || recs[i].Topics == nil {
		return Record{}, false
	}
	return recs[i], true
}

// Lost implements [History]. Records removed by the global limits count
// as lost to everyone (the history no longer knows their topics); those
// removed by a per-topic cap only to selectors matching one of their
// topics.
func (m *MemoryHistory) Lost(after, upTo uint64, selectors []Selector) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.expireLocked()
	return m.lostLocked(after, upTo, selectors)
}

func (m *MemoryHistory) lostLocked(after, upTo uint64, selectors []Selector) bool {
	return losses.Lost(&m.lost, after, upTo, func(topics []string) bool { return Matches(selectors, topics) })
}

// byPosition orders records against a position, for binary searches.
func byPosition(r Record, pos uint64) int { return cmp.Compare(r.Position, pos) }

// Replay implements [History]. With only Topic selectors it walks those
// topics' indexes; otherwise it scans the records in the range.
func (m *MemoryHistory) Replay(after, upTo uint64, selectors []Selector, fn func([]Record) error) error {
	var topics []string
	for _, sel := range selectors {
		t, ok := sel.(Topic)
		if !ok {
			topics = nil
			break
		}
		topics = append(topics, string(t))
	}
	indexed := len(topics) == len(selectors)
	// Pages grow to replayPage as needed: allocating and clearing a full
	// one (43 KB) per call cost more than most replays themselves.
	var page []Record
	cursor := after
	for {
		m.mu.Lock()
		m.expireLocked()
		if cursor >= upTo {
			m.mu.Unlock()
			return nil
		}
		if m.lostLocked(cursor, upTo, selectors) {
			m.mu.Unlock()
			return ErrHistoryLost
		}
		if indexed {
			page = m.pageByTopicLocked(page[:0], cursor, upTo, topics)
		} else {
			page = m.pageByScanLocked(page[:0], cursor, upTo, selectors)
		}
		m.mu.Unlock()
		if len(page) == 0 {
			return nil
		}
		if err := fn(page); err != nil {
			return err
		}
		cursor = page[len(page)-1].Position
		clear(page)
	}
}

func (m *MemoryHistory) pageByScanLocked(page []Record, after, upTo uint64, selectors []Selector) []Record {
	recs := m.recs[m.start:]
	i, _ := slices.BinarySearchFunc(recs, after+1, byPosition)
	for ; i < len(recs) && len(page) < replayPage; i++ {
		r := &recs[i]
		if r.Position > upTo {
			break
		}
		if r.Topics != nil && Matches(selectors, r.Topics) {
			page = append(page, *r)
		}
	}
	return page
}

// pageByTopicLocked merges the position lists of topics from after,
// taking each record once even if it carries several of the topics.
func (m *MemoryHistory) pageByTopicLocked(page []Record, after, upTo uint64, topics []string) []Record {
	type cursor struct{ pos []uint64 }
	cursors := make([]cursor, 0, len(topics))
	for _, t := range topics {
		ti := m.byTopic[t]
		if ti == nil {
			continue
		}
		pos := ti.pos[ti.start:]
		i, _ := slices.BinarySearch(pos, after+1)
		cursors = append(cursors, cursor{pos[i:]})
	}
	last := after
	for len(page) < replayPage {
		next := uint64(0)
		for i := range cursors {
			c := &cursors[i]
			for len(c.pos) > 0 && c.pos[0] <= last {
				c.pos = c.pos[1:] // taken already through another topic
			}
			if len(c.pos) > 0 && (next == 0 || c.pos[0] < next) {
				next = c.pos[0]
			}
		}
		if next == 0 || next > upTo {
			break
		}
		last = next
		if i, ok := m.indexLocked(next); ok {
			page = append(page, m.recs[i])
		}
	}
	return page
}
