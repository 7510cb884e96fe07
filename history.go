package herald

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"strings"
	"time"
)

// Record is a published event as a [History] keeps it.
type Record struct {
	// Position is assigned by the History: increasing, the first is 1.
	Position uint64
	// ID is the publisher's own event ID, or empty: the hub then derives
	// one from the History's epoch and the position.
	ID     string
	Topics []string
	Type   string
	Data   string
	Retry  time.Duration
	// Time is when the hub published the event; age-based retention
	// counts from it.
	Time time.Time
	// Private and the recipients restrict who may receive the event, on
	// replay as live (see Event).
	Private                bool
	ToUsers, ToConnections []string
}

// restricted reports whether only some subscribers may receive r.
func (r *Record) restricted() bool {
	return r.Private || len(r.ToUsers)+len(r.ToConnections) > 0
}

// Size is what a record costs a history's byte budget: about the memory
// a [MemoryHistory] holds for it. That is its payload and names, plus
// allowances for the record itself, its ID's entry in the ID index, and
// each topic's entries (the string, and its place in the per-topic
// index, for the worst case where each event has topics of its own): a
// budget counting only the payload let events with many topics take many
// times their limit.
func (r *Record) Size() int {
	n := recordAllowance + len(r.ID) + len(r.Type) + len(r.Data)
	if r.ID != "" {
		n += idAllowance
	}
	for _, t := range r.Topics {
		n += topicAllowance + len(t)
	}
	for _, list := range [][]string{r.ToUsers, r.ToConnections} {
		for _, u := range list {
			n += 16 + len(u)
		}
	}
	return n
}

// Size's allowances, measured with runtime.ReadMemStats (see
// TestMemoryHistoryBytesCountIndexes): a Record in the history's slice
// with the slack of its compaction; an ID's map entry; a topic's string
// header, its entry in the topic's position list (with growth slack),
// and a share of the topic's index (map entry and list).
const (
	recordAllowance = 256
	idAllowance     = 48
	topicAllowance  = 96
)

// History keeps published events so that a subscriber that reconnects
// gets exactly what it missed. The hub calls Append with its publish lock
// held, so records arrive one call at a time in publish order, and the
// History assigns their positions. A cluster's shared log is a [Broker],
// not a History: a clustered hub keeps its copy of it in a MemoryHistory.
type History interface {
	// Epoch names this store instance. It is part of every ID the hub
	// generates, so an ID from another instance (a wiped or replaced
	// store) is recognised as foreign instead of being mapped to the
	// wrong position. It is 12 characters of [A-Za-z0-9_], as
	// [NewEpoch] makes ([Hub.Open] refuses another shape).
	Epoch() string
	// Append stores recs in order, setting each one's Position. It copies
	// what it keeps: the slices belong to the caller. If the
	// returned wait is not nil, the hub calls it after releasing its lock
	// and before acknowledging the publish: it blocks until the records
	// are as durable as the store promises.
	Append(recs []Record) (wait func() error, err error)
	// Head returns the position of the last appended record, 0 if none.
	Head() uint64
	// Lookup returns the position of the newest retained record that
	// carried the publisher-supplied id.
	Lookup(id string) (uint64, bool)
	// Lost reports whether a record with after < Position <= upTo that
	// one of selectors matches is gone (removed by retention, or found
	// damaged), so that replaying that range would
	// have a gap. It may answer true when unsure, never false when such a
	// record is gone. It is monotone: a smaller after or a larger upTo
	// never turns true into false.
	Lost(after, upTo uint64, selectors []Selector) bool
	// Replay calls fn, in order, for each retained record with
	// after < Position <= upTo that one of selectors matches, a page at a
	// time; fn must not keep the slice. It costs in proportion to the
	// matching records, not to the history. If a matching record of the
	// range not yet handed to fn is removed while it runs (Lost for the
	// rest of the range), it stops with ErrHistoryLost.
	Replay(after, upTo uint64, selectors []Selector, fn func([]Record) error) error
	// Close releases the store.
	Close() error
}

// HealthChecker is implemented by a [History] that can fail for a while
// and recover (a store on a full disk, say). Healthy returns nil, or why
// appends fail now; [Hub.Ready] reports it, so that a load balancer takes
// the node out until the store writes again.
type HealthChecker interface {
	Healthy() error
}

// epochLength is the length of NewEpoch's names.
const epochLength = 12

// NewEpoch returns a fresh random name for a history instance: 12
// characters of [A-Za-z0-9_], so IDs made of it need no escaping and its
// separator from the position ('-') never occurs in it. Stores should use
// it, so the hub can tell another store's IDs from ones nobody issued.
func NewEpoch() string {
	var b [9]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms
	return strings.ReplaceAll(base64.RawURLEncoding.EncodeToString(b[:]), "-", "_")
}

// ErrHistoryLost means records a replay needed were removed by retention
// while it ran; the subscriber must start over (reconnect).
var ErrHistoryLost = errors.New("history: records removed during replay")

// Retention bounds what a history keeps. A record goes when any limit is
// exceeded, oldest first. Zero fields take the defaults; nothing is ever
// unlimited.
type Retention struct {
	// MaxEvents is the most records kept. Zero means DefaultMaxEvents.
	MaxEvents int
	// MaxBytes bounds the bytes kept, as Record.Size counts them: about
	// the memory a MemoryHistory takes, indexes included. Zero means
	// DefaultMaxBytes.
	MaxBytes int64
	// MaxAge is how long a record is kept. Zero means DefaultMaxAge.
	MaxAge time.Duration
	// PerTopic optionally caps, per topic, the records kept that carry
	// it; a record leaves when any of its topics is over its cap.
	PerTopic map[string]int
}

// Retention defaults: enough for clients offline for a while at a modest
// rate, and bounded in memory.
const (
	DefaultMaxEvents = 100_000
	DefaultMaxBytes  = 64 << 20
	DefaultMaxAge    = 24 * time.Hour
)

// WithDefaults returns r with every zero limit replaced by its default.
func (r Retention) WithDefaults() Retention {
	if r.MaxEvents <= 0 {
		r.MaxEvents = DefaultMaxEvents
	}
	if r.MaxBytes <= 0 {
		r.MaxBytes = DefaultMaxBytes
	}
	if r.MaxAge <= 0 {
		r.MaxAge = DefaultMaxAge
	}
	return r
}

// Matches reports whether one of selectors matches one of topics: whether
// a subscriber with those selectors receives an event with those topics.
func Matches(selectors []Selector, topics []string) bool {
	for _, t := range topics {
		for _, sel := range selectors {
			if sel.Match(t) {
				return true
			}
		}
	}
	return false
}
