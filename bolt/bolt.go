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
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"os"
	"runtime/debug"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/herald-sse/herald"
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

// pageSize is how many records Replay hands over at a time; no
// transaction is open while fn runs.
const pageSize = 256

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
	newGaps     []gap             // ranges lost to everyone (corrupt records readers met), not yet persisted
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

// hole is a record removed by a per-topic cap: lost to the selectors
// matching one of its topics.
type hole struct {
	pos    uint64
	topics []string
}

// gap is the positions from..to, lost to everyone; no record retained
// (and readable) lies in it. Holes beyond the bound fold into gaps, not
// into dropped, when retained records lie below them: folding them into
// dropped would make those records unreachable.
type gap struct{ from, to uint64 }

// addGap adds from..to to the ascending, disjoint gaps, merging it with
// those it overlaps or touches.
func addGap(gaps []gap, from, to uint64) []gap {
	i := sort.Search(len(gaps), func(i int) bool { return gaps[i].to+1 >= from })
	j := i
	for j < len(gaps) && gaps[j].from <= to+1 {
		from, to = min(from, gaps[j].from), max(to, gaps[j].to)
		j++
	}
	return slices.Replace(gaps, i, j, gap{from, to})
}

// removeGap takes the positions of g out of the ascending, disjoint
// gaps.
func removeGap(gaps []gap, g gap) []gap {
	var out []gap
	for _, x := range gaps {
		if x.to < g.from || x.from > g.to {
			out = append(out, x)
			continue
		}
		if x.from < g.from {
			out = append(out, gap{x.from, g.from - 1})
		}
		if x.to > g.to {
			out = append(out, gap{g.to + 1, x.to})
		}
	}
	return out
}

// gapsLost reports whether one of the ascending, disjoint gaps has a
// position in (after, upTo].
func gapsLost(gaps []gap, after, upTo uint64) bool {
	i := sort.Search(len(gaps), func(i int) bool { return gaps[i].to > after })
	return i < len(gaps) && gaps[i].from <= upTo
}

// batch is records appended together; their publishers wait on done.
type batch struct {
	recs  []herald.Record
	taken bool // the writer is committing it
	done  chan struct{}
	err   error
	wait  func() error
}

func newBatch() *batch {
	b := &batch{done: make(chan struct{})}
	b.wait = func() error {
		<-b.done
		return b.err
	}
	return b
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
	var gaps []gap
	for i, pos := range corrupt {
		if i < 10 {
			h.log.Error("bolt: corrupt record, treated as lost: restore the file from a backup to get it back", "path", path, "position", pos)
		}
		gaps = addGap(gaps, pos, pos)
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

// checkLocked checks the structure of the existing file at path (see
// checkStructure) under a shared lock, which fails while another process
// writes it.
func checkLocked(path string, timeout time.Duration) (err error) {
	ro, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true, Timeout: timeout})
	switch {
	case errors.Is(err, bolterrors.ErrTimeout):
		return fmt.Errorf("bolt: %s is locked by another process (or another Open)", path)
	case err != nil:
		return fmt.Errorf("bolt: opening %s: %w (if the file is damaged, restore it from a backup, or delete it to start a fresh history)", path, err)
	}
	defer ro.Close()
	if err := checkStructure(path); err != nil {
		return fmt.Errorf("bolt: %s is damaged (%w): restore it from a backup, or delete it to start a fresh history", path, err)
	}
	return nil
}

// check reads every record and returns the positions of those whose
// checksum fails that no gap covers yet.
func (h *History) check() (corrupt []uint64, err error) {
	err = h.db.View(func(tx *bbolt.Tx) error {
		c := tx.Bucket(bucketRecords).Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if len(k) != 8 {
				return fmt.Errorf("a record key of %d bytes", len(k))
			}
			if _, err := verified(getU64(k), v); err != nil && !lostIn(tx, getU64(k)-1, getU64(k), nil, nil) {
				corrupt = append(corrupt, getU64(k))
			}
		}
		return nil
	})
	return corrupt, err
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

// upgradeV1 converts a version 1 file: its per-topic marks (the highest
// position removed by a cap from a record carrying the topic) do not say
// which positions below them are gone, so they are folded into dropped,
// which is cautious: resumes from before the highest of them report a
// loss once.
func upgradeV1(tx *bbolt.Tx) error {
	meta := tx.Bucket(bucketMeta)
	dropped := getU64(meta.Get(keyDropped))
	if lost := tx.Bucket(bucketLost); lost != nil {
		if err := lost.ForEach(func(_, v []byte) error {
			dropped = max(dropped, getU64(v))
			return nil
		}); err != nil {
			return err
		}
	}
	for _, name := range [][]byte{bucketLost, bucketLostPos} {
		if err := tx.DeleteBucket(name); err != nil && !errors.Is(err, bolterrors.ErrBucketNotFound) {
			return err
		}
	}
	if err := meta.Put(keyDropped, u64(dropped)); err != nil {
		return err
	}
	if err := meta.Put(keyHoles, u64(0)); err != nil {
		return err
	}
	return meta.Put(keyVersion, u64(2))
}

// upgrade converts a file of an older format version, if it is one: a
// version 1 file to version 2, then a version 2 or 3 file's records to
// the current encoding, a bounded batch per transaction; the last position
// converted is kept in "meta" meanwhile, so a conversion interrupted by a
// crash resumes where it stopped. Only then is the version set.
func (h *History) upgrade() error {
	var version uint64
	err := h.db.Update(func(tx *bbolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if meta == nil {
			return nil // a new file
		}
		version = getU64(meta.Get(keyVersion))
		if version == 1 {
			if err := upgradeV1(tx); err != nil {
				return err
			}
			version = 2
		}
		return nil
	})
	for err == nil && (version == 2 || version == 3) {
		err = h.db.Update(func(tx *bbolt.Tx) error {
			done, err := upgradeStep(tx, int(version), maxTxRecords, maxTxBytes)
			if done {
				version = formatVersion
			}
			return err
		})
	}
	if err != nil {
		return fmt.Errorf("bolt: upgrading %s to format version %d: %w", h.path, formatVersion, err)
	}
	return nil
}

// upgradeStep re-encodes the next records of a file of version from (2
// or 3; at most maxRecords, and about maxBytes) in the current encoding,
// and sets the version when none are left.
func upgradeStep(tx *bbolt.Tx, from, maxRecords, maxBytes int) (done bool, err error) {
	meta := tx.Bucket(bucketMeta)
	records := tx.Bucket(bucketRecords)
	if records == nil {
		return true, meta.Put(keyVersion, u64(formatVersion))
	}
	type kv struct{ k, v []byte }
	var batch []kv
	size := 0
	c := records.Cursor()
	var k, v []byte
	if last := meta.Get(keyUpgraded); last != nil {
		k, v = c.Seek(u64(getU64(last) + 1))
	} else {
		k, v = c.First()
	}
	// Collect first: a bucket must not change under a cursor walking it.
	for ; k != nil && len(batch) < maxRecords && size < maxBytes; k, v = c.Next() {
		r, err := decodeVersion(getU64(k), v, from)
		if err != nil {
			return false, fmt.Errorf("record %d: %w", getU64(k), err)
		}
		r.Position = getU64(k)
		enc := encode(make([]byte, 0, len(v)+8), &r)
		batch = append(batch, kv{slices.Clone(k), enc})
		size += len(enc)
	}
	for _, e := range batch {
		if err := records.Put(e.k, e.v); err != nil {
			return false, err
		}
	}
	if k != nil {
		return false, meta.Put(keyUpgraded, batch[len(batch)-1].k)
	}
	if err := meta.Delete(keyUpgraded); err != nil {
		return false, err
	}
	// herald.Record.Size counts more since version 4: the byte total
	// must be what removing the records will subtract.
	var total int64
	rc := records.Cursor()
	for k, v := rc.First(); k != nil; k, v = rc.Next() {
		r, err := decode(getU64(k), v)
		if err != nil {
			return false, fmt.Errorf("record %d: %w", getU64(k), err)
		}
		total += int64(r.Size())
	}
	if err := meta.Put(keyBytes, u64(uint64(total))); err != nil {
		return false, err
	}
	return true, meta.Put(keyVersion, u64(formatVersion))
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

// Append implements [herald.History]. It only queues the records; the
// returned wait blocks until the writer committed them (and synced them,
// under SyncAlways). It fails after Close, and for topics or IDs
// containing NUL (which the hub never publishes).
func (h *History) Append(recs []herald.Record) (func() error, error) {
	size := 0
	for i := range recs {
		r := &recs[i]
		if strings.IndexByte(r.ID, 0) >= 0 || len(r.ID) > bbolt.MaxKeySize-9 {
			return nil, fmt.Errorf("bolt: id with NUL or longer than %d bytes", bbolt.MaxKeySize-9)
		}
		for _, t := range r.Topics {
			if strings.IndexByte(t, 0) >= 0 || len(t) > bbolt.MaxKeySize-9 {
				return nil, fmt.Errorf("bolt: topic with NUL or longer than %d bytes", bbolt.MaxKeySize-9)
			}
		}
		size += r.Size()
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(recs) == 0 {
		return nil, nil
	}
	// Wait while the writer is far behind (the disk is too slow for the
	// publish rate), and for a reservation covering the positions: one
	// is normally persisted long before it is needed.
	for {
		if h.closed {
			return nil, ErrClosed
		}
		last := h.next + uint64(len(recs)) - 1
		if last+reserveBlock/2 > h.wantReserve {
			h.wantReserve = last + reserveBlock
			h.wakeWriter()
		}
		if last <= h.reserved && (h.queued < maxQueued && h.queuedBytes < maxQueuedBytes || h.queued == 0) {
			break
		}
		if last > h.reserved && h.resErr != nil {
			// Fail this publish; the next one has the writer try again.
			err := h.resErr
			h.resErr = nil
			h.wakeWriter()
			return nil, fmt.Errorf("bolt: reserving positions: %w", err)
		}
		h.cond.Wait()
	}
	var b *batch
	if n := len(h.queue); n > 0 && !h.queue[n-1].taken && len(h.queue[n-1].recs) < maxTxRecords {
		b = h.queue[n-1]
	} else {
		b = newBatch()
		h.queue = append(h.queue, b)
	}
	now := time.Now()
	for i := range recs {
		recs[i].Position = h.next
		h.next++
		r := recs[i]
		if r.Time.IsZero() {
			r.Time = now
		}
		if r.ID != "" {
			h.queuedIDs[r.ID] = r.Position
		}
		r.Topics = slices.Clone(r.Topics)
		r.ToUsers = slices.Clone(r.ToUsers)
		r.ToConnections = slices.Clone(r.ToConnections)
		b.recs = append(b.recs, r)
	}
	if h.front.IsZero() {
		h.front = b.recs[len(b.recs)-len(recs)].Time
	}
	h.head = h.next - 1
	h.queued += len(recs)
	h.queuedBytes += size
	h.wakeWriter()
	return b.wait, nil
}

// Healthy implements [herald.HealthChecker]: while the last commit failed
// (the disk is full, say), it returns why, and publishes fail. The writer
// tries again every second, and with every publish; the first commit that
// succeeds makes it healthy again.
func (h *History) Healthy() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.commitErr != nil {
		return fmt.Errorf("bolt: the last commit to %s failed, publishes fail until one succeeds: %w", h.path, h.commitErr)
	}
	return nil
}

func (h *History) wakeWriter() {
	select {
	case h.kick <- struct{}{}:
	default:
	}
}

// run is the writer: it commits what is queued, and removes records as
// they age out.
func (h *History) run() {
	defer close(h.done)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		h.mu.Lock()
		front, failing := h.front, h.commitErr != nil
		h.mu.Unlock()
		var wait time.Duration = -1
		if !front.IsZero() {
			wait = max(time.Until(front.Add(h.retention.MaxAge)), 0) + time.Millisecond
		}
		if failing && (wait < 0 || wait > retryInterval) {
			wait = retryInterval
		}
		if wait >= 0 {
			timer.Reset(wait)
		}
		select {
		case <-h.kick:
		case <-timer.C:
		case <-h.stop:
			for h.flush() {
			}
			return
		}
		timer.Stop()
		for h.flush() {
		}
	}
}

// flush commits one transaction of queued records (and retention) and
// reports whether more work is waiting.
func (h *History) flush() bool {
	h.mu.Lock()
	if h.paused || h.crashing {
		h.mu.Unlock()
		return false
	}
	var take []*batch
	n, size := 0, 0
	for _, b := range h.queue {
		if len(take) > 0 && (n+len(b.recs) > maxTxRecords || size > maxTxBytes) {
			break
		}
		b.taken = true
		take = append(take, b)
		n += len(b.recs)
		for i := range b.recs {
			size += b.recs[i].Size()
		}
	}
	wantReserve := h.wantReserve
	expire := !h.front.IsZero() && h.front.Before(time.Now().Add(-h.retention.MaxAge))
	gaps := slices.Clone(h.newGaps)
	probe := h.commitErr != nil // a commit after a failure shows whether the store writes again
	h.started++
	gen := h.started
	h.mu.Unlock()

	var recs []herald.Record
	if len(take) == 1 {
		recs = take[0].recs
	} else {
		for _, b := range take {
			recs = append(recs, b.recs...)
		}
	}
	var (
		more      bool
		err       error
		reserved  = h.st.reserved
		committed = false
	)
	if len(recs) > 0 || wantReserve > reserved || expire || len(gaps) > 0 || probe {
		more, err = h.commit(recs, wantReserve, gaps)
		committed = err == nil
	}
	var resErr error
	if committed && h.st.reserved > reserved && h.noSync {
		// The reservation must survive a power loss even when records
		// need not.
		resErr = h.db.Sync()
	}

	h.mu.Lock()
	for _, b := range take {
		for i := range b.recs {
			r := &b.recs[i]
			if p, ok := h.queuedIDs[r.ID]; ok && p <= r.Position {
				delete(h.queuedIDs, r.ID) // no newer queued record carries it
			}
		}
	}
	if committed {
		// Readers may have added gaps meanwhile; those of the snapshot
		// are on disk.
		for _, g := range gaps {
			h.newGaps = removeGap(h.newGaps, g)
		}
		h.commitErr = nil
	}
	if err != nil {
		// The records were never stored: their publishes fail, and they
		// are gone like those a crash cuts off before their commit (see
		// the package doc). They are not lost events: nothing
		// acknowledged is missing, so resumes over their positions
		// continue without a reset.
		h.commitErr = err
	}
	k := copy(h.queue, h.queue[len(take):])
	clear(h.queue[k:])
	h.queue = h.queue[:k]
	h.queued -= n
	h.queuedBytes -= size
	switch {
	case err != nil && wantReserve > reserved:
		h.resErr = err
	case resErr != nil:
		h.resErr = resErr
	case committed:
		h.reserved = h.st.reserved
		h.resErr = nil
	}
	switch {
	case !h.st.front.IsZero():
		h.front = h.st.front
	case len(h.queue) > 0:
		h.front = h.queue[0].recs[0].Time
	default:
		h.front = time.Time{}
	}
	h.finished = gen
	more = more || len(h.queue) > 0
	h.cond.Broadcast()
	h.mu.Unlock()

	if err != nil {
		err = fmt.Errorf("bolt: committing to %s: %w", h.path, err)
	}
	for _, b := range take {
		b.err = err
		close(b.done)
	}
	return more
}

// commit writes the gaps not yet persisted and recs, and applies
// retention, in one transaction, updating h.st if it commits. It reports
// whether the global limits still need another transaction.
func (h *History) commit(recs []herald.Record, reserve uint64, gaps []gap) (more bool, err error) {
	st := h.st.clone()
	st.reserved = max(st.reserved, reserve)
	err = h.db.Update(func(tx *bbolt.Tx) error {
		w := writeTx{
			h:          h,
			st:         &st,
			meta:       tx.Bucket(bucketMeta),
			records:    tx.Bucket(bucketRecords),
			topics:     tx.Bucket(bucketTopics),
			ids:        tx.Bucket(bucketIDs),
			holes:      tx.Bucket(bucketHoles),
			holeTopics: tx.Bucket(bucketHoleTopics),
			gaps:       tx.Bucket(bucketGaps),
		}
		w.records.FillPercent = 1 // keys only ever grow
		for _, g := range gaps {
			if err := w.addGap(g.from, g.to); err != nil {
				return err
			}
		}
		for i := range recs {
			if err := w.insert(&recs[i]); err != nil {
				return err
			}
		}
		// Caps lowered since the last run.
		budget := maxTrim + len(recs)
		for t, n := range st.capCount {
			for ; n > h.retention.PerTopic[t] && budget > 0; n = st.capCount[t] {
				budget--
				if err := w.removeOldestOf(t); err != nil {
					return err
				}
			}
			more = more || n > h.retention.PerTopic[t]
		}
		trimmed, err := w.trim(budget)
		if err != nil {
			return err
		}
		more = more || trimmed
		if h.failCommits.Load() > 0 && h.failCommits.Add(-1) >= 0 {
			return errInjected
		}
		return w.finish()
	})
	if err == nil {
		h.st = st
	}
	return more, err
}

// errInjected is the failure of a commit the failCommits hook fails.
var errInjected = errors.New("injected failure")

// writeTx is the work of one write transaction.
type writeTx struct {
	h                                                   *History
	st                                                  *state
	meta, records, topics, ids, holes, holeTopics, gaps *bbolt.Bucket
}

func (w *writeTx) insert(r *herald.Record) error {
	// bbolt keeps the keys and values put until the commit: each gets
	// its own slice.
	pos := u64(r.Position)
	if err := w.records.Put(pos, encode(make([]byte, 0, 32+r.Size()), r)); err != nil {
		return err
	}
	for i, t := range r.Topics {
		if slices.Contains(r.Topics[:i], t) {
			continue
		}
		if err := w.topics.Put(indexKey(t, pos), nil); err != nil {
			return err
		}
		if _, ok := w.st.capCount[t]; ok {
			w.st.capCount[t]++
		}
	}
	if r.ID != "" {
		if err := w.ids.Put(indexKey(r.ID, pos), nil); err != nil {
			return err
		}
	}
	w.st.count++
	w.st.bytes += int64(r.Size())
	w.st.head = max(w.st.head, r.Position)
	if w.st.front.IsZero() {
		w.st.front = r.Time
	}
	for i, t := range r.Topics {
		limit, ok := w.h.retention.PerTopic[t]
		if !ok || slices.Contains(r.Topics[:i], t) {
			continue
		}
		for w.st.capCount[t] > limit {
			if err := w.removeOldestOf(t); err != nil {
				return err
			}
		}
	}
	return nil
}

// removeOldestOf removes the oldest record carrying t, over its cap.
func (w *writeTx) removeOldestOf(t string) error {
	prefix := topicPrefix(t)
	k, _ := w.topics.Cursor().Seek(prefix)
	if k == nil || !isTopicKey(k, prefix) {
		w.st.capCount[t] = 0 // cannot happen: the count says otherwise
		return nil
	}
	pos := binary.BigEndian.Uint64(k[len(prefix):])
	if w.records.Get(k[len(prefix):]) == nil {
		// The entry of a corrupt record removed without its topics.
		w.st.capCount[t]--
		return w.topics.Delete(slices.Clone(k))
	}
	return w.remove(pos, true)
}

// remove deletes the record at pos and its index entries. A record
// removed by a cap becomes a hole; one removed by a global limit (always
// the oldest) is lost to everyone.
func (w *writeTx) remove(pos uint64, byCap bool) error {
	pk := u64(pos)
	v := w.records.Get(pk)
	if v == nil {
		return nil
	}
	r, err := decode(pos, v)
	if err != nil {
		// Corrupt: its index entries cannot be found, and stay (readers
		// skip entries without a record). Retention must go on.
		w.h.log.Error("bolt: removing a corrupt record", "path", w.h.path, "position", pos, "error", err)
		w.st.count--
		w.st.bytes -= int64(len(v))
		if err := w.records.Delete(pk); err != nil {
			return err
		}
		if byCap {
			return w.addGap(pos, pos)
		}
		w.st.dropped = max(w.st.dropped, pos)
		return nil
	}
	if err := w.records.Delete(pk); err != nil {
		return err
	}
	for i, t := range r.Topics {
		if slices.Contains(r.Topics[:i], t) {
			continue
		}
		if err := w.topics.Delete(indexKey(t, pk)); err != nil {
			return err
		}
		if _, ok := w.st.capCount[t]; ok {
			w.st.capCount[t]--
		}
	}
	if r.ID != "" {
		if err := w.ids.Delete(indexKey(r.ID, pk)); err != nil {
			return err
		}
	}
	w.st.count--
	w.st.bytes -= int64(r.Size())
	if byCap {
		// Lost to subscribers of any of its topics, not only the capped one.
		return w.addHole(pos, r.Topics)
	}
	w.st.dropped = max(w.st.dropped, pos)
	return nil
}

// addHole records that the record at pos with topics is gone, unless
// dropped covers it, and keeps the holes bounded.
func (w *writeTx) addHole(pos uint64, topics []string) error {
	if pos <= w.st.dropped {
		return nil
	}
	pk := u64(pos)
	if w.holes.Get(pk) != nil {
		return nil // cannot happen: a position is removed once
	}
	if err := w.holes.Put(pk, encodeTopics(nil, topics)); err != nil {
		return err
	}
	for i, t := range topics {
		if slices.Contains(topics[:i], t) {
			continue
		}
		if err := w.holeTopics.Put(indexKey(t, pk), nil); err != nil {
			return err
		}
	}
	w.st.holes++
	return w.forgetHoles()
}

// forgetHoles deletes the holes that dropped covers, and folds the oldest
// while there are more than MaxEvents: into dropped if no record is
// retained below it, else into a gap, so that no retained record becomes
// unreachable. They stay bounded, paid for with caution (more resumes
// report a loss). Then it tidies the gaps.
func (w *writeTx) forgetHoles() error {
	first := w.firstRecord()
	c := w.holes.Cursor()
	var topics []string
	for k, v := c.First(); k != nil; k, v = c.First() {
		pos := binary.BigEndian.Uint64(k)
		if pos > w.st.dropped && w.st.holes <= uint64(w.h.retention.MaxEvents) {
			break
		}
		var err error
		topics, err = decodeTopicList(topics[:0], v, nil)
		if err != nil {
			return fmt.Errorf("hole %d: %w", pos, err)
		}
		for _, t := range topics {
			if err := w.holeTopics.Delete(indexKey(t, k)); err != nil {
				return err
			}
		}
		if err := c.Delete(); err != nil {
			return err
		}
		w.st.holes--
		switch {
		case pos <= w.st.dropped:
		case first == 0 || pos < first:
			w.st.dropped = pos
		default:
			if err := w.addGap(pos, pos); err != nil {
				return err
			}
		}
	}
	if k, _ := c.First(); k == nil {
		w.st.holes = 0 // the count can only be wrong in a damaged file
	}
	return w.forgetGaps(first)
}

// firstRecord returns the oldest retained position, 0 if none.
func (w *writeTx) firstRecord() uint64 {
	k, _ := w.records.Cursor().First()
	if k == nil {
		return 0
	}
	return binary.BigEndian.Uint64(k)
}

// forgetGaps deletes the gaps dropped covers, and folds into dropped
// those below the oldest retained record (first, 0 if none).
func (w *writeTx) forgetGaps(first uint64) error {
	c := w.gaps.Cursor()
	for k, v := c.First(); k != nil; k, v = c.First() {
		to := getU64(v)
		switch {
		case to <= w.st.dropped:
		case first == 0 || to < first:
			w.st.dropped = to
		default:
			return nil
		}
		if err := c.Delete(); err != nil {
			return err
		}
	}
	return nil
}

// addGap records that from..to is lost to everyone, merged with the gaps
// it overlaps or touches, and with its neighbours when no record is
// retained between them (which keeps the gaps fewer than the records).
func (w *writeTx) addGap(from, to uint64) error {
	if to <= w.st.dropped {
		return nil
	}
	from = max(from, w.st.dropped+1)
	c := w.gaps.Cursor()
	// The gap before (or holding) from.
	k, v := c.Seek(u64(from + 1))
	if k == nil {
		k, v = c.Last()
	} else {
		k, v = c.Prev()
	}
	if k != nil && w.noRecordBetween(getU64(v), from) {
		from = min(from, getU64(k))
		to = max(to, getU64(v))
	}
	// The gaps after from that it reaches.
	for k, v = c.Seek(u64(from)); k != nil; k, v = c.Seek(u64(from)) {
		start := getU64(k)
		if start > to+1 && !w.noRecordBetween(to, start) {
			break
		}
		to = max(to, getU64(v))
		if err := w.gaps.Delete(k); err != nil {
			return err
		}
	}
	return w.gaps.Put(u64(from), u64(to))
}

// noRecordBetween reports whether no record is retained strictly between
// a and b.
func (w *writeTx) noRecordBetween(a, b uint64) bool {
	if b <= a+1 {
		return true
	}
	k, _ := w.records.Cursor().Seek(u64(a + 1))
	return k == nil || binary.BigEndian.Uint64(k) >= b
}

// trim removes the oldest records while a global limit is exceeded, at
// most budget of them, and reports whether it stopped early.
func (w *writeTx) trim(budget int) (bool, error) {
	ret := w.h.retention
	cutoff := time.Now().Add(-ret.MaxAge)
	c := w.records.Cursor()
	for k, v := c.First(); k != nil; k, v = c.First() {
		if w.st.count <= uint64(ret.MaxEvents) && w.st.bytes <= ret.MaxBytes && !decodeTime(v).Before(cutoff) {
			break
		}
		if budget == 0 {
			return true, nil
		}
		budget--
		if err := w.remove(binary.BigEndian.Uint64(k), false); err != nil {
			return false, err
		}
	}
	w.st.front = time.Time{}
	if _, v := c.First(); v != nil {
		w.st.front = decodeTime(v)
	}
	// Holes at or below dropped say nothing more than dropped does.
	return false, w.forgetHoles()
}

func (w *writeTx) finish() error {
	for _, kv := range []struct {
		k []byte
		v uint64
	}{
		{keyHead, w.st.head}, {keyReserved, w.st.reserved}, {keyCount, w.st.count},
		{keyBytes, uint64(w.st.bytes)}, {keyDropped, w.st.dropped}, {keyHoles, w.st.holes},
	} {
		if err := w.meta.Put(kv.k, u64(kv.v)); err != nil {
			return err
		}
	}
	return nil
}

// expireDue has the writer remove records that aged out, if the oldest
// did, before a read answers.
func (h *History) expireDue() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.front.IsZero() || !h.front.Before(time.Now().Add(-h.retention.MaxAge)) {
		return
	}
	want := h.started + 1
	h.wakeWriter()
	for h.finished < want && !h.closed && !h.paused {
		h.cond.Wait()
	}
}

// Lookup implements [herald.History] with the "ids" index, after the
// records not yet committed.
func (h *History) Lookup(id string) (uint64, bool) {
	if id == "" {
		return 0, false
	}
	h.expireDue()
	h.mu.Lock()
	pos, ok := h.queuedIDs[id]
	h.mu.Unlock()
	if ok {
		return pos, true
	}
	var found bool
	_ = h.db.View(func(tx *bbolt.Tx) error {
		prefix := append([]byte(id), 0)
		c := tx.Bucket(bucketIDs).Cursor()
		k, _ := c.Seek(append([]byte(id), 1))
		if k == nil {
			k, _ = c.Last()
		} else {
			k, _ = c.Prev()
		}
		if k != nil && len(k) == len(prefix)+8 && bytes.HasPrefix(k, prefix) {
			pos, found = binary.BigEndian.Uint64(k[len(prefix):]), true
		}
		return nil
	})
	return pos, found
}

// Lost implements [herald.History]. Records removed by the global limits
// are lost to everyone; those removed by a per-topic cap, or whose commit
// failed, to the selectors matching one of their topics.
func (h *History) Lost(after, upTo uint64, selectors []herald.Selector) bool {
	if after >= upTo {
		return false
	}
	h.expireDue()
	// The gaps before the file: the writer deletes them from memory only
	// once a transaction persisted them.
	h.mu.Lock()
	lost := gapsLost(h.newGaps, after, upTo)
	h.mu.Unlock()
	if lost {
		return true
	}
	lost = true
	_ = h.db.View(func(tx *bbolt.Tx) error {
		lost = lostIn(tx, after, upTo, selectors, topicNames(selectors))
		return nil
	})
	return lost
}

// topicNames returns the distinct names of selectors if they are all
// Topics, else nil.
func topicNames(selectors []herald.Selector) []string {
	var names []string
	for _, s := range selectors {
		t, ok := s.(herald.Topic)
		if !ok {
			return nil
		}
		if !slices.Contains(names, string(t)) {
			names = append(names, string(t))
		}
	}
	return names
}

// lostIn is Lost as committed: dropped, the gaps, then the holes in
// (after, upTo], through the "holetopics" index if topics (the names of
// selectors) is not nil.
func lostIn(tx *bbolt.Tx, after, upTo uint64, selectors []herald.Selector, topics []string) bool {
	if after >= upTo {
		return false
	}
	if getU64(tx.Bucket(bucketMeta).Get(keyDropped)) > after {
		return true
	}
	// Gaps are disjoint: the last one starting at or before upTo ends
	// last among those.
	gc := tx.Bucket(bucketGaps).Cursor()
	k, v := gc.Seek(u64(upTo + 1))
	if k == nil {
		k, v = gc.Last()
	} else {
		k, v = gc.Prev()
	}
	if k != nil && getU64(v) > after {
		return true
	}
	from := u64(after + 1)
	if topics != nil {
		c := tx.Bucket(bucketHoleTopics).Cursor()
		for _, t := range topics {
			prefix := topicPrefix(t)
			k, _ := c.Seek(append(prefix, from...))
			if k != nil && isTopicKey(k, prefix) && binary.BigEndian.Uint64(k[len(prefix):]) <= upTo {
				return true
			}
		}
		return false
	}
	var names []string
	c := tx.Bucket(bucketHoles).Cursor()
	for k, v := c.Seek(from); k != nil && binary.BigEndian.Uint64(k) <= upTo; k, v = c.Next() {
		var err error
		names, err = decodeTopicList(names[:0], v, nil)
		if err != nil || herald.Matches(selectors, names) {
			return true
		}
	}
	return false
}

// Replay implements [herald.History]. With only Topic selectors it seeks
// each topic's index and reads only the matching records; otherwise it
// scans the records in the range. It stops at the head as of the call.
func (h *History) Replay(after, upTo uint64, selectors []herald.Selector, fn func([]herald.Record) error) error {
	upTo = min(upTo, h.Head())
	topics := topicNames(selectors)
	// Pages grow to pageSize as needed: allocating and clearing a full
	// one (43 KB) per call cost more than most replays themselves.
	var page, pending []herald.Record
	// Only (cursor, upTo] matters: what was handed to fn may go.
	for cursor := after; cursor < upTo; {
		h.expireDue()
		// Snapshot the queue before the transaction: what the writer
		// commits in between is then in the transaction.
		pending, truncated, lost := h.pendingPage(pending[:0], cursor, upTo, selectors)
		if lost {
			return herald.ErrHistoryLost
		}
		var scanned uint64
		page = page[:0]
		err := h.db.View(func(tx *bbolt.Tx) error {
			if lostIn(tx, cursor, upTo, selectors, topics) {
				return herald.ErrHistoryLost
			}
			limit := min(upTo, getU64(tx.Bucket(bucketMeta).Get(keyHead)))
			var err error
			if topics != nil {
				page, err = pageByTopic(tx, page, cursor, limit, topics)
			} else {
				page, err = pageByScan(tx, page, cursor, limit, selectors)
			}
			if err != nil {
				return err
			}
			if len(page) == pageSize {
				scanned = page[len(page)-1].Position
				return nil
			}
			scanned = max(cursor, limit)
			if limit >= upTo {
				return nil
			}
			for _, r := range pending {
				if r.Position <= limit {
					continue
				}
				if len(page) == pageSize {
					return nil
				}
				page = append(page, r)
				scanned = r.Position
			}
			if !truncated {
				scanned = upTo
			}
			return nil
		})
		clear(pending)
		if ce := (*corruptError)(nil); errors.As(err, &ce) {
			h.markCorrupt(ce.pos, ce.err)
			return herald.ErrHistoryLost
		}
		if err != nil {
			return err
		}
		if len(page) > 0 {
			if err := fn(page); err != nil {
				return err
			}
			clear(page)
		}
		if scanned <= cursor {
			return fmt.Errorf("bolt: replay made no progress after %d", cursor) // a bug
		}
		cursor = scanned
	}
	return nil
}

// pendingPage appends to page the queued records after cursor up to upTo
// that selectors match, at most a page of them; truncated says whether it
// stopped for that, lost whether a gap not yet persisted is there.
func (h *History) pendingPage(page []herald.Record, cursor, upTo uint64, selectors []herald.Selector) (_ []herald.Record, truncated, lost bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if gapsLost(h.newGaps, cursor, upTo) {
		return page, false, true
	}
	for _, b := range h.queue {
		recs := b.recs
		if recs[len(recs)-1].Position <= cursor {
			continue
		}
		i := sort.Search(len(recs), func(i int) bool { return recs[i].Position > cursor })
		for _, r := range recs[i:] {
			if r.Position > upTo {
				return page, false, false
			}
			if herald.Matches(selectors, r.Topics) {
				if len(page) == pageSize {
					return page, true, false
				}
				page = append(page, r)
			}
		}
	}
	return page, false, false
}

// pageByTopic merges the index entries of topics after cursor up to
// limit, reading each record once even if it carries several of them.
func pageByTopic(tx *bbolt.Tx, page []herald.Record, cursor, limit uint64, topics []string) ([]herald.Record, error) {
	type walk struct {
		c      *bbolt.Cursor
		prefix []byte
		pos    uint64 // current entry; 0 when done
	}
	index := tx.Bucket(bucketTopics)
	walks := make([]walk, 0, len(topics))
	for _, t := range topics {
		w := walk{c: index.Cursor(), prefix: topicPrefix(t)}
		k, _ := w.c.Seek(append(slices.Clip(w.prefix), u64(cursor+1)...))
		if k != nil && isTopicKey(k, w.prefix) {
			w.pos = binary.BigEndian.Uint64(k[len(w.prefix):])
			walks = append(walks, w)
		}
	}
	records := tx.Bucket(bucketRecords).Cursor() // one cursor: Bucket.Get makes one per call
	var key [8]byte
	for len(page) < pageSize {
		next := uint64(0)
		for _, w := range walks {
			if w.pos != 0 && (next == 0 || w.pos < next) {
				next = w.pos
			}
		}
		if next == 0 || next > limit {
			break
		}
		for i := range walks {
			w := &walks[i]
			if w.pos != next {
				continue
			}
			w.pos = 0
			if k, _ := w.c.Next(); k != nil && isTopicKey(k, w.prefix) {
				w.pos = binary.BigEndian.Uint64(k[len(w.prefix):])
			}
		}
		binary.BigEndian.PutUint64(key[:], next)
		k, v := records.Seek(key[:])
		if !bytes.Equal(k, key[:]) {
			continue // cannot happen: index and records change together
		}
		r, err := decode(next, v)
		if err != nil {
			return page, &corruptError{next, err}
		}
		if !slices.ContainsFunc(r.Topics, func(t string) bool { return slices.Contains(topics, t) }) {
			continue // a damaged index entry: the record is not for these topics
		}
		r.Position = next
		page = append(page, r)
	}
	return page, nil
}

// pageByScan reads the records after cursor up to limit and keeps those
// selectors match. Only the topics of the others are read, and topic
// names are made strings once per page.
func pageByScan(tx *bbolt.Tx, page []herald.Record, cursor, limit uint64, selectors []herald.Selector) ([]herald.Record, error) {
	names := make(map[string]string)
	var topics []string
	c := tx.Bucket(bucketRecords).Cursor()
	for k, v := c.Seek(u64(cursor + 1)); k != nil && len(page) < pageSize; k, v = c.Next() {
		pos := binary.BigEndian.Uint64(k)
		if pos > limit {
			break
		}
		var err error
		topics, err = decodeTopics(topics[:0], pos, v, names)
		if err != nil {
			return page, &corruptError{pos, err}
		}
		if !herald.Matches(selectors, topics) {
			continue
		}
		r, err := decode(pos, v)
		if err != nil {
			return page, &corruptError{pos, err}
		}
		r.Position = pos
		page = append(page, r)
	}
	return page, nil
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

// Record encoding: varint seconds, uvarint nanoseconds, varint retry,
// then uvarint-length-prefixed ID, type and each topic (after their
// count), uvarint flags (flagPrivate; other bits make the record
// corrupt), the recipients ToUsers and ToConnections (each a count, then
// each uvarint-length-prefixed), and the data to the end.
//
// Version 4 appends a CRC-32C (Castagnoli) of all that, big-endian: a
// record whose checksum fails is corrupt, never served. Version 3 had no
// checksum; version 2 neither the flags nor the recipients: the data
// followed the topics. The prefix up to the topics is the same in all,
// which decodeTime and decodeTopics read.

// flagPrivate is the flag of a record with Private set.
const flagPrivate = 1 << 0

func encode(dst []byte, r *herald.Record) []byte {
	start := len(dst)
	dst = binary.AppendVarint(dst, r.Time.Unix())
	dst = binary.AppendUvarint(dst, uint64(r.Time.Nanosecond()))
	dst = binary.AppendVarint(dst, int64(r.Retry))
	dst = appendString(dst, r.ID)
	dst = appendString(dst, r.Type)
	dst = encodeTopics(dst, r.Topics)
	var flags uint64
	if r.Private {
		flags |= flagPrivate
	}
	dst = binary.AppendUvarint(dst, flags)
	dst = encodeTopics(dst, r.ToUsers)
	dst = encodeTopics(dst, r.ToConnections)
	dst = append(dst, r.Data...)
	return binary.BigEndian.AppendUint32(dst, checksum(r.Position, dst[start:]))
}

// checksum is the CRC-32C of the position pos and the record body: a
// record moved to another key (a damaged key) fails it too.
func checksum(pos uint64, body []byte) uint32 {
	var p [8]byte
	binary.BigEndian.PutUint64(p[:], pos)
	return crc32.Update(crc32.Checksum(p[:], castagnoli), castagnoli, body)
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// verified returns the encoding of the version 4 record v at pos without
// its checksum, or errCorrupt if the checksum fails.
func verified(pos uint64, v []byte) ([]byte, error) {
	if len(v) < 4 {
		return nil, errCorrupt
	}
	body := v[:len(v)-4]
	if checksum(pos, body) != binary.BigEndian.Uint32(v[len(body):]) {
		return nil, errCorrupt
	}
	return body, nil
}

func appendString(dst []byte, s string) []byte {
	return append(binary.AppendUvarint(dst, uint64(len(s))), s...)
}

var errCorrupt = errors.New("corrupt record")

// corruptError is a record that does not decode (its checksum fails).
type corruptError struct {
	pos uint64
	err error
}

func (e *corruptError) Error() string { return fmt.Sprintf("record %d: %v", e.pos, e.err) }
func (e *corruptError) Unwrap() error { return e.err }

// markCorrupt reports a record that failed its checksum, and makes it
// lost to everyone (a gap, persisted by the writer): a resume over it
// gets a reset instead of altered data or a silent gap.
func (h *History) markCorrupt(pos uint64, err error) {
	h.mu.Lock()
	known := gapsLost(h.newGaps, pos-1, pos)
	if !known {
		h.newGaps = addGap(h.newGaps, pos, pos)
	}
	h.mu.Unlock()
	if !known {
		h.log.Error("bolt: corrupt record, treated as lost: restore the file from a backup to get it back", "path", h.path, "position", pos, "error", err)
		h.wakeWriter()
	}
}

// decodeTime reads only a record's time.
func decodeTime(v []byte) time.Time {
	sec, n := binary.Varint(v)
	if n <= 0 {
		return time.Time{}
	}
	nsec, m := binary.Uvarint(v[n:])
	if m <= 0 {
		return time.Time{}
	}
	return time.Unix(sec, int64(nsec))
}

// decode copies the record at pos out of v, which is only valid in its
// transaction. Position is left zero.
func decode(pos uint64, v []byte) (herald.Record, error) {
	return decodeVersion(pos, v, formatVersion)
}

func decodeVersion(pos uint64, v []byte, version int) (herald.Record, error) {
	var r herald.Record
	if version >= 4 {
		var err error
		if v, err = verified(pos, v); err != nil {
			return r, err
		}
	}
	d := decoder{b: v}
	sec := d.varint()
	nsec := d.uvarint()
	r.Time = time.Unix(sec, int64(nsec))
	r.Retry = time.Duration(d.varint())
	r.ID = d.string()
	r.Type = d.string()
	r.Topics = d.strings(false)
	if version >= 3 {
		flags := d.uvarint()
		if flags&^flagPrivate != 0 {
			return r, errCorrupt // a restriction this herald does not know
		}
		r.Private = flags&flagPrivate != 0
		r.ToUsers = d.strings(true)
		r.ToConnections = d.strings(true)
	}
	if d.bad {
		return r, errCorrupt
	}
	r.Data = string(d.b)
	return r, nil
}

// decodeTopics appends the topics of the record v to dst, as strings
// from names (adding those missing), without decoding the rest (but
// checking the whole record's checksum).
func decodeTopics(dst []string, pos uint64, v []byte, names map[string]string) ([]string, error) {
	v, err := verified(pos, v)
	if err != nil {
		return dst, err
	}
	d := decoder{b: v}
	d.varint()
	d.uvarint()
	d.varint()
	d.skip()
	d.skip()
	if d.bad {
		return dst, errCorrupt
	}
	return decodeTopicList(dst, d.b, names)
}

// encodeTopics appends a hole's value: the count of topics, then each.
func encodeTopics(dst []byte, topics []string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(topics)))
	for _, t := range topics {
		dst = appendString(dst, t)
	}
	return dst
}

// decodeTopicList appends the topics encoded at the start of v (as
// encodeTopics does) to dst, as strings from names (adding those
// missing), or if names is nil as substrings of one copy of v.
func decodeTopicList(dst []string, v []byte, names map[string]string) ([]string, error) {
	d := decoder{b: v}
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		return dst, errCorrupt
	}
	var all string
	if names == nil {
		all = string(d.b) // one allocation for all the topics
	}
	for range n {
		b := d.bytes()
		if d.bad {
			return dst, errCorrupt
		}
		if names == nil {
			end := len(all) - len(d.b)
			dst = append(dst, all[end-len(b):end])
			continue
		}
		s, ok := names[string(b)]
		if !ok {
			s = string(b)
			names[s] = s
		}
		dst = append(dst, s)
	}
	return dst, nil
}

type decoder struct {
	b   []byte
	bad bool
}

func (d *decoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.bad, d.b = true, nil
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.bad, d.b = true, nil
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) string() string { return string(d.bytes()) }

// strings reads a count, then that many strings; nil for none if
// nilIfNone, else an empty slice.
func (d *decoder) strings(nilIfNone bool) []string {
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.bad, d.b = true, nil
		return nil
	}
	if n == 0 && nilIfNone {
		return nil
	}
	s := make([]string, n)
	for i := range s {
		s[i] = d.string()
	}
	return s
}

func (d *decoder) skip() { d.bytes() }

func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.bad, d.b = true, nil
		return nil
	}
	b := d.b[:n]
	d.b = d.b[n:]
	return b
}

func u64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

func getU64(b []byte) uint64 {
	if len(b) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(b)
}

func topicPrefix(t string) []byte { return append([]byte(t), 0) }

// indexKey is name + 0x00 + the big-endian position pos.
func indexKey(name string, pos []byte) []byte {
	k := make([]byte, 0, len(name)+9)
	return append(append(append(k, name...), 0), pos...)
}

// isTopicKey reports whether k is prefix followed by a position.
func isTopicKey(k, prefix []byte) bool {
	return len(k) == len(prefix)+8 && bytes.HasPrefix(k, prefix)
}
