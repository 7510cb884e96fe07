package herald

import (
	"context"
)

// Ready reports whether the hub can serve subscribers and publishers
// without loss: nil, or why not. A History that is a [HealthChecker] must
// be healthy. A clustered hub is ready once it has read the shared log up
// to where it stood at start, while its broker answers.
func (h *Hub) Ready() error {
	log, err := h.openLog()
	if err != nil {
		return err
	}
	if hc, ok := h.history.(HealthChecker); ok {
		if err := hc.Healthy(); err != nil {
			return err
		}
	}
	return log.ready()
}

// WaitSynced blocks until a clustered hub has read the shared log up to
// where it stood when the hub started, or ctx ends. A hub without a
// broker is always in sync.
func (h *Hub) WaitSynced(ctx context.Context) error {
	log, err := h.openLog()
	if err != nil {
		return err
	}
	return log.waitSynced(ctx)
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

// Node returns the hub's node name: NodeID, or for a clustered hub with
// none the name it made up at Open.
func (h *Hub) Node() string {
	log, err := h.openLog()
	if err != nil {
		return h.NodeID
	}
	return log.node()
}

// Nodes lists the nodes of the hub's cluster that reported within
// [NodeTTL], or only this hub when it has no broker.
func (h *Hub) Nodes(ctx context.Context) ([]NodeInfo, error) {
	log, err := h.openLog()
	if err != nil {
		return nil, err
	}
	return log.nodes(ctx)
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
