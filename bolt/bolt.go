// Package bolt is a persistent [herald.History] in one bbolt file
// (go.etcd.io/bbolt): events survive restarts, so a client that
// reconnects after the hub restarted still resumes without a gap.
//
// # Writing
//
// [History.Append] runs under the hub's publish lock, so it never touches
// the disk: it numbers the records, adds them to an in-memory queue and
// wakes a writer goroutine. The writer commits everything queued in one
// bbolt transaction (group commit: while one transaction is being synced,
// the next batch fills up), applies retention in the same transaction, and
// then releases the publishers waiting on those records. Reads see queued
// records at once, before they are committed; what retention removes is
// gone for readers when the wait of the Append that exceeded a limit
// returns, and records older than MaxAge as soon as they are.
//
// Memory stays flat whatever the history's size: besides bbolt's mapped
// file (page cache, not heap), the store keeps only the queue, bounded
// (Append waits for the disk when the writer is far behind), with an
// index of its publisher IDs, a counter per capped topic, and the gaps of
// corrupt records found by readers until they are persisted.
//
// # Failed commits
//
// If a transaction fails (the disk is full, say), the publishes of its
// records fail, although subscribers already received them and the head
// moved past them. The records are gone like those a crash cuts off
// before their commit (see below): not acknowledged, so not a loss.
// Resumes over their positions continue without a reset, and nothing
// acknowledged becomes unreachable however long the failures last. While
// the last commit failed, [History.Healthy] says why (the hub's Ready,
// and /readyz, report it); the writer tries again every second and with
// every publish, and the first commit that succeeds makes it healthy.
//
// # Damaged files
//
// Each record carries a CRC-32C of its position and bytes. A record that
// fails it, found by Open (which reads every record) or by a replay, is
// logged and lost to everyone from then on (a gap, see Layout): a resume
// over it gets a reset; altered data is never served. Open refuses an
// empty (0-byte) file, which bbolt would silently make a new history, and
// a file whose structure is damaged (a page out of the file or of the
// wrong type, keys out of order, a cut file), with an error naming the
// file and what to do: bbolt would panic on it. That check reads the
// whole file: about 0.12 s for 100,000 records of 200 bytes. The indexes
// carry no checksum: a damaged index entry can hide a record from a
// topic's replay (never show it to another topic's).
//
// # What an acknowledged publish guarantees
//
// A publish is acknowledged when [herald.Hub.Publish] returns without
// error (the HTTP API then answers 200): the wait function returned by
// Append has seen its records' transaction commit.
//
//   - [SyncAlways] (the default): the transaction was fsynced (fdatasync)
//     before the acknowledgement. An acknowledged event survives a process
//     crash, a kernel crash and a power loss, as far as the disk honours
//     flushes.
//   - [SyncNever]: bbolt's NoSync; the transaction was written to the
//     operating system (the page cache) but not synced. An acknowledged
//     event survives the process crashing or being killed, but not a
//     kernel crash or power loss, which can lose recent events and, as
//     bbolt warns for NoSync, may leave the file corrupt: delete it then;
//     the new file has a new epoch, so clients resuming with IDs from the
//     old one start fresh (reset "foreign") instead of resuming wrongly.
//
// Under both policies, events not yet acknowledged when the process dies
// may be lost, although subscribers may already have received them (the
// hub delivers an event as soon as it is appended). Their positions are
// never reused: the store persists, synchronously and ahead of use, a
// reservation of positions it may hand out, and after a restart it
// continues after the reservation. A client resuming after the ID of a
// lost event is told the ID is unknown (the head after the restart is the
// last committed event) until newer events exist; it never skips an event
// published later under a reused position.
//
// # Layout
//
// Buckets: "records" maps the big-endian position to the encoded record
// and its checksum;
// "topics" holds topic + 0x00 + big-endian position for each topic of each
// record, so a replay for topic selectors seeks to each topic and walks
// only its records; "ids" holds id + 0x00 + big-endian position for
// publisher-supplied IDs; "meta" keeps the format version, the epoch, the
// committed head, the reservation, the record count and bytes, the number
// of holes, and "dropped": every position up to it counts as lost to
// everyone (it is the highest position removed by a global limit, raised
// when holes are folded into it). "holes" maps the big-endian position of
// a record removed by a per-topic cap to its encoded topics: it is lost only to selectors matching
// one of them. "holetopics" indexes them as topic + 0x00 + big-endian
// position, so Lost for topic selectors seeks instead of scanning. "gaps"
// maps the big-endian first position of a range lost to everyone to its
// last (corrupt records, folded holes); no retained record lies in one.
// Holes at or below dropped are deleted, and while there are more than
// MaxEvents the oldest is folded, into dropped if no record is retained
// below it, else into a gap: they stay bounded, paid for with caution
// (more resumes report a loss), as in [herald.MemoryHistory], without a
// retained record becoming unreachable.
package bolt

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/herald-sse/herald"
	"github.com/herald-sse/herald/internal/losses"
	bbolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// Sync is a durability policy: what an acknowledged publish survives.
type Sync int

const (
	// SyncAlways fsyncs every batch before its publishes are acknowledged:
	// they survive power loss.
	SyncAlways Sync = iota
	// SyncNever never fsyncs records: acknowledged publishes survive a
	// crash of the process, not of the machine.
	SyncNever
)

// String returns "always" or "never".
func (s Sync) String() string {
	switch s {
	case SyncAlways:
		return "always"
	case SyncNever:
		return "never"
	}
	return fmt.Sprintf("Sync(%d)", int(s))
}

// Options configure [Open].
type Options struct {
	// Retention bounds what is kept; zero fields take herald's defaults.
	// It may change between runs: Open applies the new limits.
	Retention herald.Retention
	// Sync is the durability policy; the zero value is SyncAlways.
	Sync Sync
	// LockTimeout is how long Open waits for the file lock another
	// process (or another Open of the same file) holds. Zero means one
	// second; negative means waiting forever.
	LockTimeout time.Duration
	// Logger reports corrupt records found; nil means slog.Default().
	Logger *slog.Logger
}

// ErrClosed is returned by Append after Close.
var ErrClosed = errors.New("bolt: history closed")

// Tuning. Variables so tests can make them small.
var (
	// reserveBlock is how many positions are reserved ahead of use by one
	// synchronous write.
	reserveBlock uint64 = 1 << 16
	// maxTxRecords and maxTxBytes bound one write transaction.
	maxTxRecords = 16384
	maxTxBytes   = 16 << 20
	// maxQueued and maxQueuedBytes bound the records waiting for the
	// writer: past them, Append waits for the disk.
	maxQueued      = 1 << 18
	maxQueuedBytes = 256 << 20
	// maxTrim bounds the records one transaction removes for the global
	// limits beyond those it adds, so a lowered limit is applied in steps.
	maxTrim = 50_000
	// retryInterval is how long after a failed commit the writer tries
	// again on its own, so that Healthy recovers without publishes.
	retryInterval = time.Second
)

// formatVersion 2 replaced version 1's per-topic loss marks ("lost",
// "lostpos") with holes; version 3 added to the record encoding who may
// receive it (Private, ToUsers, ToConnections); version 4 a checksum to
// each record, and the "gaps" bucket. Open converts older files.
const formatVersion = 4

var (
	bucketMeta       = []byte("meta")
	bucketRecords    = []byte("records")
	bucketTopics     = []byte("topics")
	bucketIDs        = []byte("ids")
	bucketHoles      = []byte("holes")
	bucketHoleTopics = []byte("holetopics")
	bucketGaps       = []byte("gaps")

	// Version 1 only.
	bucketLost    = []byte("lost")
	bucketLostPos = []byte("lostpos")

	keyVersion  = []byte("version")
	keyEpoch    = []byte("epoch")
	keyHead     = []byte("head")
	keyReserved = []byte("reserved")
	keyCount    = []byte("count")
	keyBytes    = []byte("bytes")
	keyDropped  = []byte("dropped")
	keyHoles    = []byte("holes")

	// keyUpgraded is, while Open converts a version 2 or 3 file's records
	// to the current encoding, the last position converted.
	keyUpgraded = []byte("upgraded")
)

// History is a [herald.History] in a bbolt file. Its methods are safe for
// concurrent use.
type History struct {
	db        *bbolt.DB
	path      string
	epoch     string
	retention herald.Retention
	noSync    bool
	log       *slog.Logger

	mu          sync.Mutex
	cond        *sync.Cond // broadcast when the writer finished a flush or the history closes
	closed      bool
	head        uint64            // last position handed out
	next        uint64            // next position to hand out
	reserved    uint64            // durable reservation: positions up to it may be handed out
	wantReserve uint64            // reservation the writer should persist
	resErr      error             // why the last reservation failed, until one succeeds
	queue       []*batch          // appended, not yet committed, in position order
	queued      int               // records in queue
	queuedBytes int               // their sizes
	queuedIDs   map[string]uint64 // publisher ID -> newest queued position carrying it
	newGaps     losses.Gaps       // ranges lost to everyone (corrupt records readers met), not yet persisted
	commitErr   error             // why the last commit failed, until one succeeds
	front       time.Time         // Time of the oldest retained record, zero if none
	started     uint64            // flushes the writer began
	finished    uint64            // flushes it completed
	paused      bool              // test hook: the writer leaves the queue alone
	crashing    bool              // test hook: the writer stops without flushing
	failCommits atomic.Int32      // test hook: that many commits fail

	kick chan struct{} // 1 slot: work for the writer
	stop chan struct{}
	done chan struct{} // closed when the writer returned

	st state // the writer's (and Open's) view of what is committed
}

// state is the committed bookkeeping, persisted in "meta" except capCount,
// counted at Open.
type state struct {
	head, reserved, count, dropped, holes uint64
	bytes                                 int64
	capCount                              map[string]int // live records per capped topic
	front                                 time.Time      // Time of the first record
}

func (s *state) clone() state {
	c := *s
	c.capCount = make(map[string]int, len(s.capCount))
	for k, v := range s.capCount {
		c.capCount[k] = v
	}
	return c
}

// Open opens the history stored at path, creating the file if needed, and
// starts its writer. Close it when done.
//
// A file that is not a sound history is an error naming it, never a
// panic nor a silent fresh start: an empty (0-byte) file, one that is not
// a bbolt file, and one whose structure is damaged (Open walks every page
// of the file; about a tenth of a second per 100,000 records). Records
// whose checksum fails are reported in the log and are lost from then on
// (a resume over one gets a reset), never served.
func Open(path string, opts Options) (_ *History, err error) {
	timeout := opts.LockTimeout
	switch {
	case timeout == 0:
		timeout = time.Second
	case timeout < 0:
		timeout = 0
	}
	if opts.Sync != SyncAlways && opts.Sync != SyncNever {
		return nil, fmt.Errorf("bolt: unknown sync policy %d", int(opts.Sync))
	}
	fi, err := os.Stat(path)
	if err == nil && fi.Size() == 0 {
		// bbolt would make it a new, empty history: the events it held
		// (if the file was cut by a failing disk or a bad copy) would be
		// forgotten without a word.
		return nil, fmt.Errorf("bolt: %s is empty (0 bytes), not a history: restore it from a backup, or delete it to start a fresh history", path)
	}
	if err == nil {
		if err := checkLocked(path, timeout); err != nil {
			return nil, err
		}
	}
	// Damage checkLocked missed may still make bbolt panic, or read past
	// the end of its mapping: both become an error naming the file.
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	var db *bbolt.DB
	defer func() {
		if p := recover(); p != nil {
			if db != nil {
				func() {
					defer func() { _ = recover() }()
					db.Close()
				}()
			}
			err = fmt.Errorf("bolt: %s is damaged (%v): restore it from a backup, or delete it to start a fresh history", path, p)
		}
	}()
	db, err = bbolt.Open(path, 0o600, &bbolt.Options{
		Timeout:        timeout,
		NoSync:         opts.Sync == SyncNever,
		FreelistType:   bbolt.FreelistMapType,
		NoFreelistSync: true,
	})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("bolt: %s is locked by another process (or another Open)", path)
	}
	if err != nil {
		return nil, fmt.Errorf("bolt: opening %s: %w (if the file is damaged, restore it from a backup, or delete it to start a fresh history)", path, err)
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.Default()
	}
	h := &History{
		db:        db,
		path:      path,
		retention: opts.Retention.WithDefaults(),
		noSync:    opts.Sync == SyncNever,
		log:       logger,
		queuedIDs: make(map[string]uint64),
		kick:      make(chan struct{}, 1),
		stop:      make(chan struct{}),
		done:      make(chan struct{}),
	}
	h.cond = sync.NewCond(&h.mu)
	if err := h.upgrade(); err != nil {
		db.Close()
		return nil, err
	}
	if err := h.load(); err != nil {
		db.Close()
		return nil, err
	}
	corrupt, err := h.check()
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("bolt: %s is damaged (%w): restore it from a backup, or delete it to start a fresh history", path, err)
	}
	var gaps losses.Gaps
	for i, pos := range corrupt {
		if i < 10 {
			h.log.Error("bolt: corrupt record, treated as lost: restore the file from a backup to get it back", "path", path, "position", pos)
		}
		gaps = gaps.Add(pos, pos)
	}
	if len(corrupt) > 10 {
		h.log.Error("bolt: more corrupt records, treated as lost", "path", path, "count", len(corrupt))
	}
	// Apply the retention, which may have changed since the last run.
	for {
		more, err := h.commit(nil, 0, gaps)
		if err != nil {
			db.Close()
			return nil, fmt.Errorf("bolt: applying retention: %w", err)
		}
		gaps = nil
		if !more {
			break
		}
	}
	h.front = h.st.front
	go h.run()
	return h, nil
}

// load creates or reads the buckets and meta, and reserves the first
// block of positions.
func (h *History) load() error {
	err := h.db.Update(func(tx *bbolt.Tx) error {
		for _, name := range [][]byte{bucketMeta, bucketRecords, bucketTopics, bucketIDs, bucketHoles, bucketHoleTopics, bucketGaps} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		meta := tx.Bucket(bucketMeta)
		switch v := meta.Get(keyVersion); {
		case v == nil:
			if err := meta.Put(keyVersion, u64(formatVersion)); err != nil {
				return err
			}
		case getU64(v) != formatVersion:
			return fmt.Errorf("bolt: %s has format version %d, this herald reads %d", h.path, getU64(v), formatVersion)
		}
		if e := meta.Get(keyEpoch); e != nil {
			h.epoch = string(e)
		} else {
			h.epoch = herald.NewEpoch()
			if err := meta.Put(keyEpoch, []byte(h.epoch)); err != nil {
				return err
			}
		}
		st := state{
			head:     getU64(meta.Get(keyHead)),
			reserved: getU64(meta.Get(keyReserved)),
			count:    getU64(meta.Get(keyCount)),
			bytes:    int64(getU64(meta.Get(keyBytes))),
			dropped:  getU64(meta.Get(keyDropped)),
			holes:    getU64(meta.Get(keyHoles)),
			capCount: make(map[string]int),
		}
		topics := tx.Bucket(bucketTopics).Cursor()
		for t := range h.retention.PerTopic {
			prefix := topicPrefix(t)
			n := 0
			for k, _ := topics.Seek(prefix); k != nil && isTopicKey(k, prefix); k, _ = topics.Next() {
				n++
			}
			st.capCount[t] = n
		}
		if _, v := tx.Bucket(bucketRecords).Cursor().First(); v != nil {
			st.front = decodeTime(v)
		}
		// Positions up to the old reservation may have been handed out
		// before a crash: continue after it.
		h.next = max(st.reserved, st.head) + 1
		h.head = st.head
		st.reserved = h.next - 1 + reserveBlock
		h.reserved, h.wantReserve = st.reserved, st.reserved
		h.st = st
		return meta.Put(keyReserved, u64(st.reserved))
	})
	if err == nil && h.noSync {
		err = h.db.Sync()
	}
	if err != nil {
		return fmt.Errorf("bolt: opening %s: %w", h.path, err)
	}
	return nil
}

// Path returns the file the history is stored in.
func (h *History) Path() string { return h.path }

// Epoch implements [herald.History]. It is created with the file and kept
// in it.
func (h *History) Epoch() string { return h.epoch }

// Head implements [herald.History]. After a restart it is the last
// committed record: a client resuming after a later ID it was given
// before a crash is told the ID is unknown.
func (h *History) Head() uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.head
}

// Close implements [herald.History]: it commits every queued record,
// stops the writer and closes the file. Append fails afterwards. Close is
// idempotent.
func (h *History) Close() error {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil
	}
	h.closed = true
	h.paused = false
	h.cond.Broadcast()
	h.mu.Unlock()
	close(h.stop)
	<-h.done
	h.mu.Lock()
	crashing := h.crashing
	h.mu.Unlock()
	var err error
	if !crashing {
		// Every position handed out is committed or failed: the next run
		// may continue right after the last one.
		h.mu.Lock()
		last := h.next - 1
		h.mu.Unlock()
		err = h.db.Update(func(tx *bbolt.Tx) error {
			return tx.Bucket(bucketMeta).Put(keyReserved, u64(last))
		})
	}
	if cerr := h.db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("bolt: closing %s: %w", h.path, err)
	}
	return nil
}
