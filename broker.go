package herald

import (
	"context"
	"errors"
	"time"
)

// Broker joins the hubs of a cluster. It is a shared, ordered log that
// every node appends its publishes to and follows: each node fans out
// what it reads to its own subscribers and keeps a copy as its history,
// so an event has the same position, and so the same ID, on every node,
// and a subscriber may resume on any node.
//
// The broker is the source of truth for order: a node delivers nothing
// it has not read back from the log, its own publishes included.
//
// A log's epoch is 12 characters of [A-Za-z0-9_], as [NewEpoch] makes:
// the IDs nodes generate are made of it.
//
// Implementations: [MemoryBroker] (one process), and the redis and nats
// packages.
type Broker interface {
	// Append adds recs to the end of the log, in order, sets each one's
	// Position, and returns the log's epoch. Positions increase along
	// the log; they need not be consecutive. It returns once the broker
	// has acknowledged the records (they are as durable as the broker is
	// configured to make them).
	//
	// A publisher-supplied ID the log already carries, within the
	// window the implementation documents, is refused with an error
	// wrapping [ErrDuplicateID], and nothing is appended. A record the
	// broker can never take (too large for it) is refused with an error
	// wrapping [ErrInvalidEvent], and nothing is appended. Any other
	// error means the records may or may not have been appended: the
	// publisher must be told to retry (with its own IDs, a retry is then
	// refused as a duplicate instead of doubling the event).
	Append(ctx context.Context, recs []Record) (epoch string, err error)
	// Follow reads the log after position after, in order, and calls fn
	// with each batch read, until ctx ends or the broker fails (its
	// error is returned) or fn fails (fn's error is returned).
	//
	// If the log's epoch is not epoch (the log was replaced or wiped, or
	// epoch is empty), Follow reads from the start of the log. Records
	// removed by retention before Follow could read them are reported by
	// [Batch].Lost. fn must not keep b.Records, but may keep the
	// records' own slices (Topics, recipients): they are never reused.
	Follow(ctx context.Context, epoch string, after uint64, fn func(b Batch) error) error
	// Head returns the log's epoch and the position of its last record,
	// 0 if it holds none (never had any, or retention removed them
	// all): what a node must have read to be in sync. A log without an
	// epoch yet gets one.
	Head(ctx context.Context) (epoch string, head uint64, err error)
	// Announce publishes a node's status, for Nodes. A status not
	// refreshed within [NodeTTL] is forgotten.
	Announce(ctx context.Context, st NodeStatus) error
	// Nodes returns the status of each node announced within NodeTTL.
	Nodes(ctx context.Context) ([]NodeStatus, error)
	// Close releases the broker's connections. The log stays.
	Close() error
}

// Batch is records read from a [Broker]'s log.
type Batch struct {
	// Epoch is the log's epoch: every record of a batch belongs to it.
	Epoch string
	// Records are in log order, positions increasing.
	Records []Record
	// Lost means that records between the previous batch (or Follow's
	// after) and Records[0] (or Through) were removed from the log
	// before they could be read, or could not be read (an entry this
	// node cannot decode): a node that reads this has a gap it must not
	// hide.
	Lost bool
	// Through, when not zero, is the position the log was read up to,
	// beyond the last of Records: entries after it that could not be
	// read. A batch may then have no Records, so that a reader knows it
	// is at the head of the log even when the newest entries are
	// unreadable.
	Through uint64
}

// NodeStatus is what a node of a cluster reports about itself.
type NodeStatus struct {
	// Node names the node (see [Hub].NodeID).
	Node string `json:"node"`
	// Connections is the number of subscribers connected to it.
	Connections int `json:"connections"`
	// Epoch and Applied are the log and position the node had read and
	// delivered up to, and Head the log's head it saw, when it reported.
	Epoch   string `json:"epoch"`
	Applied uint64 `json:"applied"`
	Head    uint64 `json:"head"`
	// Time is when it reported.
	Time time.Time `json:"time"`
}

// NodeTTL is how long a node's status is kept after its last report:
// nodes report every few seconds (see [Hub].AnnounceEvery), so a node
// gone for longer is gone.
const NodeTTL = 15 * time.Second

// Errors of a clustered hub.
var (
	// ErrBrokerUnavailable wraps what went wrong when the hub could not
	// reach its broker: the publish was not acknowledged.
	ErrBrokerUnavailable = errors.New("broker unavailable")
	// ErrNotSynced means the node has not yet read the shared log up to
	// where it was when the node started, or, for a subscriber resuming
	// after an event ID the node has not read, as far as the log goes
	// (or cannot learn how far that is): it cannot serve the subscriber
	// without missing or repeating events.
	ErrNotSynced = errors.New("node not yet in sync with the cluster's log")
	// ErrResync ends the streams of a node that lost its place in the
	// shared log (the log was replaced, or retention removed records
	// the node had not read yet): clients reconnect and resume, and are
	// told what is gone.
	ErrResync = errors.New("node lost its place in the shared log: reconnect to resume")
)
