package herald

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
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

// clusterLog is the log of a hub with a Broker: the cluster's shared log.
// Its goroutines read the log into this node's copy (a MemoryHistory
// under the log's epoch and positions) and hand what they read to the
// hub (the sink), and report the node's status to the broker.
type clusterLog struct {
	sink   logSink
	broker Broker
	name   string
	log    *slog.Logger
	mirror *MemoryHistory // this node's copy of the log: the hub's History
	every  time.Duration
	wait   time.Duration
	ctx    context.Context
	cancel context.CancelFunc
	synced chan struct{} // closed once the node has read the log up to its head at start

	// Guarded by the hub's lock (held from sink.lockOpen to sink.unlock),
	// like the copy and the subscriber queues they are in step with.
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

// openClusterLog starts the goroutines of h's log on h.Broker, with
// mirror as this node's copy. h's lock is held.
func openClusterLog(h *Hub, mirror *MemoryHistory) *clusterLog {
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
	c := &clusterLog{sink: h, broker: h.Broker, name: node, log: logger.With("node", node), mirror: mirror, every: every, wait: wait,
		ctx: ctx, cancel: cancel, synced: make(chan struct{}), applied: make(chan struct{})}
	go c.follow()
	go c.announce()
	return c
}

// stop ends the goroutines.
func (c *clusterLog) stop() { c.cancel() }

// setErr records how one of the follower and the announcer fares with
// the broker, logging once per outage.
func (c *clusterLog) setErr(which *error, err error) {
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

func (c *clusterLog) brokerErrLocked() error {
	if c.followErr != nil && !c.followHealthyLocked() {
		return c.followErr
	}
	return c.probeErr
}

// followHealthy is how long a Follow must run without failing to count
// as reading the log again: a quiet log delivers nothing to prove it,
// and a Follow the broker refuses fails at once.
const followHealthy = 500 * time.Millisecond

func (c *clusterLog) followHealthyLocked() bool {
	healthy := !c.followingSince.IsZero() && time.Since(c.followingSince) > followHealthy
	c.hasRead = c.hasRead || healthy
	return healthy
}

// following records whether a Follow is running.
func (c *clusterLog) following(running bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.followingSince = time.Time{}
	if running {
		c.followingSince = time.Now()
	}
}

// headLocked is how far the node has read the log: past unreadable
// entries too, which are lost, not ahead. The hub's lock must be held.
func (c *clusterLog) headLocked() uint64 { return max(c.through, c.mirror.Head()) }

// done reports a hub closing as ErrHubClosed, so nobody waits for a node
// that is going away.
func (c *clusterLog) done() <-chan struct{} { return c.ctx.Done() }

func (c *clusterLog) sleep(d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-c.ctx.Done():
	case <-t.C:
	}
}

// follow reads the log for as long as the hub lives, from where this node
// got to, reconnecting after failures.
func (c *clusterLog) follow() {
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
			if c.sink.lockOpen() != nil {
				return
			}
			if c.headLocked() == 0 && c.mirror.Epoch() != epoch {
				c.adoptLocked(epoch)
			}
			c.target, c.targetEpoch, haveTarget = head, epoch, true
			c.checkSyncedLocked()
			c.sink.unlock()
		}
		if c.sink.lockOpen() != nil {
			return
		}
		epoch, after := c.mirror.Epoch(), c.headLocked()
		c.sink.unlock()
		progressed := false
		c.following(true)
		err := c.broker.Follow(c.ctx, epoch, after, func(b Batch) error {
			progressed = true
			return c.apply(b)
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

// apply keeps a batch read from the log in this node's copy and hands it
// to the hub, which delivers it to this node's subscribers.
func (c *clusterLog) apply(b Batch) error {
	if err := c.sink.lockOpen(); err != nil {
		return ErrHubClosed
	}
	defer c.sink.unlock()
	if b.Epoch != c.mirror.Epoch() {
		if c.isSynced() {
			c.resyncLocked("the shared log was replaced (its epoch changed): what it held is gone", "from", c.mirror.Epoch(), "to", b.Epoch)
		}
		c.adoptLocked(b.Epoch)
	}
	recs := b.Records
	read := c.headLocked()
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
			c.resyncLocked("events of the shared log were removed by retention before this node read them, or cannot be read by it")
		}
	}
	if len(recs) > 0 {
		c.mirror.appendAt(recs)
		c.sink.deliverLocked(recs, nil)
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
// IDs are made of it from now on. The hub's lock must be held.
func (c *clusterLog) adoptLocked(epoch string) {
	c.mirror.adopt(epoch)
	c.through = 0
	c.sink.setEpochLocked(epoch)
}

// isSynced reports whether the node has read the log as far as it stood
// at start.
func (c *clusterLog) isSynced() bool {
	select {
	case <-c.synced:
		return true
	default:
		return false
	}
}

// resyncLocked ends every stream of a node that lost its place in the
// log: the clients reconnect, and resuming tells them what is gone
// instead of this node hiding a gap. The hub's lock must be held.
func (c *clusterLog) resyncLocked(why string, args ...any) {
	n := c.sink.endAllLocked(ErrResync)
	c.log.Error("ended every stream so clients resume: "+why, append(args, "streams", n)...)
}

// checkSyncedLocked marks the node in sync once it has read the log up to
// where it stood at start. The hub's lock must be held.
func (c *clusterLog) checkSyncedLocked() {
	if c.targetEpoch == "" || c.isSynced() {
		return
	}
	// A log replaced while the node started: what was there at start
	// is gone, so being on the new one is all there is to wait for.
	if c.mirror.Epoch() != c.targetEpoch || c.headLocked() >= c.target {
		close(c.synced)
	}
}

// copyState returns the epoch and head of this node's copy at one moment.
func (c *clusterLog) copyState() (epoch string, head uint64, err error) {
	if err := c.sink.lockOpen(); err != nil {
		return "", 0, err
	}
	defer c.sink.unlock()
	return c.mirror.Epoch(), c.mirror.Head(), nil
}

// announce reports this node's status to the broker now and then, which
// doubles as a health check of the broker.
func (c *clusterLog) announce() {
	t := time.NewTicker(c.every)
	defer t.Stop()
	for {
		ctx, cancel := context.WithTimeout(c.ctx, c.every)
		epoch, head, err := c.broker.Head(ctx)
		if err == nil {
			st := NodeStatus{Node: c.name, Connections: c.sink.subscribers(), Time: time.Now()}
			if st.Epoch, st.Applied, err = c.copyState(); err != nil {
				cancel()
				return
			}
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

// place waits until the node can place a subscriber in the log: it has
// read the log as far as it stood at start and, for an ID it does not
// know, as far as the log stands now (the event may have been published
// through a node ahead of this one). See eventLog.place.
func (c *clusterLog) place(ctx context.Context, id string, known func() bool) (aheadLimit uint64, err error) {
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
	if known == nil || known() {
		return 0, nil
	}
	if err := c.sink.lockOpen(); err != nil {
		return 0, err
	}
	epoch, read := c.mirror.Epoch(), c.headLocked()
	c.sink.unlock()
	if gid, ok := parseGeneratedID(id); ok && gid.epoch == epoch {
		if gid.pos <= read {
			return 0, nil // resumePoint knows
		}
		// Past what this node has read: trust it as far as the log
		// goes, without waiting to read that far.
		logEpoch, head, err := c.broker.Head(ctx)
		switch {
		case err != nil:
			return math.MaxUint64, nil // cannot check: a wrong ID harms only its own stream
		case logEpoch != epoch:
			return 0, nil // from a log replaced since: resumePoint says unknown
		}
		return head, nil
	}
	// A publisher's ID, or a generated one of a log this node has not
	// reached yet: read as far as the log goes, then look again. Until
	// then the node cannot tell an event it has not read from one never
	// issued, and "unknown" would send the client back to this node's
	// head, before events it has had: refuse instead, the client retries.
	return 0, c.waitForHead(ctx)
}

// waitForHead waits until the node has read the log as far as it goes
// now, or returns ErrNotSynced.
func (c *clusterLog) waitForHead(ctx context.Context) error {
	epoch, head, err := c.broker.Head(ctx)
	if err != nil {
		if ctx.Err() == nil && !errors.Is(err, ErrBrokerUnavailable) {
			err = fmt.Errorf("%w: %w", ErrBrokerUnavailable, err)
		}
		return fmt.Errorf("%w: cannot read the log's head to place the last event ID: %w", ErrNotSynced, err)
	}
	for {
		if err := c.sink.lockOpen(); err != nil {
			return err
		}
		caughtUp := c.mirror.Epoch() == epoch && c.headLocked() >= head
		applied := c.applied
		c.sink.unlock()
		if caughtUp {
			return nil
		}
		select {
		case <-applied:
		case <-c.done():
			return ErrHubClosed
		case <-ctx.Done():
			return fmt.Errorf("%w: the log was not read far enough in time to place the last event ID: %w", ErrNotSynced, ctx.Err())
		}
	}
}

// append puts recs in the shared log; the node delivers them when it
// reads them back, like everyone else's.
func (c *clusterLog) append(ctx context.Context, recs []Record, ids []string) error {
	// What this node has read; the broker checks the rest.
	if err := duplicateID(c.mirror, recs); err != nil {
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
			ids[i] = generatedID{epoch, recs[i].Position}.String()
		}
	}
	return nil
}

// ready: a clustered node is ready once it has read the shared log up to
// where it stood at start, while its broker answers.
func (c *clusterLog) ready() error {
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

func (c *clusterLog) waitSynced(ctx context.Context) error {
	select {
	case <-c.synced:
		return nil
	case <-c.done():
		return ErrHubClosed
	case <-ctx.Done():
		return fmt.Errorf("%w: %w", ErrNotSynced, ctx.Err())
	}
}

func (c *clusterLog) node() string { return c.name }

func (c *clusterLog) nodes(ctx context.Context) ([]NodeInfo, error) {
	sts, err := c.broker.Nodes(ctx)
	if err != nil {
		if !errors.Is(err, ErrBrokerUnavailable) {
			err = fmt.Errorf("%w: %w", ErrBrokerUnavailable, err)
		}
		return nil, err
	}
	epoch, head, err := c.copyState()
	if err != nil {
		return nil, err
	}
	infos := make([]NodeInfo, len(sts))
	for i, st := range sts {
		info := NodeInfo{NodeStatus: st, Lag: -1, Self: st.Node == c.name}
		if st.Epoch == epoch && st.Applied <= st.Head && st.Head <= head {
			info.Lag = c.mirror.countBetween(st.Applied, st.Head)
		}
		infos[i] = info
	}
	return infos, nil
}
