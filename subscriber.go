package herald

import (
	"slices"
	"sync"
)

// maxIdleQueueCap is the largest queue backing array a drained subscriber
// keeps. Idle streams vastly outnumber busy ones, so a burst must not leave
// its high-water mark allocated for hours: at 100,000 streams, every 24 B
// slot kept costs 2.4 MB. Reallocating after a larger burst is cheap next
// to the write it feeds.
const maxIdleQueueCap = 4

// Subscriber is one subscription: a bounded queue of encoded events that
// the hub fills and a stream writer drains.
type Subscriber struct {
	hub       *Hub
	selectors []Selector
	topics    []string // names of the Topic selectors, indexed by the hub
	scanned   bool     // has selectors the hub must ask about every topic

	lastPublish uint64 // guarded by hub.mu

	// Who the subscriber is, for private and targeted events.
	subject string
	rights  []Selector
	connID  string

	// Set at subscription, then read-only: what to replay before the
	// queue, or why there is nothing to replay.
	replayAfter, replayUpTo uint64
	reset                   *Reset
	epoch                   string // the log's epoch when subscribed, for replayed IDs
	// skipThrough is, on a clustered node that had not yet read the
	// event the subscriber resumed after, that event's position: live
	// events up to it were sent already. Guarded by hub.mu.
	skipThrough uint64
	// When the subscription ends (unix nanoseconds; 0: never) and its
	// place in the hub's expiry heap (plus one; 0: not in it). Guarded by
	// hub.mu.
	expires     int64
	expiryIndex int

	mu       sync.Mutex
	queue    [][]byte // frames shared with every other subscriber: never modified
	queued   int      // bytes in queue
	limit    int
	wroteAny bool // something was queued since the last heartbeat tick
	closed   bool
	err      error

	// Exactly one way of learning about new events: wake, for drainers
	// that are not goroutines, or the channels, made on first use so a
	// subscriber served by wake carries none.
	wake  func()
	ready chan struct{}
	done  chan struct{}
}

// closedChan is Done's answer for a subscriber that was removed before
// anyone asked for the channel.
var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// Selectors returns the selectors the subscriber was created with.
func (s *Subscriber) Selectors() []Selector { return s.selectors }

// Ready is signalled when the queue turns non-empty. One signal may stand
// for many events: after receiving from it, Drain everything.
func (s *Subscriber) Ready() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ready == nil {
		s.ready = make(chan struct{}, 1)
		if s.queued > 0 {
			s.ready <- struct{}{} // queued before anyone listened
		}
	}
	return s.ready
}

// Done is closed when the subscriber is removed from the hub: by Close, by
// the hub closing, for being too slow, or at its expiry. Err tells which. Events queued
// before that can still be drained.
func (s *Subscriber) Done() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done == nil {
		if s.closed {
			return closedChan
		}
		s.done = make(chan struct{})
	}
	return s.done
}

// Removed reports, in one locked read, what Done and Err tell: whether
// the subscriber has left the hub and why. It is for drainers woken by
// SubscribeOptions.Wake instead of channels (the stream engine), which
// ask it after each wake rather than select on Done.
func (s *Subscriber) Removed() (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed, s.err
}

// Err returns why the hub removed the subscriber: [ErrSlowSubscriber],
// [ErrHubClosed], [ErrSubscriptionExpired], [ErrResync], or nil while
// subscribed or after Close.
func (s *Subscriber) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Reset returns why the subscriber could not resume after the
// LastEventID it asked for, or nil if it resumed (or did not ask).
func (s *Subscriber) Reset() *Reset { return s.reset }

// Replay writes, through fn, the encoded events the subscriber missed:
// those after its LastEventID up to the last one published before it
// subscribed, in order, a batch at a time. Call it once, before draining
// the queue, which holds only later events: together they are gapless and
// without duplicates. fn must not keep the frames. It returns
// [ErrHistoryLost] if retention removed events it still had to send; the
// stream should then end so the client resumes again. It stops with the
// subscriber's Err if the hub removes it meanwhile for being slow, for a
// resync, or at its expiry.
func (s *Subscriber) Replay(fn func(frames [][]byte) error) error {
	if s.replayUpTo <= s.replayAfter {
		return nil
	}
	h := s.hub
	var buf []byte
	var frames [][]byte
	return h.history.Replay(s.replayAfter, s.replayUpTo, s.selectors, func(recs []Record) error {
		if removed, why := s.Removed(); removed && (why == ErrSlowSubscriber || why == ErrResync || why == ErrSubscriptionExpired) {
			// Live events overflowed the queue while the replay ran, the
			// node lost its place in the log, or the subscription
			// expired: the stream ends anyway, so stop sending.
			return why
		}
		buf, frames = buf[:0], frames[:0]
		for i := range recs {
			if recs[i].restricted() && !s.mayReceive(&recs[i]) {
				continue // not for this subscriber, on replay as live
			}
			start := len(buf)
			buf, _ = appendFrame(buf, s.epoch, &recs[i])
			frames = append(frames, buf[start:])
		}
		// buf may have moved while growing: slice the frames again from
		// its final array.
		off := 0
		for i, f := range frames {
			frames[i] = buf[off : off+len(f)]
			off += len(f)
		}
		if len(frames) == 0 {
			return nil
		}
		return fn(frames)
	})
}

// Drain moves every queued frame to the end of frames and returns the
// extended slice. The frames are shared with other subscribers: write them,
// never modify them. Handing over the shared frames instead of copying them
// into one buffer per stream keeps a broadcast's memory independent of the
// number of streams that are still writing it. Only one goroutine may
// drain a subscriber.
func (s *Subscriber) Drain(frames [][]byte) [][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	frames = append(frames, s.queue...)
	clear(s.queue)
	if cap(s.queue) > maxIdleQueueCap {
		s.queue = nil
	} else {
		s.queue = s.queue[:0]
	}
	s.hub.queued.Add(-int64(s.queued))
	s.queued = 0
	return frames
}

// Close unsubscribes and discards what is still queued. Further events are
// not queued; Done is closed.
// Close is idempotent and safe to call from any goroutine.
func (s *Subscriber) Close() error {
	h := s.hub
	h.mu.Lock()
	h.removeLocked(s)
	h.mu.Unlock()
	s.finish(nil)
	// Whatever is still queued will not be drained by a closed
	// subscriber's owner: release it, and its share of the hub's count.
	s.mu.Lock()
	h.queued.Add(-int64(s.queued))
	clear(s.queue)
	s.queue, s.queued = nil, 0
	s.mu.Unlock()
	return nil
}

// mayReceive reports whether the subscriber may see rec, a private or
// targeted event that matches its selectors.
func (s *Subscriber) mayReceive(rec *Record) bool {
	if rec.Private && !Matches(s.rights, rec.Topics) {
		return false
	}
	if len(rec.ToUsers)+len(rec.ToConnections) == 0 {
		return true
	}
	return s.subject != "" && slices.Contains(rec.ToUsers, s.subject) ||
		s.connID != "" && slices.Contains(rec.ToConnections, s.connID)
}

func (s *Subscriber) match(topic string) bool {
	for _, sel := range s.selectors {
		if sel.Match(topic) {
			return true
		}
	}
	return false
}

// enqueue appends a frame unless that would overflow the queue, in which
// case it reports false. A frame larger than the whole limit still fits an
// empty queue, so one big event does not drop every subscriber.
func (s *Subscriber) enqueue(frame []byte) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return true
	}
	if s.queued > 0 && s.queued+len(frame) > s.limit {
		return false
	}
	wasEmpty := s.queued == 0
	s.queue = append(s.queue, frame)
	s.queued += len(frame)
	s.hub.queued.Add(int64(len(frame)))
	s.wroteAny = true
	if wasEmpty {
		s.signal()
	}
	return true
}

// heartbeat queues frame if nothing was queued since the previous call
// and nothing is waiting: pending data will reach the client anyway, and a
// stalled client must not grow its queue by a beat per tick.
func (s *Subscriber) heartbeat(frame []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.wroteAny && s.queued == 0 && !s.closed {
		s.queue = append(s.queue, frame)
		s.queued += len(frame)
		s.hub.queued.Add(int64(len(frame)))
		s.signal()
	}
	s.wroteAny = false
}

// signal wakes the drainer, when the queue turns non-empty or the
// subscriber is removed, without ever blocking the hub. s.mu must be held.
func (s *Subscriber) signal() {
	if s.wake != nil {
		s.wake()
		return
	}
	select {
	case s.ready <- struct{}{}: // a nil channel (nobody listening yet) is skipped
	default:
	}
}

// finish marks the subscriber removed for reason err. Only the first call
// counts.
func (s *Subscriber) finish(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.closed = true
	s.err = err
	if err == ErrSlowSubscriber {
		// Nobody will read this backlog: the stream is cut and the client
		// resumes by reconnecting.
		clear(s.queue)
		s.hub.queued.Add(-int64(s.queued))
		s.queue, s.queued = nil, 0
	}
	if s.done != nil {
		close(s.done)
	}
	if s.wake != nil {
		s.wake()
	}
}
