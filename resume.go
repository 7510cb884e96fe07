package herald

// Resuming: where a subscriber that names the last event it got starts,
// or why it cannot (a Reset). The hub answers under its publish lock, so
// what it replays up to the head and what it queues live after it are
// gapless and without duplicates.

// Earliest as a Last-Event-ID replays all retained history.
const Earliest = "earliest"

// Reasons a subscriber could not resume where it asked, in [Reset].
const (
	ResetUnknown = "unknown" // the ID was never issued by this history, or is malformed
	ResetExpired = "expired" // events after it were removed by retention
	ResetForeign = "foreign" // the ID comes from another history (wiped, replaced)
)

// Reset tells a subscriber that it could not resume where it asked and
// starts with live events: what it missed is gone, and the application
// should reload its state.
type Reset struct {
	Reason      string // ResetUnknown, ResetExpired or ResetForeign
	LastEventID string // the ID the subscriber asked to resume after
	// ResumeID is the ID of the newest event published before the
	// subscription (empty if none): resuming after it later is gapless.
	ResumeID string
}

// resumePoint finds where s, resuming after lastEventID, starts, or why
// it cannot. A generated ID of this history past its head, up to
// aheadLimit, is one a clustered node has not read yet (resumeAhead).
func (h *Hub) resumePoint(s *Subscriber, lastEventID string, pre idCheck, head uint64, aheadLimit uint64) (uint64, string) {
	selectors := s.selectors
	if lastEventID == Earliest {
		// Everything retained: start after the last position whose
		// successors retention has touched. Lost is monotone in its
		// position, so a binary search finds it.
		lo, hi := uint64(0), head // Lost(hi) is false: nothing follows the head
		for lo < hi {
			mid := lo + (hi-lo)/2
			if h.history.Lost(mid, head, selectors) {
				lo = mid + 1
			} else {
				hi = mid
			}
		}
		return lo, ""
	}
	pos, ok := h.lookupFor(s, lastEventID, pre)
	if !ok {
		id, ok := parseGeneratedID(lastEventID)
		switch {
		case !ok:
			return 0, ResetUnknown
		case id.epoch != h.epoch:
			return 0, ResetForeign
		case id.pos > head && id.pos <= aheadLimit:
			return id.pos, resumeAhead
		case id.pos > head:
			return 0, ResetUnknown // not issued yet: from a store that lost its tail
		}
		pos = id.pos
	}
	if h.history.Lost(pos, head, selectors) {
		return 0, ResetExpired
	}
	return pos, ""
}

// everything reads a record whatever its topics.
var everything = []Selector{All{}}

// idCheck is what a publisher's ID resolves to for a subscriber: the
// position of the retained event carrying it (0: none), and whether the
// subscriber may see that event.
type idCheck struct {
	pos     uint64
	visible bool
}

// checkID looks a publisher's ID up for s. An event s may not see
// (private, or for other users or connections) must be answered as an ID
// never issued, so that resuming after a guessed ID does not tell whether
// such an event exists. A stream that may see it (the same rights or
// subject) still resumes right after it; one after an event for a
// connection is another connection, told to reload like any stream that
// lost its place.
func (h *Hub) checkID(s *Subscriber, id string) idCheck {
	if m, ok := h.history.(recordLookup); ok {
		r, ok := m.lookupRecord(id)
		if !ok {
			return idCheck{}
		}
		return idCheck{pos: r.Position, visible: !r.restricted() || s.mayReceive(&r)}
	}
	pos, ok := h.history.Lookup(id)
	if !ok {
		return idCheck{}
	}
	c := idCheck{pos: pos}
	// Records never change, only leave: the one at pos is the event
	// (or, gone since, a miss like any other).
	err := h.history.Replay(pos-1, pos, everything, func(recs []Record) error {
		for i := range recs {
			if r := &recs[i]; r.Position == pos && r.ID == id {
				c.visible = !r.restricted() || s.mayReceive(r)
			}
		}
		return nil
	})
	c.visible = c.visible && err == nil
	return c
}

// lookupFor resolves a publisher's ID to the position of the event
// carrying it if s may see it (see checkID), as if never issued
// otherwise. pre is checkID's answer from before the hub's lock (a
// Replay costs more than the critical section should), good while the ID
// still points at the same record. h.mu must be held.
func (h *Hub) lookupFor(s *Subscriber, id string, pre idCheck) (uint64, bool) {
	pos, ok := h.history.Lookup(id)
	if !ok {
		return 0, false
	}
	c := pre
	if c.pos != pos {
		c = h.checkID(s, id) // published or removed since: rare
	}
	if c.pos != pos || !c.visible {
		return 0, false
	}
	return pos, true
}

// recordLookup is a History that finds a publisher's ID and its record
// in one step, cheaper than Lookup and a Replay of that one record.
type recordLookup interface {
	lookupRecord(id string) (Record, bool)
}
