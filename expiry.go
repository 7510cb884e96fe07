package herald

import (
	"container/heap"
	"time"
)

// Subscriptions with an end (SubscribeOptions.Expires, a token's exp) are
// kept in a min-heap by expiry, and one timer per hub is set for the
// earliest: however many subscribers there are, the hub holds one timer,
// armed only while some subscriber has an expiry, and no goroutine. When
// it fires, every subscriber now due is removed with
// ErrSubscriptionExpired and the timer is set for the next one, so each
// ends when its expiry comes, not at the next heartbeat.

// expiryHeap orders subscribers by expiry; each knows its place in it
// (expiryIndex), so one that leaves early is taken out in O(log n).
type expiryHeap []*Subscriber

func (q expiryHeap) Len() int           { return len(q) }
func (q expiryHeap) Less(i, j int) bool { return q[i].expires < q[j].expires }
func (q expiryHeap) Swap(i, j int) {
	q[i], q[j] = q[j], q[i]
	q[i].expiryIndex, q[j].expiryIndex = i+1, j+1
}

func (q *expiryHeap) Push(x any) {
	s := x.(*Subscriber)
	*q = append(*q, s)
	s.expiryIndex = len(*q)
}

func (q *expiryHeap) Pop() any {
	old := *q
	s := old[len(old)-1]
	old[len(old)-1] = nil
	*q = old[:len(old)-1]
	if cap(*q) > 64 && len(*q) < cap(*q)/4 {
		// After a wave of expiries, do not keep its high-water mark.
		*q = append(expiryHeap(nil), *q...)
	}
	s.expiryIndex = 0
	return s
}

// addExpiryLocked schedules s's end at s.expires. h.mu must be held.
func (h *Hub) addExpiryLocked(s *Subscriber) {
	heap.Push(&h.expiries, s)
	h.armExpiryLocked()
}

// removeExpiryLocked unschedules s. The timer may stay set for it: it
// then fires once, finds nothing due and is set for the next. h.mu must
// be held.
func (h *Hub) removeExpiryLocked(s *Subscriber) {
	if s.expiryIndex > 0 {
		heap.Remove(&h.expiries, s.expiryIndex-1)
	}
}

// armExpiryLocked sets the hub's timer for the earliest expiry, unless it
// is already set for that time or earlier. h.mu must be held.
func (h *Hub) armExpiryLocked() {
	if len(h.expiries) == 0 {
		return
	}
	next := h.expiries[0].expires
	if h.expiryDue != 0 && h.expiryDue <= next {
		return
	}
	d := time.Duration(next - time.Now().UnixNano())
	if h.expiryTimer == nil {
		h.expiryTimer = time.AfterFunc(d, h.expire)
	} else {
		h.expiryTimer.Reset(d)
	}
	h.expiryDue = next
}

// expire ends every subscriber whose expiry has come, then sets the timer
// for the next. It runs on the timer's own short-lived goroutine.
func (h *Hub) expire() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.expiryDue = 0
	if h.closed {
		return
	}
	// Expiries are wall-clock instants (a token's exp): compare with the
	// wall clock, and if it says "not yet" the timer is simply set again.
	now := time.Now().UnixNano()
	for len(h.expiries) > 0 && h.expiries[0].expires <= now {
		s := h.expiries[0]
		h.removeLocked(s) // takes it out of the heap too
		h.expired.Add(1)
		s.finish(ErrSubscriptionExpired)
	}
	h.armExpiryLocked()
}

// expiryUnixNano is t as the heap keeps it: positive, so that 0 can mean
// "no expiry" (any t before 1970 has passed anyway).
func expiryUnixNano(t time.Time) int64 {
	return max(t.UnixNano(), 1)
}
