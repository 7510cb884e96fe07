package herald

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
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

// clusterWait bounds how long a subscription waits for a clustered node
// to read the log: at start, or up to an event published through another
// node.
const clusterWait = 10 * time.Second

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
	ctx    context.Context
	cancel context.CancelFunc
	synced chan struct{} // closed once the node has read the log up to its head at start

	// Guarded by the hub's mu.
	isSynced    bool
	target      uint64 // the log's head at start, in targetEpoch
	targetEpoch string
	applied     chan struct{} // closed, then replaced, after each batch is delivered

	mu        sync.Mutex
	brokerErr error // why the broker is unreachable, or nil
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
	ctx, cancel := context.WithCancel(context.Background())
	c := &clusterState{broker: h.Broker, node: node, log: logger.With("node", node), mirror: mirror, every: every,
		ctx: ctx, cancel: cancel, synced: make(chan struct{}), applied: make(chan struct{})}
	h.cluster = c
	go c.follow(h)
	go c.announce(h)
}

// stop ends the goroutines. The caller holds the hub's mu.
func (c *clusterState) stop() { c.cancel() }

// fail records that the broker cannot be reached, logging once per outage.
func (c *clusterState) fail(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.brokerErr == nil {
		c.log.Warn("broker unavailable: publishes fail and this node reports not ready until it returns", "err", err)
	}
	c.brokerErr = err
}

// ok records that the broker answered.
func (c *clusterState) ok() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.brokerErr != nil {
		c.log.Info("broker reachable again")
	}
	c.brokerErr = nil
}

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
					c.fail(err)
				}
				c.sleep(backoff)
				backoff = min(2*backoff, maxBackoff)
				continue
			}
			c.ok()
			h.mu.Lock()
			if c.mirror.Head() == 0 && c.mirror.Epoch() != epoch {
				c.mirror.adopt(epoch)
				h.idPrefix = epoch + "-"
			}
			c.target, c.targetEpoch, haveTarget = head, epoch, true
			c.checkSyncedLocked()
			h.mu.Unlock()
		}
		h.mu.Lock()
		epoch, after := c.mirror.Epoch(), c.mirror.Head()
		h.mu.Unlock()
		progressed := false
		err := c.broker.Follow(c.ctx, epoch, after, func(b Batch) error {
			progressed = true
			return c.apply(h, b)
		})
		if c.ctx.Err() != nil || errors.Is(err, ErrHubClosed) {
			return
		}
		if progressed {
			backoff = minBackoff
		}
		c.fail(err)
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
		if c.isSynced {
			c.resyncLocked(h, "the shared log was replaced (its epoch changed): what it held is gone", "from", c.mirror.Epoch(), "to", b.Epoch)
		}
		c.mirror.adopt(b.Epoch)
		h.idPrefix = b.Epoch + "-"
	}
	recs := b.Records
	head := c.mirror.Head()
	for len(recs) > 0 && recs[0].Position <= head {
		recs = recs[1:] // read again after a reconnection
	}
	if len(recs) == 0 {
		return nil
	}
	if b.Lost {
		c.mirror.markLost(recs[0].Position - 1)
		if c.isSynced {
			c.resyncLocked(h, "retention removed events from the shared log before this node read them")
		}
	}
	c.mirror.appendAt(recs)
	h.deliverLocked(recs, nil)
	c.checkSyncedLocked()
	close(c.applied)
	c.applied = make(chan struct{})
	c.ok() // a batch read is proof enough
	return nil
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
	if c.isSynced || c.targetEpoch == "" {
		return
	}
	// A log replaced while the node started: what was there at start
	// is gone, so being on the new one is all there is to wait for.
	if c.mirror.Epoch() != c.targetEpoch || c.mirror.Head() >= c.target {
		c.isSynced = true
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
		if err != nil {
			c.fail(err)
		} else {
			c.ok()
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
// stood at start and, for a publisher's ID it does not know, as far as
// the log stands now (the event may have been published through a node
// ahead of this one).
func (c *clusterState) prepareSubscribe(h *Hub, opts SubscribeOptions) error {
	ctx := opts.Context
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, cancel := context.WithTimeout(ctx, clusterWait)
	defer cancel()
	select {
	case <-c.synced:
	case <-ctx.Done():
		return ErrNotSynced
	}
	id := opts.LastEventID
	if id == "" || id == Earliest {
		return nil
	}
	if _, ok := c.mirror.Lookup(id); ok {
		return nil
	}
	h.mu.Lock()
	prefix := h.idPrefix
	h.mu.Unlock()
	if rest, ok := strings.CutPrefix(id, prefix); ok {
		if _, err := strconv.ParseUint(rest, 36, 64); err == nil {
			return nil // a position: resumePoint places it, read or not
		}
	}
	epoch, head, err := c.broker.Head(ctx)
	if err != nil || epoch != c.mirror.Epoch() {
		return nil // resumePoint will say the ID is unknown
	}
	for {
		h.mu.Lock()
		done, applied := c.mirror.Head() >= head, c.applied
		h.mu.Unlock()
		if done {
			return nil
		}
		select {
		case <-applied:
		case <-ctx.Done():
			return nil
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
	for i := range recs {
		if id := recs[i].ID; id != "" {
			// What this node has read; the broker checks the rest.
			if _, dup := c.mirror.Lookup(id); dup {
				return fmt.Errorf("%w: %q", ErrDuplicateID, id)
			}
		}
	}
	epoch, err := c.broker.Append(ctx, recs)
	switch {
	case errors.Is(err, ErrDuplicateID):
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
// without loss: nil, or why not. A clustered hub is ready once it has
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
	c := h.cluster
	if c == nil {
		return nil
	}
	select {
	case <-c.synced:
	default:
		return ErrNotSynced
	}
	c.mu.Lock()
	err := c.brokerErr
	c.mu.Unlock()
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
	epoch, head := c.mirror.Epoch(), c.mirror.Head()
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
