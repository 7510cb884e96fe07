package herald

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/herald-sse/herald/sse"
)

// Defaults used when the corresponding [Hub] field is zero.
const (
	// DefaultQueueBytes bounds a subscriber's queue: room for a burst of
	// about ten thousand typical events, or one large event, while the
	// queue itself only holds references to frames shared by all
	// subscribers.
	DefaultQueueBytes = 1 << 20
	// DefaultHeartbeat is short enough for proxies that close streams idle
	// for 30 s or more.
	DefaultHeartbeat = 15 * time.Second
)

// Errors reported by [Subscriber.Err] and the hub's methods.
var (
	// ErrSlowSubscriber means the subscriber's queue overflowed because its
	// reader did not keep up; it was dropped so that nobody else waits.
	ErrSlowSubscriber = errors.New("subscriber too slow: queue overflowed")
	// ErrHubClosed means the hub was closed (the server is shutting down).
	ErrHubClosed = errors.New("hub closed")
	// ErrNoSelector means Subscribe was called without any selector.
	ErrNoSelector = errors.New("no topic selector")
	// ErrDuplicateID means a publisher-supplied ID is already carried by
	// a retained event (or twice in one publish): resuming after it would
	// be ambiguous. A publisher retrying a publish that did succeed gets
	// it too.
	ErrDuplicateID = errors.New("event ID already used by a retained event")
	// ErrSubscriptionExpired means the subscriber reached its
	// SubscribeOptions.Expires (a stream's token expired); what was
	// queued before can still be drained.
	ErrSubscriptionExpired = errors.New("subscription expired")
)

// Hub routes published events to subscribers. The zero value is ready to
// use; set the exported fields before the first call. A Hub must not be
// copied after first use. Close it when done: it stops the heartbeat
// goroutine and ends every subscription.
type Hub struct {
	// QueueBytes bounds what may wait in one subscriber's queue. An event
	// that would push a non-empty queue past it drops the subscriber. Zero
	// means DefaultQueueBytes.
	QueueBytes int
	// Heartbeat is how often a comment is queued to subscribers that were
	// sent nothing since the previous beat, so a stream is never silent for
	// more than twice this. Zero means DefaultHeartbeat; negative disables.
	Heartbeat time.Duration
	// History keeps published events for subscribers that resume. Nil
	// means a MemoryHistory with the default retention. The hub does not
	// close it.
	//
	// With a Broker, History must be nil or a *MemoryHistory: it then
	// holds this node's copy of the shared log, under the log's epoch.
	History History

	// Broker, if set, makes the hub a node of a cluster: publishes go to
	// the broker's shared log, and the hub delivers what it reads back
	// from the log, so that every node delivers the same events, in the
	// same order, with the same IDs. The hub does not close it.
	Broker Broker
	// NodeID names this node to the others (see [Hub.Nodes]). Empty
	// means the host name and a random suffix.
	NodeID string
	// AnnounceEvery is how often a clustered node reports its status to
	// the broker. Zero means DefaultAnnounceEvery.
	AnnounceEvery time.Duration
	// SyncWait bounds how long a subscription may wait for a clustered
	// node to read the shared log far enough to place it (after the
	// node started, or up to an event published through a node ahead of
	// it). Zero means DefaultSyncWait.
	SyncWait time.Duration
	// Logger receives a clustered node's broker outages and recoveries.
	// Nil means slog.Default().
	Logger *slog.Logger

	initOnce sync.Once
	idPrefix string // the history's epoch and "-": generated IDs are idPrefix + position; guarded by mu
	cluster  *clusterState

	// mu serialises publishing so every subscriber sees events in one
	// global order, and guards the subscription index.
	mu         sync.Mutex
	closed     bool
	publishSeq uint64 // numbers publishes so a subscriber matched twice gets an event once
	idSeq      uint64
	subs       map[*Subscriber]struct{}
	byTopic    map[string]map[*Subscriber]struct{} // subscribers with Topic selectors
	scanned    map[*Subscriber]struct{}            // subscribers with other selectors
	stopBeat   chan struct{}
	// Subscribers with an expiry, earliest first, and the one timer set
	// for the earliest (see expiry.go).
	expiries    expiryHeap
	expiryTimer *time.Timer
	expiryDue   int64 // unix nanoseconds the timer is set for; 0: not set

	published atomic.Uint64
	delivered atomic.Uint64
	dropped   atomic.Uint64
	expired   atomic.Uint64
	queued    atomic.Int64 // bytes in all queues, kept by the queues so Stats need not visit them
}

func (h *Hub) init() {
	h.initOnce.Do(func() {
		if h.History == nil {
			h.History = NewMemoryHistory(Retention{})
		}
		h.idPrefix = h.History.Epoch() + "-"
		h.subs = make(map[*Subscriber]struct{})
		h.byTopic = make(map[string]map[*Subscriber]struct{})
		h.scanned = make(map[*Subscriber]struct{})
		if h.Broker != nil {
			h.startCluster()
		}
	})
}

func (h *Hub) queueBytes() int {
	if h.QueueBytes > 0 {
		return h.QueueBytes
	}
	return DefaultQueueBytes
}

func (h *Hub) heartbeat() time.Duration {
	if h.Heartbeat == 0 {
		return DefaultHeartbeat
	}
	return h.Heartbeat
}

// Subscribe registers a subscriber for the events matching any of
// selectors, from now on. The caller must drain it (see
// [Subscriber.Ready]) and call [Subscriber.Close] when done.
func (h *Hub) Subscribe(selectors ...Selector) (*Subscriber, error) {
	return h.SubscribeWith(SubscribeOptions{Selectors: selectors})
}

// SubscribeFunc is Subscribe for drainers that are not goroutines, such
// as a poller serving thousands of connections: see [SubscribeOptions].Wake.
func (h *Hub) SubscribeFunc(wake func(), selectors ...Selector) (*Subscriber, error) {
	if wake == nil {
		return nil, errors.New("herald: SubscribeFunc with a nil wake function")
	}
	return h.SubscribeWith(SubscribeOptions{Selectors: selectors, Wake: wake})
}

// SubscribeOptions says what a subscriber receives, from where, and how it
// learns of new events.
type SubscribeOptions struct {
	// Selectors choose the events; at least one.
	Selectors []Selector
	// LastEventID resumes after that event: the subscriber first replays
	// what it missed (see [Subscriber.Replay]), then gets live events,
	// with no gap and no duplicate. Empty means live events only;
	// [Earliest] replays everything retained. An ID the hub cannot resume
	// from (unknown, expired, or from another history) starts live, and
	// [Subscriber.Reset] says why.
	LastEventID string
	// Subject is the authenticated user (a token's sub), for events sent
	// to users (Event.ToUsers). Empty: anonymous.
	Subject string
	// Rights are the selectors the subscriber is entitled to: it receives
	// a private event only if one of them matches one of its topics. Nil:
	// public events only.
	Rights []Selector
	// ConnectionID names the subscription for events sent to connections
	// (Event.ToConnections). Empty: none can be.
	ConnectionID string
	// Expires, if not zero, ends the subscription at that instant with
	// [ErrSubscriptionExpired] (a stream must not outlive the token it
	// was opened with); one already past ends it at once. All of a
	// hub's expiries share one timer.
	Expires time.Time
	// Context, if set, bounds how long a clustered hub may make the
	// subscription wait (for the node to read the shared log far enough
	// to place it); the wait is never longer than the hub's SyncWait.
	Context context.Context
	// Wake, if set, replaces the Ready and Done channels: the hub calls it
	// when the queue turns non-empty and when the subscriber is removed
	// ([Subscriber.Removed] tells). It runs while the hub holds its locks,
	// possibly before SubscribeWith returns: it must return at once and
	// must not call the hub or the Subscriber.
	Wake func()
}

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

// SubscribeWith registers a subscriber as opts describe.
func (h *Hub) SubscribeWith(opts SubscribeOptions) (*Subscriber, error) {
	return h.subscribe(opts)
}

func (h *Hub) subscribe(opts SubscribeOptions) (*Subscriber, error) {
	wake, selectors, lastEventID := opts.Wake, opts.Selectors, opts.LastEventID
	if len(selectors) == 0 {
		return nil, ErrNoSelector
	}
	for _, sel := range selectors {
		if sel == nil {
			// A nil selector would make every later publish panic.
			return nil, fmt.Errorf("%w: nil selector", ErrInvalidSelector)
		}
	}
	h.init()
	s := &Subscriber{
		hub:       h,
		subject:   opts.Subject,
		rights:    opts.Rights,
		connID:    opts.ConnectionID,
		selectors: selectors,
		limit:     h.queueBytes(),
		wake:      wake,
	}
	for _, sel := range selectors {
		if t, ok := sel.(Topic); ok {
			s.topics = append(s.topics, string(t))
		} else {
			s.scanned = true
		}
	}

	aheadLimit := uint64(0)
	if h.cluster != nil {
		var err error
		if aheadLimit, err = h.cluster.prepareSubscribe(h, s, opts); err != nil {
			return nil, err
		}
	}

	var pre idCheck
	if lastEventID != "" && lastEventID != Earliest {
		pre = h.checkID(s, lastEventID)
	}

	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, ErrHubClosed
	}
	s.idPrefix = h.idPrefix
	if lastEventID != "" {
		// Under the publish lock: every event up to the head is in the
		// history, every later one will be queued live.
		head := h.History.Head()
		if h.cluster != nil {
			head = h.cluster.readLocked() // past unreadable entries too: they are lost, not ahead
		}
		after, reason := h.resumePoint(s, lastEventID, pre, head, aheadLimit)
		if reason == resumeAhead {
			// A clustered node behind the one that sent the event:
			// what follows it will be read from the log, and what
			// precedes it must not be sent again.
			s.skipThrough, reason = after, ""
			after = head
		}
		if reason != "" {
			// Even with nothing published yet the reset carries an ID
			// (position 0), so a client that drops before the first
			// event still resumes without missing what came meanwhile.
			s.reset = &Reset{Reason: reason, LastEventID: lastEventID, ResumeID: h.idPrefix + strconv.FormatUint(head, 36)}
		} else {
			s.replayAfter, s.replayUpTo = after, head
		}
	}
	h.subs[s] = struct{}{}
	for _, t := range s.topics {
		set := h.byTopic[t]
		if set == nil {
			set = make(map[*Subscriber]struct{})
			h.byTopic[t] = set
		}
		set[s] = struct{}{}
	}
	if s.scanned {
		h.scanned[s] = struct{}{}
	}
	if !opts.Expires.IsZero() {
		s.expires = expiryUnixNano(opts.Expires)
		h.addExpiryLocked(s)
	}
	if h.stopBeat == nil && h.heartbeat() > 0 {
		h.stopBeat = make(chan struct{})
		go h.beat(h.heartbeat(), h.stopBeat)
	}
	return s, nil
}

// Publish validates, numbers, encodes and delivers events, in order. Either
// every event is published or, when one is invalid, none is and the error
// (wrapping [ErrInvalidEvent]) names it. It returns the ID of each event:
// the one it carried, or the one the hub assigned.
//
// Publish never waits for subscribers. A clustered hub's Publish returns
// once the broker has acknowledged the events; see [Hub.PublishContext].
func (h *Hub) Publish(events ...Event) ([]string, error) {
	return h.PublishContext(context.Background(), events...)
}

// PublishContext is Publish with a context bounding the wait for a
// clustered hub's broker. When the broker cannot be reached, the error
// wraps [ErrBrokerUnavailable] and the events may or may not have been
// published: the publisher should retry, with its own IDs to make the
// retry safe.
func (h *Hub) PublishContext(ctx context.Context, events ...Event) ([]string, error) {
	for i := range events {
		if err := events[i].Validate(); err != nil {
			if len(events) > 1 {
				return nil, fmt.Errorf("event %d: %w", i, err)
			}
			return nil, err
		}
	}
	h.init()
	ids := make([]string, len(events))
	recs := make([]Record, len(events))
	now := time.Now()
	for i, e := range events {
		// Histories copy what they keep, so the caller's slices are
		// not retained.
		recs[i] = Record{ID: e.ID, Topics: e.Topics, Type: e.Type, Data: e.Data, Retry: e.Retry, Time: now,
			Private: e.Private, ToUsers: e.ToUsers, ToConnections: e.ToConnections}
	}

	if h.cluster != nil {
		if err := h.cluster.publish(ctx, h, recs, ids); err != nil {
			return nil, err
		}
		return ids, nil
	}
	durable, err := h.publishLocked(recs, ids)
	if err != nil {
		return nil, err
	}
	if durable != nil {
		if err := durable(); err != nil {
			return nil, fmt.Errorf("herald: history: %w", err)
		}
	}
	return ids, nil
}

// publishLocked appends recs to the history and queues them to
// subscribers, under the publish lock, and returns the history's wait for
// durability, to be called after the lock is released.
func (h *Hub) publishLocked(recs []Record, ids []string) (func() error, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, ErrHubClosed
	}
	if err := h.duplicateID(recs); err != nil {
		return nil, err
	}
	durable, err := h.History.Append(recs)
	if err != nil {
		return nil, fmt.Errorf("herald: history: %w", err)
	}
	h.deliverLocked(recs, ids)
	return durable, nil
}

// duplicateID refuses a publisher's ID that a retained event carries, or
// that recs carry twice: an ID is how a client says where it is, and two
// events with one ID would make resuming after it ambiguous.
func (h *Hub) duplicateID(recs []Record) error {
	for i := range recs {
		if id := recs[i].ID; id != "" {
			if _, dup := h.History.Lookup(id); dup || slices.ContainsFunc(recs[:i], func(r Record) bool { return r.ID == id }) {
				return fmt.Errorf("%w: %q", ErrDuplicateID, id)
			}
		}
	}
	return nil
}

// deliverLocked encodes recs, which the history holds, and queues them
// to subscribers; ids, if not nil, receives their IDs. h.mu must be held.
func (h *Hub) deliverLocked(recs []Record, ids []string) {
	var frames []byte
	for i := range recs {
		start := len(frames)
		var id string
		frames, id = appendFrame(frames, h.idPrefix, &recs[i])
		if ids != nil {
			ids[i] = id
		}
		// A frame is shared by every queue it reaches; the full slice
		// expression keeps the next append from writing into it.
		h.fanOutLocked(&recs[i], frames[start:len(frames):len(frames)])
	}
	h.published.Add(uint64(len(recs)))
}

// appendFrame encodes r as it goes on the wire and returns its ID: the
// publisher's own, or one made of idPrefix (the history's epoch and "-")
// and r's position.
func appendFrame(dst []byte, idPrefix string, r *Record) ([]byte, string) {
	id := r.ID
	if id == "" {
		id = idPrefix + strconv.FormatUint(r.Position, 36)
	}
	out, err := sse.AppendEvent(dst, &sse.Event{ID: id, Type: r.Type, Data: r.Data, Retry: r.Retry})
	if err != nil {
		// Validate accepted what the encoder refuses: a bug, not bad input.
		panic(fmt.Sprintf("herald: validated event failed to encode: %v", err))
	}
	return out, id
}

// looksLikeEpoch reports whether s could be a history's epoch (see
// [NewEpoch]), so that an ID made of it is another history's rather than
// one nobody issued.
func looksLikeEpoch(s string) bool {
	if len(s) != epochLength {
		return false
	}
	for _, c := range []byte(s) {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_') {
			return false
		}
	}
	return true
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
			if h.History.Lost(mid, head, selectors) {
				lo = mid + 1
			} else {
				hi = mid
			}
		}
		return lo, ""
	}
	pos, ok := h.lookupFor(s, lastEventID, pre)
	if !ok {
		i := strings.LastIndexByte(lastEventID, '-')
		if i < 0 {
			return 0, ResetUnknown
		}
		p, err := strconv.ParseUint(lastEventID[i+1:], 36, 64)
		switch {
		case err != nil:
			return 0, ResetUnknown
		case lastEventID[:i+1] != h.idPrefix:
			if looksLikeEpoch(lastEventID[:i]) {
				return 0, ResetForeign
			}
			return 0, ResetUnknown
		case p > head && p <= aheadLimit:
			return p, resumeAhead
		case p > head:
			return 0, ResetUnknown // not issued yet: from a store that lost its tail
		}
		pos = p
	}
	if h.History.Lost(pos, head, selectors) {
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
	if m, ok := h.History.(recordLookup); ok {
		r, ok := m.lookupRecord(id)
		if !ok {
			return idCheck{}
		}
		return idCheck{pos: r.Position, visible: !r.restricted() || s.mayReceive(&r)}
	}
	pos, ok := h.History.Lookup(id)
	if !ok {
		return idCheck{}
	}
	c := idCheck{pos: pos}
	// Records never change, only leave: the one at pos is the event
	// (or, gone since, a miss like any other).
	err := h.History.Replay(pos-1, pos, everything, func(recs []Record) error {
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
	pos, ok := h.History.Lookup(id)
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

// fanOutLocked queues frame to each subscriber matching one of rec's
// topics and allowed to see it, once. h.mu must be held.
func (h *Hub) fanOutLocked(rec *Record, frame []byte) {
	topics := rec.Topics
	restricted := rec.restricted() // once per publish, not per subscriber
	h.publishSeq++
	seq := h.publishSeq
	var n uint64
	deliver := func(s *Subscriber) {
		if s.lastPublish == seq {
			return
		}
		s.lastPublish = seq
		if rec.Position <= s.skipThrough || restricted && !s.mayReceive(rec) {
			return
		}
		if s.enqueue(frame) {
			n++
			return
		}
		h.removeLocked(s)
		h.dropped.Add(1)
		s.finish(ErrSlowSubscriber)
	}
	for _, t := range topics {
		for s := range h.byTopic[t] {
			deliver(s)
		}
	}
	for s := range h.scanned {
		if s.lastPublish == seq {
			continue
		}
		for _, t := range topics {
			if s.match(t) {
				deliver(s)
				break
			}
		}
	}
	h.delivered.Add(n)
}

// removeLocked takes s out of the index. h.mu must be held.
func (h *Hub) removeLocked(s *Subscriber) {
	if _, ok := h.subs[s]; !ok {
		return
	}
	delete(h.subs, s)
	h.removeExpiryLocked(s)
	for _, t := range s.topics {
		set := h.byTopic[t]
		delete(set, s)
		if len(set) == 0 {
			delete(h.byTopic, t)
		}
	}
	delete(h.scanned, s)
}

var heartbeatFrame = sse.AppendComment(nil, "")

// beat queues a heartbeat comment to every subscriber that was sent
// nothing since the previous tick. One timer serves the whole hub.
func (h *Hub) beat(every time.Duration, stop <-chan struct{}) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			h.beatOnce()
		}
	}
}

func (h *Hub) beatOnce() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.subs {
		s.heartbeat(heartbeatFrame)
	}
}

// Close disconnects every subscriber with [ErrHubClosed] and refuses new
// subscriptions and publishes. What subscribers had queued can still be
// drained, so streams can end cleanly. Close is idempotent.
func (h *Hub) Close() error {
	h.init()
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil
	}
	h.closed = true
	if h.cluster != nil {
		h.cluster.stop()
	}
	for s := range h.subs {
		h.removeLocked(s)
		s.finish(ErrHubClosed)
	}
	if h.stopBeat != nil {
		close(h.stopBeat)
	}
	if h.expiryTimer != nil {
		h.expiryTimer.Stop()
	}
	return nil
}

// Stats is a snapshot of a hub's counters.
type Stats struct {
	Subscribers int    // subscribers now registered
	Topics      int    // distinct topics subscribed to by name
	Published   uint64 // events published since the hub started
	Delivered   uint64 // events queued to subscribers, one per subscriber reached
	Dropped     uint64 // subscribers dropped for overflowing their queue
	Expired     uint64 // subscribers ended at their expiry (SubscribeOptions.Expires)
	QueuedBytes int    // bytes waiting in all subscriber queues
}

// Stats returns the hub's current counters.
func (h *Hub) Stats() Stats {
	h.init()
	h.mu.Lock()
	st := Stats{Subscribers: len(h.subs), Topics: len(h.byTopic)}
	h.mu.Unlock()
	st.QueuedBytes = int(h.queued.Load())
	st.Published = h.published.Load()
	st.Delivered = h.delivered.Load()
	st.Dropped = h.dropped.Load()
	st.Expired = h.expired.Load()
	return st
}
