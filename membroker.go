package herald

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"
)

// followPage is the most records a Follow batch carries.
const followPage = 512

// MemoryBroker is a [Broker] in one process: hubs sharing it behave as
// the nodes of a cluster. It serves tests and examples of cluster
// behaviour without a server; a real cluster uses the redis or nats
// package. The zero value is ready to use.
type MemoryBroker struct {
	// MaxEvents bounds the log, oldest records first. Zero means
	// DefaultMaxEvents.
	MaxEvents int

	mu      sync.Mutex
	epoch   string
	recs    []Record // positions consecutive: recs[i].Position == recs[0].Position+i
	head    uint64
	ids     map[string]int // publisher IDs retained, and how many records carry each
	changed chan struct{}  // closed, then replaced, when anything changes
	nodes   map[string]NodeStatus
	down    error
	closed  bool
}

func (m *MemoryBroker) initLocked() {
	if m.epoch == "" {
		m.epoch = NewEpoch()
		m.ids = make(map[string]int)
		m.nodes = make(map[string]NodeStatus)
		m.changed = make(chan struct{})
	}
}

// notifyLocked wakes every Follow.
func (m *MemoryBroker) notifyLocked() {
	close(m.changed)
	m.changed = make(chan struct{})
}

func (m *MemoryBroker) checkLocked() error {
	m.initLocked()
	if m.closed {
		return fmt.Errorf("%w: broker closed", ErrBrokerUnavailable)
	}
	if m.down != nil {
		return fmt.Errorf("%w: %w", ErrBrokerUnavailable, m.down)
	}
	return nil
}

// Append implements [Broker]. Publisher IDs are unique among the records
// the log retains.
func (m *MemoryBroker) Append(ctx context.Context, recs []Record) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.checkLocked(); err != nil {
		return "", err
	}
	for i, r := range recs {
		if r.ID == "" {
			continue
		}
		if m.ids[r.ID] > 0 || slices.ContainsFunc(recs[:i], func(o Record) bool { return o.ID == r.ID }) {
			return "", fmt.Errorf("%w: %q", ErrDuplicateID, r.ID)
		}
	}
	for i := range recs {
		m.head++
		recs[i].Position = m.head
		r := recs[i]
		r.Topics, r.ToUsers, r.ToConnections = slices.Clone(r.Topics), slices.Clone(r.ToUsers), slices.Clone(r.ToConnections)
		m.recs = append(m.recs, r)
		if r.ID != "" {
			m.ids[r.ID]++
		}
	}
	limit := m.MaxEvents
	if limit <= 0 {
		limit = DefaultMaxEvents
	}
	if over := len(m.recs) - limit; over > 0 {
		for _, r := range m.recs[:over] {
			if r.ID != "" {
				if m.ids[r.ID]--; m.ids[r.ID] == 0 {
					delete(m.ids, r.ID)
				}
			}
		}
		m.recs = slices.Clone(m.recs[over:])
	}
	m.notifyLocked()
	return m.epoch, nil
}

// Follow implements [Broker].
func (m *MemoryBroker) Follow(ctx context.Context, epoch string, after uint64, fn func(Batch) error) error {
	for {
		m.mu.Lock()
		if err := m.checkLocked(); err != nil {
			m.mu.Unlock()
			return err
		}
		if epoch != m.epoch {
			epoch, after = m.epoch, 0
		}
		var b Batch
		if after < m.head {
			first := m.recs[0].Position
			b.Lost = after+1 < first
			start := 0
			if after >= first {
				start = int(after - first + 1)
			}
			page := m.recs[start:min(len(m.recs), start+followPage)]
			b.Epoch, b.Records = epoch, slices.Clone(page)
		}
		changed := m.changed
		m.mu.Unlock()
		if len(b.Records) > 0 {
			if err := fn(b); err != nil {
				return err
			}
			after = b.Records[len(b.Records)-1].Position
			continue
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-changed:
		}
	}
}

// Head implements [Broker].
func (m *MemoryBroker) Head(ctx context.Context) (string, uint64, error) {
	if err := ctx.Err(); err != nil {
		return "", 0, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.checkLocked(); err != nil {
		return "", 0, err
	}
	return m.epoch, m.head, nil
}

// Announce implements [Broker].
func (m *MemoryBroker) Announce(ctx context.Context, st NodeStatus) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.checkLocked(); err != nil {
		return err
	}
	m.nodes[st.Node] = st
	return nil
}

// Nodes implements [Broker].
func (m *MemoryBroker) Nodes(ctx context.Context) ([]NodeStatus, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.checkLocked(); err != nil {
		return nil, err
	}
	cutoff := time.Now().Add(-NodeTTL)
	maps.DeleteFunc(m.nodes, func(_ string, st NodeStatus) bool { return st.Time.Before(cutoff) })
	nodes := slices.Collect(maps.Values(m.nodes))
	slices.SortFunc(nodes, func(a, b NodeStatus) int { return cmp.Compare(a.Node, b.Node) })
	return nodes, nil
}

// Close implements [Broker]: every call after it fails, and Follow
// returns.
func (m *MemoryBroker) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.initLocked()
	m.closed = true
	m.notifyLocked()
	return nil
}

// SetUnavailable makes the broker fail every call with err, as a broker
// that cannot be reached would, until SetUnavailable(nil). For tests of
// outages.
func (m *MemoryBroker) SetUnavailable(err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.initLocked()
	m.down = err
	m.notifyLocked()
}

// Wipe replaces the log by an empty one with a new epoch, as a broker
// restarted without its data would. For tests.
func (m *MemoryBroker) Wipe() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.initLocked()
	m.epoch, m.recs, m.head = NewEpoch(), nil, 0
	clear(m.ids)
	m.notifyLocked()
}

var _ Broker = (*MemoryBroker)(nil)
