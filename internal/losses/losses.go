// Package losses is a history's loss record: what it removed, kept so
// that a history's Lost tells a resume over it that something is
// missing instead of skipping it silently.
//
// The record has three parts. Dropped: every position up to it is lost
// to everyone (records removed by a global limit, whose topics are then
// forgotten). Holes: records removed by a per-topic cap, each lost only
// to the selectors matching one of its topics. Gaps: ranges lost to
// everyone above dropped (a corrupt record, or holes folded while a
// retained record lies below them).
//
// The holes are bounded: while there are more than a history's
// MaxEvents, the oldest is folded into dropped when no record is retained
// below it, else into a gap, so that no retained record becomes
// unreachable. Gaps merge with their neighbours when no record is
// retained between them, so there are fewer gaps than records. The
// bound is paid for with caution: more resumes report a loss.
//
// The rules are written once here, over a [Store]: [Memory] for a
// history in memory, a bbolt transaction for the bolt package.
package losses

// Hole is a record removed by a per-topic cap: lost only to the
// selectors matching one of its topics.
type Hole struct {
	Pos    uint64
	Topics []string
}

// Gap is the positions From..To, lost to everyone.
type Gap struct{ From, To uint64 }

// Reader is what [Lost] reads of a loss record.
type Reader interface {
	// Dropped returns the position up to which everything is lost.
	Dropped() uint64
	// GapAtOrBefore returns the gap with the highest From <= pos.
	GapAtOrBefore(pos uint64) (Gap, bool)
	// HoleIn reports whether a hole in (after, upTo] is one match
	// accepts (or cannot be read).
	HoleIn(after, upTo uint64, match Match) bool
}

// Store is where a loss record is kept: the part the rules change.
type Store interface {
	Dropped() uint64
	SetDropped(pos uint64)
	// Holes returns how many holes there are.
	Holes() int
	// OldestHole returns the lowest position of a hole.
	OldestHole() (pos uint64, ok bool)
	// PutHole adds a hole; one already at pos stays as it is.
	PutHole(pos uint64, topics []string) error
	// DeleteHole removes the hole at pos.
	DeleteHole(pos uint64) error
	GapAtOrBefore(pos uint64) (Gap, bool)
	// GapAtOrAfter returns the gap with the lowest From >= pos.
	GapAtOrAfter(pos uint64) (Gap, bool)
	// PutGap adds g, which overlaps no gap.
	PutGap(g Gap) error
	// DeleteGap removes the gap starting at from.
	DeleteGap(from uint64) error
}

// Match reports whether a record with topics is one a caller of Lost
// asks about: for a history, whether its selectors match one of them.
// It is a function, not the selectors, because this package cannot
// import the root one, which uses it.
type Match func(topics []string) bool

// Retained is what the rules need to know of the records a history
// retains: folding a loss must never make one of them unreachable.
type Retained interface {
	// First returns the oldest retained position, 0 if none.
	First() uint64
	// NoneBetween reports whether no record is retained strictly
	// between a and b.
	NoneBetween(a, b uint64) bool
}

// Lost reports whether something in (after, upTo] that match accepts is
// lost: everything up to dropped, the gaps, and the holes match accepts.
func Lost(r Reader, after, upTo uint64, match Match) bool {
	if after >= upTo {
		return false
	}
	if r.Dropped() > after {
		return true
	}
	// Gaps are disjoint: the last one starting at or before upTo ends
	// last among those.
	if g, ok := r.GapAtOrBefore(upTo); ok && g.To > after {
		return true
	}
	return r.HoleIn(after, upTo, match)
}

// Drop records that everything up to pos is lost to everyone: a global
// limit removed the record at pos. [Forget] then tidies the holes and
// gaps it covers.
func Drop(s Store, pos uint64) { s.SetDropped(max(s.Dropped(), pos)) }

// AddHole records that the record at pos with topics was removed by a
// per-topic cap, unless dropped covers it, and keeps the holes within
// maxHoles. Call it once the record is no longer retained.
func AddHole(s Store, r Retained, pos uint64, topics []string, maxHoles int) error {
	if pos <= s.Dropped() {
		return nil
	}
	if err := s.PutHole(pos, topics); err != nil {
		return err
	}
	return Forget(s, r, maxHoles)
}

// Forget deletes the holes that dropped covers, and folds the oldest
// while there are more than maxHoles: into dropped if no record is
// retained below it, else into a gap. Then it deletes the gaps dropped
// covers, and folds into dropped those below the oldest retained record.
func Forget(s Store, r Retained, maxHoles int) error {
	first, known := uint64(0), false
	oldest := func() uint64 {
		if !known {
			first, known = r.First(), true
		}
		return first
	}
	for {
		pos, ok := s.OldestHole()
		if !ok || pos > s.Dropped() && s.Holes() <= maxHoles {
			break
		}
		if err := s.DeleteHole(pos); err != nil {
			return err
		}
		switch {
		case pos <= s.Dropped():
		case oldest() == 0 || pos < oldest():
			s.SetDropped(pos)
		default:
			if err := AddGap(s, r, pos, pos); err != nil {
				return err
			}
		}
	}
	for {
		g, ok := s.GapAtOrAfter(0)
		if !ok {
			return nil
		}
		switch {
		case g.To <= s.Dropped():
		case oldest() == 0 || g.To < oldest():
			s.SetDropped(g.To)
		default:
			return nil
		}
		if err := s.DeleteGap(g.From); err != nil {
			return err
		}
	}
}

// AddGap records that from..to is lost to everyone, merged with the gaps
// it overlaps or touches, and with its neighbours when no record is
// retained between them (which keeps the gaps fewer than the records).
func AddGap(s Store, r Retained, from, to uint64) error {
	if to <= s.Dropped() {
		return nil
	}
	from = max(from, s.Dropped()+1)
	// The gap before (or holding) from.
	if g, ok := s.GapAtOrBefore(from); ok && r.NoneBetween(g.To, from) {
		from, to = min(from, g.From), max(to, g.To)
	}
	// The gaps after from that it reaches.
	for {
		g, ok := s.GapAtOrAfter(from)
		if !ok || g.From > to+1 && !r.NoneBetween(to, g.From) {
			break
		}
		to = max(to, g.To)
		if err := s.DeleteGap(g.From); err != nil {
			return err
		}
	}
	return s.PutGap(Gap{from, to})
}
