package herald

import (
	"context"
	"fmt"
	"time"
)

// An eventLog is where a hub's events are put in order: this node's
// History (localLog), or a cluster's shared log, a Broker (clusterLog).
// Every publish goes into the hub's log, and every event reaches the
// subscriber queues from it through one seam, a [logSink]: a local log
// hands what it appended to the sink at once, a shared log hands over
// what the node reads back from it, its own publishes and everyone
// else's. So the hub has one publish path, whatever orders its events.
type eventLog interface {
	// append puts recs in the log, setting their positions, and fills
	// ids with the IDs the events carry. It returns once the log holds
	// them as durably as it promises.
	append(ctx context.Context, recs []Record, ids []string) error
	// place waits, before the hub takes its lock, until the log can
	// place a subscriber resuming after lastEventID (empty or Earliest:
	// at once). known, nil for those two, reports whether the node
	// already has the event carrying that ID and the subscriber may see
	// it. It returns the highest position a generated ID of the log may
	// have for the hub to trust it although this node has not read so
	// far (see Hub.resumePoint), or ErrNotSynced.
	place(ctx context.Context, lastEventID string, known func() bool) (aheadLimit uint64, err error)
	// headLocked is how far the node has the log: a new subscriber's
	// live events start after it. The hub's lock must be held.
	headLocked() uint64
	// ready says why the log cannot serve without loss now, or nil.
	ready() error
	// waitSynced blocks until the node has read the log as far as it
	// stood at start, or ctx ends.
	waitSynced(ctx context.Context) error
	// node is this node's name.
	node() string
	// nodes lists the nodes sharing the log.
	nodes(ctx context.Context) ([]NodeInfo, error)
	// stop ends the log's goroutines. The hub's lock is held.
	stop()
}

// A logSink is the hub as its log reaches it: the one seam between where
// events are put in order and where they are delivered. *Hub is the only
// one.
type logSink interface {
	// lockOpen takes the publish lock and returns nil, or returns
	// ErrHubClosed (or ErrHubNotOpen) without holding it.
	lockOpen() error
	// unlock releases the publish lock.
	unlock()
	// deliverLocked queues recs, which the node's history holds, to the
	// subscribers they are for; ids, if not nil, receives their IDs.
	deliverLocked(recs []Record, ids []string)
	// setEpochLocked makes generated IDs from now on of epoch.
	setEpochLocked(epoch string)
	// endAllLocked ends every subscription with err and returns how many
	// there were.
	endAllLocked(err error) int
	// subscribers is how many subscriptions the hub has.
	subscribers() int
}

// startEventLog makes h's log from its settings, which checkLogSettings
// accepted, and starts its goroutines, if any. h's lock is held. This is
// the one place that tells a single node from a cluster's: past it, the
// hub sees only an eventLog.
func startEventLog(h *Hub) eventLog {
	if h.Broker == nil {
		return &localLog{sink: h, name: h.NodeID, history: h.history}
	}
	return openClusterLog(h, h.history.(*MemoryHistory))
}

// checkLogSettings says why history (not nil) and broker cannot make a
// log: a clustered node keeps its copy of the shared log in a
// *MemoryHistory, which takes the log's positions and epoch.
func checkLogSettings(history History, broker Broker) error {
	if _, ok := history.(*MemoryHistory); broker != nil && !ok {
		return fmt.Errorf("herald: a Hub with a Broker keeps its copy of the log in a *MemoryHistory, not a %T", history)
	}
	return nil
}

// localLog is a single node's log: its History orders the events, and
// what it appends is delivered under the same lock.
type localLog struct {
	sink    logSink
	name    string
	history History
}

func (l *localLog) append(_ context.Context, recs []Record, ids []string) error {
	if err := l.sink.lockOpen(); err != nil {
		return err
	}
	durable, err := l.appendLocked(recs, ids)
	l.sink.unlock()
	if err != nil {
		return err
	}
	if durable != nil {
		if err := durable(); err != nil {
			return fmt.Errorf("herald: history: %w", err)
		}
	}
	return nil
}

// appendLocked appends and delivers recs, and returns the history's wait
// for durability, to be called after the lock is released.
func (l *localLog) appendLocked(recs []Record, ids []string) (func() error, error) {
	if err := duplicateID(l.history, recs); err != nil {
		return nil, err
	}
	durable, err := l.history.Append(recs)
	if err != nil {
		return nil, fmt.Errorf("herald: history: %w", err)
	}
	l.sink.deliverLocked(recs, ids)
	return durable, nil
}

func (l *localLog) place(context.Context, string, func() bool) (uint64, error) { return 0, nil }
func (l *localLog) headLocked() uint64                                         { return l.history.Head() }
func (l *localLog) ready() error                                               { return nil }
func (l *localLog) waitSynced(context.Context) error                           { return nil }
func (l *localLog) node() string                                               { return l.name }
func (l *localLog) stop()                                                      {}

func (l *localLog) nodes(context.Context) ([]NodeInfo, error) {
	head := l.history.Head()
	return []NodeInfo{{NodeStatus: NodeStatus{Node: l.name, Connections: l.sink.subscribers(),
		Epoch: l.history.Epoch(), Applied: head, Head: head, Time: time.Now()}, Self: true}}, nil
}
