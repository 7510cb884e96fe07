package herald

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// DefaultAnnounceEvery is how often a clustered node reports its status:
// often enough that GET /cluster is current, rarely enough to cost the
// broker nothing.
const DefaultAnnounceEvery = 2 * time.Second

// DefaultSyncWait bounds how long a subscription waits for a clustered
// node to read the log: at start, or up to an event published through
// another node.
const DefaultSyncWait = 10 * time.Second

// resumeAhead is resumePoint's answer for a generated ID of this log that
// the node has not read yet: internal, never a Reset reason.
const resumeAhead = "ahead"

// Reconnecting to a broker backs off between these bounds.
const (
	minBackoff = 50 * time.Millisecond
	maxBackoff = 2 * time.Second
)

// clusterState is what a hub with a Broker adds: the goroutines that read
// the shared log and report the node's status, and what they know.
type clusterState struct {
	broker Broker
	node   string
	log    *slog.Logger
	mirror *MemoryHistory // the hub's History
	every  time.Duration
	wait   time.Duration
	ctx    context.Context
	cancel context.CancelFunc
	synced chan struct{} // closed once the node has read the log up to its head at start

	// Guarded by the hub's mu.
	target      uint64 // the log's head at start, in targetEpoch
	targetEpoch string
	through     uint64        // read up to here: the copy's head, or past it when the newest entries were unreadable
	applied     chan struct{} // closed, then replaced, after each batch is delivered

	// The broker's health as the follower and the announcer see it:
	// either failing makes the node not ready. Only the follower's
	// success clears the follower's failure, so a broker that answers
	// status calls while the log cannot be read is not "ready".
	mu             sync.Mutex
	followErr      error     // why the last Follow failed, until it reads again
	probeErr       error     // why the last status call failed
	followingSince time.Time // when the running Follow started; zero when none runs
	hasRead        bool      // a Follow has read, or run healthily: until then the node is not ready
}

func (h *Hub) startCluster() {
	mirror, ok := h.History.(*MemoryHistory)
	if !ok {
		panic(fmt.Sprintf("herald: a Hub with a Broker keeps its copy of the log in a *MemoryHistory, not a %T", h.History))
	}
	node := h.NodeID
	if node == "" {
		host, _ := os.Hostname()
		node = host + "-" + NewEpoch()[:4]
	}
	logger := h.Logger
	if logger == nil {
		logger = slog.Default()
	}
	every := h.AnnounceEvery
	if every <= 0 {
		every = DefaultAnnounceEvery
	}
	wait := h.SyncWait
	if wait <= 0 {
		wait = DefaultSyncWait
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &clusterState{broker: h.Broker, node: node, log: logger.With("node", node), mirror: mirror, every: every, wait: wait,
		ctx: ctx, cancel: cancel, synced: make(chan struct{}), applied: make(chan struct{})}
	h.cluster = c
	go c.follow(h)
	go c.announce(h)
}

// stop ends the goroutines. The caller holds the hub's mu.
func (c *clusterState) stop() { c.cancel() }

// setErr records how one of the follower and the announcer fares with
// the broker, logging once per outage.
func (c *clusterState) setErr(which *error, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	was := c.brokerErrLocked()
	*which = err
	switch now := c.brokerErrLocked(); {
	case was == nil && now != nil:
		c.log.Warn("broker unavailable: publishes fail and this node reports not ready until it returns", "err", now)
	case was != nil && now == nil:
		c.log.Info("broker reachable again")
	}
}

func (c *clusterState) brokerErrLocked() error {
	if c.followErr != nil && !c.followHealthyLocked() {
		return c.followErr
	}
	return c.probeErr
}

// followHealthy is how long a Follow must run without failing to count
// as reading the log again: a quiet log delivers nothing to prove it,
// and a Follow the broker refuses fails at once.
const followHealthy = 500 * time.Millisecond

func (c *clusterState) followHealthyLocked() bool {
	healthy := !c.followingSince.IsZero() && time.Since(c.followingSince) > followHealthy
	c.hasRead = c.hasRead || healthy
	return healthy
}

// following records whether a Follow is running.
func (c *clusterState) following(running bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.followingSince = time.Time{}
	if running {
		c.followingSince = time.Now()
	}
}

// readLocked is how far the node has read the log. h.mu must be held.
func (c *clusterState) readLocked() uint64 { return max(c.through, c.mirror.Head()) }

// done reports a hub closing as ErrHubClosed, so nobody waits for a node
// that is going away.
func (c *clusterState) done() <-chan struct{} { return c.ctx.Done() }

func (c *clusterState) sleep(d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-c.ctx.Done():
	case <-t.C:
	}
}

// follow reads the log for as long as the hub lives, from where this node
// got to, reconnecting after failures.
func (c *clusterState) follow(h *Hub) {
	backoff := minBackoff
	haveTarget := false
	for c.ctx.Err() == nil {
		if !haveTarget {
			epoch, head, err := c.broker.Head(c.ctx)
			if err != nil {
				if c.ctx.Err() == nil {
					c.setErr(&c.followErr, err)
				}
				c.sleep(backoff)
				backoff = min(2*backoff, maxBackoff)
				continue
			}
			h.mu.Lock()
			if c.readLocked() == 0 && c.mirror.Epoch() != epoch {
				c.adoptLocked(h, epoch)
			}
			c.target, c.targetEpoch, haveTarget = head, epoch, true
			c.checkSyncedLocked()
			h.mu.Unlock()
		}
		h.mu.Lock()
		epoch, after := c.mirror.Epoch(), c.readLocked()
		h.mu.Unlock()
		progressed := false
		c.following(true)
		err := c.broker.Follow(c.ctx, epoch, after, func(b Batch) error {
			progressed = true
			return c.apply(h, b)
		})
		c.following(false)
		if c.ctx.Err() != nil || errors.Is(err, ErrHubClosed) {
			return
		}
		if progressed {
			backoff = minBackoff
		}
		c.setErr(&c.followErr, err)
		c.sleep(backoff)
		backoff = min(2*backoff, maxBackoff)
	}
}

// apply delivers a batch read from the log to this node's subscribers and
// keeps it as history.
func (c *clusterState) apply(h *Hub, b Batch) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return ErrHubClosed
	}
	if b.Epoch != c.mirror.Epoch() {
		if c.isSynced() {
			c.resyncLocked(h, "the shared log was replaced (its epoch changed): what it held is gone", "from", c.mirror.Epoch(), "to", b.Epoch)
		}
		c.adoptLocked(h, b.Epoch)
	}
	recs := b.Records
	read := c.readLocked()
	for len(recs) > 0 && recs[0].Position <= read {
		recs = recs[1:] // read again after a reconnection
	}
	if len(recs) == 0 && b.Through <= read {
		return nil
	}
	if b.Lost {
		// Lost to everyone: records gone before they were read, or
		// entries this node cannot decode.
		upTo := b.Through
		if len(recs) > 0 {
			upTo = recs[0].Position - 1
		}
		c.mirror.markLost(upTo)
		if c.isSynced() {
			c.resyncLocked(h, "events of the shared log were removed by retention before this node read them, or cannot be read by it")
		}
	}
	if len(recs) > 0 {
		c.mirror.appendAt(recs)
		h.deliverLocked(recs, nil)
	}
	c.through = max(c.through, b.Through)
	c.checkSyncedLocked()
	close(c.applied)
	c.applied = make(chan struct{})
	c.mu.Lock()
	c.hasRead = true
	c.mu.Unlock()
	c.setErr(&c.followErr, nil) // a batch read is proof enough
	return nil
}

// adoptLocked makes the node's copy an empty one of the log with epoch:
// IDs are made of it from now on. h.mu must be held.
func (c *clusterState) adoptLocked(h *Hub, epoch string) {
	c.mirror.adopt(epoch)
	c.through = 0
	h.idPrefix = epoch + "-"
}

// isSynced reports whether the node has read the log as far as it stood
// at start.
func (c *clusterState) isSynced() bool {
	select {
	case <-c.synced:
		return true
	default:
		return false
	}
}

// resyncLocked ends every stream of a node that lost its place in the
// log: the clients reconnect, and resuming tells them what is gone
// instead of this node hiding a gap. h.mu must be held.
func (c *clusterState) resyncLocked(h *Hub, why string, args ...any) {
	c.log.Error("ending every stream so clients resume: "+why, append(args, "streams", len(h.subs))...)
	for s := range h.subs {
		h.removeLocked(s)
		s.finish(ErrResync)
	}
}

// checkSyncedLocked marks the node in sync once it has read the log up to
// where it stood at start. h.mu must be held.
func (c *clusterState) checkSyncedLocked() {
	if c.targetEpoch == "" || c.isSynced() {
		return
	}
	// A log replaced while the node started: what was there at start
	// is gone, so being on the new one is all there is to wait for.
	if c.mirror.Epoch() != c.targetEpoch || c.readLocked() >= c.target {
		close(c.synced)
	}
}

// announce reports this node's status to the broker now and then, which
// doubles as a health check of the broker.
func (c *clusterState) announce(h *Hub) {
	t := time.NewTicker(c.every)
	defer t.Stop()
	for {
		ctx, cancel := context.WithTimeout(c.ctx, c.every)
		epoch, head, err := c.broker.Head(ctx)
		if err == nil {
			st := NodeStatus{Node: c.node, Connections: h.Stats().Subscribers, Time: time.Now()}
			h.mu.Lock()
			st.Epoch, st.Applied = c.mirror.Epoch(), c.mirror.Head()
			h.mu.Unlock()
			if epoch == st.Epoch {
				st.Head = head
			}
			err = c.broker.Announce(ctx, st)
		}
		cancel()
		if c.ctx.Err() != nil {
			return
		}
		c.setErr(&c.probeErr, err)
		c.mu.Lock()
		recovered := c.followErr != nil && c.followHealthyLocked()
		c.mu.Unlock()
		if recovered {
			c.setErr(&c.followErr, nil)
		}
		select {
		case <-c.ctx.Done():
			return
		case <-t.C:
		}
	}
}

// prepareSubscribe waits, before the hub takes its lock, until the node
// can place the subscriber in the log: it has read the log as far as it
// stood at start and, for an ID it does not know, as far as the log
// stands now (the event may have been published through a node ahead of
// this one). It returns the highest position a generated ID of this
// node's log may have for the node to trust it is in the log although
// not read yet (see resumePoint), or ErrNotSynced when the node could not
// read the log far enough in time, or not learn how far it goes.
func (c *clusterState) prepareSubscribe(h *Hub, s *Subscriber, opts SubscribeOptions) (aheadLimit uint64, err error) {
	ctx := opts.Context
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, cancel := context.WithTimeout(ctx, c.wait)
	defer cancel()
	select {
	case <-c.synced:
	case <-c.done():
		return 0, ErrHubClosed
	case <-ctx.Done():
		return 0, ErrNotSynced
	}
	id := opts.LastEventID
	if id == "" || id == Earliest {
		return 0, nil
	}
	if c := h.checkID(s, id); c.pos != 0 && c.visible {
		return 0, nil
	}
	h.mu.Lock()
	prefix, read := h.idPrefix, c.readLocked()
	h.mu.Unlock()
	if rest, ok := strings.CutPrefix(id, prefix); ok {
		p, err := strconv.ParseUint(rest, 36, 64)
		if err != nil || p <= read {
			return 0, nil // resumePoint knows
		}
		// Past what this node has read: trust it as far as the log
		// goes, without waiting to read that far.
		epoch, head, err := c.broker.Head(ctx)
		switch {
		case err != nil:
			return math.MaxUint64, nil // cannot check: a wrong ID harms only its own stream
		case epoch != strings.TrimSuffix(prefix, "-"):
			return 0, nil // from a log replaced since: resumePoint says unknown
		}
		return head, nil
	}
	// A publisher's ID, or a generated one of a log this node has not
	// reached yet: read as far as the log goes, then look again. Until
	// then the node cannot tell an event it has not read from one never
	// issued, and "unknown" would send the client back to this node's
	// head, before events it has had: refuse instead, the client retries.
	epoch, head, err := c.broker.Head(ctx)
	if err != nil {
		if ctx.Err() == nil && !errors.Is(err, ErrBrokerUnavailable) {
			err = fmt.Errorf("%w: %w", ErrBrokerUnavailable, err)
		}
		return 0, fmt.Errorf("%w: cannot read the log's head to place the last event ID: %w", ErrNotSynced, err)
	}
	for {
		h.mu.Lock()
		caughtUp := c.mirror.Epoch() == epoch && c.readLocked() >= head
		applied := c.applied
		h.mu.Unlock()
		if caughtUp {
			return 0, nil
		}
		select {
		case <-applied:
		case <-c.done():
			return 0, ErrHubClosed
		case <-ctx.Done():
			return 0, fmt.Errorf("%w: the log was not read far enough in time to place the last event ID: %w", ErrNotSynced, ctx.Err())
		}
	}
}

// publish appends recs to the shared log; the hub delivers them when it
// reads them back, like everyone else's.
func (c *clusterState) publish(ctx context.Context, h *Hub, recs []Record, ids []string) error {
	h.mu.Lock()
	closed := h.closed
	h.mu.Unlock()
	if closed {
		return ErrHubClosed
	}
	// What this node has read; the broker checks the rest.
	if err := h.duplicateID(recs); err != nil {
		return err
	}
	epoch, err := c.broker.Append(ctx, recs)
	switch {
	case errors.Is(err, ErrDuplicateID), errors.Is(err, ErrInvalidEvent):
		return err
	case err != nil && !errors.Is(err, ErrBrokerUnavailable):
		return fmt.Errorf("%w: %w", ErrBrokerUnavailable, err)
	case err != nil:
		return err
	}
	for i := range recs {
		ids[i] = recs[i].ID
		if ids[i] == "" {
			ids[i] = epoch + "-" + strconv.FormatUint(recs[i].Position, 36)
		}
	}
	return nil
}

// Ready reports whether the hub can serve subscribers and publishers
// without loss: nil, or why not. A History that is a [HealthChecker] must
// be healthy. A clustered hub is ready once it has
// read the shared log up to where it stood at start, while its broker
// answers.
func (h *Hub) Ready() error {
	h.init()
	h.mu.Lock()
	closed := h.closed
	h.mu.Unlock()
	if closed {
		return ErrHubClosed
	}
	if hc, ok := h.History.(HealthChecker); ok {
		if err := hc.Healthy(); err != nil {
			return err
		}
	}
	c := h.cluster
	if c == nil {
		return nil
	}
	if !c.isSynced() {
		return ErrNotSynced
	}
	c.mu.Lock()
	err := c.brokerErrLocked()
	reading := c.hasRead || c.followHealthyLocked()
	c.mu.Unlock()
	if err == nil && !reading {
		// In sync by the log's head, but the follower has not shown yet
		// that it can read the log (a quiet log proves it only by time).
		return ErrNotSynced
	}
	if err != nil && !errors.Is(err, ErrBrokerUnavailable) {
		err = fmt.Errorf("%w: %w", ErrBrokerUnavailable, err)
	}
	return err
}

// WaitSynced blocks until a clustered hub has read the shared log up to
// where it stood when the hub started, or ctx ends. A hub without a
// broker is always in sync.
func (h *Hub) WaitSynced(ctx context.Context) error {
	h.init()
	if h.cluster == nil {
		return nil
	}
	select {
	case <-h.cluster.synced:
		return nil
	case <-h.cluster.done():
		return ErrHubClosed
	case <-ctx.Done():
		return fmt.Errorf("%w: %w", ErrNotSynced, ctx.Err())
	}
}

// NodeInfo is a node of a cluster as [Hub.Nodes] reports it.
type NodeInfo struct {
	NodeStatus
	// Lag is how many events the node had still to deliver when it
	// reported, counted in this node's copy of the log; -1 when this
	// node cannot tell (another epoch, or events it has not read).
	Lag int `json:"lag"`
	// Self marks the node answering.
	Self bool `json:"self"`
}

// Node returns the hub's node name (see NodeID); empty unless clustered.
func (h *Hub) Node() string {
	h.init()
	if h.cluster == nil {
		return h.NodeID
	}
	return h.cluster.node
}

// Nodes lists the nodes of the hub's cluster that reported within
// [NodeTTL], or only this hub when it has no broker.
func (h *Hub) Nodes(ctx context.Context) ([]NodeInfo, error) {
	h.init()
	c := h.cluster
	if c == nil {
		head := h.History.Head()
		return []NodeInfo{{NodeStatus: NodeStatus{Node: h.NodeID, Connections: h.Stats().Subscribers,
			Epoch: h.History.Epoch(), Applied: head, Head: head, Time: time.Now()}, Self: true}}, nil
	}
	sts, err := c.broker.Nodes(ctx)
	if err != nil {
		if !errors.Is(err, ErrBrokerUnavailable) {
			err = fmt.Errorf("%w: %w", ErrBrokerUnavailable, err)
		}
		return nil, err
	}
	h.mu.Lock() // epoch and head of one moment
	epoch, head := c.mirror.Epoch(), c.mirror.Head()
	h.mu.Unlock()
	infos := make([]NodeInfo, len(sts))
	for i, st := range sts {
		info := NodeInfo{NodeStatus: st, Lag: -1, Self: st.Node == c.node}
		if st.Epoch == epoch && st.Applied <= st.Head && st.Head <= head {
			info.Lag = c.mirror.countBetween(st.Applied, st.Head)
		}
		infos[i] = info
	}
	return infos, nil
}
