package herald

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"slices"
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
	// ErrHubNotOpen means a hub was used before [Hub.Open].
	ErrHubNotOpen = errors.New("hub not open: call Open first")
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

// Hub routes published events to subscribers. Set the exported fields,
// then call [Hub.Open], which checks them and starts the hub: they are
// not read again, and nothing else works before it. A zero Hub opens as
// a single node with an in-memory history and the defaults. A Hub must
// not be copied after Open. Close it when done: it stops the hub's
// goroutines and ends every subscription.
//
// Every publish goes one way: into the hub's log (this node's History,
// or with a Broker the cluster's shared log), and from the log to the
// subscriber queues through one seam (see eventlog.go).
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

	// mu serialises publishing so every subscriber sees events in one
	// global order, and guards the subscription index and the epoch.
	mu     sync.Mutex
	opened bool
	closed bool
	log    eventLog
	// What Open read from the exported fields: they are not read again.
	history    History
	queueLimit int
	beatEvery  time.Duration
	epoch      string // the log's epoch: generated IDs are made of it
	publishSeq uint64 // numbers publishes so a subscriber matched twice gets an event once
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

// Open checks the hub's settings and starts it: with a Broker, the
// goroutines that read the shared log and report this node. It fails,
// and the hub stays unusable, if a setting cannot work: a negative
// QueueBytes, a History that is a nil pointer, has no usable epoch or is
// not healthy, or a Broker with a History other than a *MemoryHistory.
func (h *Hub) Open() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case h.closed:
		return ErrHubClosed
	case h.opened:
		return errors.New("herald: Hub.Open called twice")
	}
	if err := h.checkSettings(); err != nil {
		return err
	}
	if h.History == nil {
		h.History = NewMemoryHistory(Retention{})
	}
	h.subs = make(map[*Subscriber]struct{})
	h.byTopic = make(map[string]map[*Subscriber]struct{})
	h.scanned = make(map[*Subscriber]struct{})
	h.history, h.queueLimit, h.beatEvery = h.History, h.QueueBytes, h.Heartbeat
	if h.queueLimit == 0 {
		h.queueLimit = DefaultQueueBytes
	}
	if h.beatEvery == 0 {
		h.beatEvery = DefaultHeartbeat
	}
	h.epoch = h.history.Epoch()
	h.log = startEventLog(h)
	h.opened = true
	return nil
}

// checkSettings says why the exported fields cannot make a working hub.
func (h *Hub) checkSettings() error {
	if h.QueueBytes < 0 {
		return fmt.Errorf("herald: QueueBytes %d is negative", h.QueueBytes)
	}
	if h.History == nil {
		return nil
	}
	if v := reflect.ValueOf(h.History); v.Kind() == reflect.Pointer && v.IsNil() {
		return fmt.Errorf("herald: History is a nil %T", h.History)
	}
	if err := checkLogSettings(h.History, h.Broker); err != nil {
		return err
	}
	if e := h.History.Epoch(); !looksLikeEpoch(e) {
		return fmt.Errorf("herald: the history's epoch %q is not 12 characters of [A-Za-z0-9_] (see NewEpoch)", e)
	}
	if hc, ok := h.History.(HealthChecker); ok {
		if err := hc.Healthy(); err != nil {
			return fmt.Errorf("herald: history: %w", err)
		}
	}
	return nil
}

// usable says why the hub cannot take publishes or subscriptions now.
// h.mu must be held.
func (h *Hub) usableLocked() error {
	switch {
	case h.closed:
		return ErrHubClosed
	case !h.opened:
		return ErrHubNotOpen
	}
	return nil
}

// openLog returns the hub's log, or why it cannot be used.
func (h *Hub) openLog() (eventLog, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.usableLocked(); err != nil {
		return nil, err
	}
	return h.log, nil
}

// Subscribe registers a subscriber for the events matching any of
// selectors, from now on. The caller must drain it (see
// [Subscriber.Ready]) and call [Subscriber.Close] when done.
func (h *Hub) Subscribe(selectors ...Selector) (*Subscriber, error) {
	return h.SubscribeWith(SubscribeOptions{Selectors: selectors})
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
	// Wake, if set, replaces the Ready and Done channels, for drainers
	// that are not goroutines (a poller serving thousands of streams):
	// the hub calls it when the queue turns non-empty and when the
	// subscriber is removed (the drainer then learns it from
	// [Subscriber.Removed]). It runs while the hub holds its locks,
	// possibly before SubscribeWith returns: it must return at once and
	// must not call the hub or the Subscriber.
	Wake func()
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
	log, err := h.openLog()
	if err != nil {
		return nil, err
	}
	s := &Subscriber{
		hub:       h,
		subject:   opts.Subject,
		rights:    opts.Rights,
		connID:    opts.ConnectionID,
		selectors: selectors,
		limit:     h.queueLimit,
		wake:      wake,
	}
	for _, sel := range selectors {
		if t, ok := sel.(Topic); ok {
			s.topics = append(s.topics, string(t))
		} else {
			s.scanned = true
		}
	}

	// A publisher's ID is looked up before the hub's lock (for a store
	// whose lookup reads the disk, that costs more than the critical
	// section should); lookupFor checks under the lock that it still
	// holds.
	var pre idCheck
	checked := false
	known := func() bool {
		pre, checked = h.checkID(s, lastEventID), true
		return pre.pos != 0 && pre.visible
	}
	if lastEventID == "" || lastEventID == Earliest {
		known = nil
	}
	aheadLimit, err := log.place(opts.Context, lastEventID, known)
	if err != nil {
		return nil, err
	}
	if known != nil && !checked {
		known()
	}

	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.usableLocked(); err != nil {
		return nil, err
	}
	s.epoch = h.epoch
	if lastEventID != "" {
		// Under the publish lock: every event up to the head is in the
		// history, every later one will be queued live.
		head := log.headLocked()
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
			s.reset = &Reset{Reason: reason, LastEventID: lastEventID, ResumeID: generatedID{h.epoch, head}.String()}
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
	if h.stopBeat == nil && h.beatEvery > 0 {
		h.stopBeat = make(chan struct{})
		go h.beat(h.beatEvery, h.stopBeat)
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
	log, err := h.openLog()
	if err != nil {
		return nil, err
	}
	ids := make([]string, len(events))
	recs := make([]Record, len(events))
	now := time.Now()
	for i, e := range events {
		// Histories copy what they keep, so the caller's slices are
		// not retained.
		recs[i] = Record{ID: e.ID, Topics: e.Topics, Type: e.Type, Data: e.Data, Retry: e.Retry, Time: now,
			Private: e.Private, ToUsers: e.ToUsers, ToConnections: e.ToConnections}
	}
	if err := log.append(ctx, recs, ids); err != nil {
		return nil, err
	}
	return ids, nil
}

// duplicateID refuses a publisher's ID that a retained event of hist
// carries, or that recs carry twice: an ID is how a client says where it
// is, and two events with one ID would make resuming after it ambiguous.
func duplicateID(hist History, recs []Record) error {
	for i := range recs {
		if id := recs[i].ID; id != "" {
			if _, dup := hist.Lookup(id); dup || slices.ContainsFunc(recs[:i], func(r Record) bool { return r.ID == id }) {
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
		frames, id = appendFrame(frames, h.epoch, &recs[i])
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
// publisher's own, or the one generated from epoch and r's position.
func appendFrame(dst []byte, epoch string, r *Record) ([]byte, string) {
	id := r.ID
	if id == "" {
		id = generatedID{epoch, r.Position}.String()
	}
	out, err := sse.AppendEvent(dst, &sse.Event{ID: id, Type: r.Type, Data: r.Data, Retry: r.Retry})
	if err != nil {
		// Validate accepted what the encoder refuses: a bug, not bad input.
		panic(fmt.Sprintf("herald: validated event failed to encode: %v", err))
	}
	return out, id
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
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil
	}
	h.closed = true
	if h.log != nil {
		h.log.stop()
	}
	h.endAllLocked(ErrHubClosed)
	if h.stopBeat != nil {
		close(h.stopBeat)
	}
	if h.expiryTimer != nil {
		h.expiryTimer.Stop()
	}
	return nil
}

// The hub as its log reaches it (see logSink).

func (h *Hub) lockOpen() error {
	h.mu.Lock()
	if err := h.usableLocked(); err != nil {
		h.mu.Unlock()
		return err
	}
	return nil
}

func (h *Hub) unlock() { h.mu.Unlock() }

func (h *Hub) setEpochLocked(epoch string) { h.epoch = epoch }

func (h *Hub) endAllLocked(err error) int {
	n := len(h.subs)
	for s := range h.subs {
		h.removeLocked(s)
		s.finish(err)
	}
	return n
}

func (h *Hub) subscribers() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.subs)
}
