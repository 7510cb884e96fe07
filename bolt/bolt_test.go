package bolt

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/herald-sse/herald"
	"github.com/herald-sse/herald/httpapi"
	"github.com/herald-sse/herald/internal/historytest"
	bbolt "go.etcd.io/bbolt"
)

func open(t testing.TB, path string, opts Options) *History {
	t.Helper()
	h, err := Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func dbPath(t testing.TB) string { return filepath.Join(t.TempDir(), "herald.db") }

func TestConformance(t *testing.T) {
	for _, sync := range []Sync{SyncAlways, SyncNever} {
		t.Run(sync.String(), func(t *testing.T) {
			historytest.Run(t, func(t *testing.T, r herald.Retention) herald.History {
				path := dbPath(t)
				if sync == SyncAlways {
					path = syncedPath(t)
				}
				return open(t, path, Options{Retention: r, Sync: sync})
			})
		})
	}
}

// syncedPath is a file for tests that sync without testing durability:
// on tmpfs (/dev/shm) fsync is the same call but costs nothing, where on
// a disk the conformance suite's thousands of commits took minutes.
func syncedPath(t testing.TB) string {
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		if dir, err := os.MkdirTemp("/dev/shm", "herald-bolt-test-"); err == nil {
			t.Cleanup(func() { os.RemoveAll(dir) })
			return filepath.Join(dir, "herald.db")
		}
	}
	return dbPath(t)
}

// Small transactions and reservations: the same promises hold when a
// batch spans several transactions and Append often waits for positions.
func TestConformanceSmallSteps(t *testing.T) {
	defer setTuning(2, 3)()
	historytest.Run(t, func(t *testing.T, r herald.Retention) herald.History {
		return open(t, dbPath(t), Options{Retention: r, Sync: SyncNever})
	})
}

// setTuning makes transactions and reservation blocks tiny; the returned
// func restores them.
func setTuning(txRecords int, block uint64) func() {
	oldTx, oldBlock := maxTxRecords, reserveBlock
	maxTxRecords, reserveBlock = txRecords, block
	return func() { maxTxRecords, reserveBlock = oldTx, oldBlock }
}

func add(t testing.TB, h herald.History, recs ...herald.Record) []uint64 {
	t.Helper()
	wait, err := h.Append(recs)
	if err != nil {
		t.Fatal(err)
	}
	if wait != nil {
		if err := wait(); err != nil {
			t.Fatal(err)
		}
	}
	var pos []uint64
	for _, r := range recs {
		pos = append(pos, r.Position)
	}
	return pos
}

func collect(t testing.TB, h herald.History, after uint64, sels ...herald.Selector) []herald.Record {
	t.Helper()
	var out []herald.Record
	err := h.Replay(after, h.Head(), sels, func(page []herald.Record) error {
		out = append(out, page...)
		return nil
	})
	if err != nil {
		t.Fatalf("Replay(%d, %v): %v", after, sels, err)
	}
	return out
}

// Everything survives a reopen: epoch, records, positions, the indexes,
// what retention removed; positions continue after the old head.
func TestReopenKeepsEverything(t *testing.T) {
	path := dbPath(t)
	r := herald.Retention{MaxEvents: 50, PerTopic: map[string]int{"capped": 2}}
	h := open(t, path, Options{Retention: r})
	epoch := h.Epoch()
	for i := range 60 {
		add(t, h, herald.Record{ID: "id" + strconv.Itoa(i%40), Topics: []string{"t" + strconv.Itoa(i%3)}, Data: strconv.Itoa(i), Type: "x"})
	}
	capped := add(t, h, herald.Record{Topics: []string{"capped", "u"}}, herald.Record{Topics: []string{"capped"}}, herald.Record{Topics: []string{"capped"}})
	head := h.Head()
	before := collect(t, h, 12, historytest.Prefix("t"))
	beforeT1 := collect(t, h, 12, herald.Topic("t1"), herald.Topic("t2"))
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}

	h = open(t, path, Options{Retention: r})
	defer h.Close()
	if h.Epoch() != epoch || h.Head() != head {
		t.Fatalf("after reopen: epoch %q head %d, want %q %d", h.Epoch(), h.Head(), epoch, head)
	}
	if got := collect(t, h, 12, historytest.Prefix("t")); len(got) != 48 || !equalRecords(got, before) {
		t.Errorf("records after reopen differ:\n%v\nwant\n%v", got, before)
	}
	if got := collect(t, h, 12, herald.Topic("t1"), herald.Topic("t2")); len(got) != 32 || !equalRecords(got, beforeT1) {
		t.Errorf("topics t1, t2 after reopen differ: %d records", len(got))
	}
	if pos, ok := h.Lookup("id5"); !ok || pos != 46 {
		t.Errorf("Lookup(id5) = %d, %v; want 46 (the newer of 6 and 46)", pos, ok)
	}
	if pos, ok := h.Lookup("id12"); !ok || pos != 53 {
		t.Errorf("Lookup(id12) = %d, %v; want 53", pos, ok)
	}
	if pos, ok := h.Lookup("id11"); !ok || pos != 52 {
		t.Errorf("Lookup(id11) = %d, %v; want 52", pos, ok)
	}
	for _, c := range []struct {
		after uint64
		sels  []herald.Selector
		want  bool
	}{
		{11, []herald.Selector{herald.Topic("t0")}, true}, // MaxEvents removed 1 to 12
		{12, []herald.Selector{herald.Topic("t0")}, false},
		{capped[0] - 1, []herald.Selector{herald.Topic("u")}, true},
		{capped[0] - 1, []herald.Selector{herald.Topic("t0")}, false},
		{capped[0] - 1, []herald.Selector{herald.All{}}, true},
		{capped[0], []herald.Selector{herald.All{}}, false},
	} {
		if got := h.Lost(c.after, h.Head(), c.sels); got != c.want {
			t.Errorf("after reopen: Lost(%d, %v) = %v, want %v", c.after, c.sels, got, c.want)
		}
	}
	if p := add(t, h, herald.Record{Topics: []string{"t0"}}); p[0] != head+1 {
		t.Errorf("first position after a clean reopen %d, want %d", p[0], head+1)
	}
}

// The retention of the new run applies at Open.
func TestReopenWithSmallerRetention(t *testing.T) {
	path := dbPath(t)
	h := open(t, path, Options{})
	for i := range 30 {
		add(t, h, herald.Record{Topics: []string{"a", "c"}, Data: strconv.Itoa(i)})
	}
	h.Close()
	h = open(t, path, Options{Retention: herald.Retention{MaxEvents: 10, PerTopic: map[string]int{"c": 4}}})
	defer h.Close()
	got := collect(t, h, 26, herald.Topic("a"))
	if len(got) != 4 || got[0].Position != 27 {
		t.Errorf("after reopen with caps: %d records from %d", len(got), got[0].Position)
	}
	if !h.Lost(25, h.Head(), []herald.Selector{herald.Topic("a")}) || h.Lost(26, h.Head(), []herald.Selector{herald.Topic("a")}) {
		t.Error("Lost does not reflect the retention applied at Open")
	}
}

func equalRecords(a, b []herald.Record) bool {
	return slices.EqualFunc(a, b, func(x, y herald.Record) bool {
		return x.Position == y.Position && x.ID == y.ID && x.Type == y.Type && x.Data == y.Data &&
			x.Retry == y.Retry && x.Time.Equal(y.Time) && slices.Equal(x.Topics, y.Topics) &&
			x.Private == y.Private && slices.Equal(x.ToUsers, y.ToUsers) && slices.Equal(x.ToConnections, y.ToConnections)
	})
}

// Records appended but not committed when the process dies are lost, and
// their positions are never handed out again, whether or not the
// reservation was crossed meanwhile.
func TestPositionsNeverReusedAfterCrash(t *testing.T) {
	for _, block := range []uint64{1 << 16, 16} {
		t.Run(fmt.Sprint("block=", block), func(t *testing.T) {
			defer setTuning(maxTxRecords, block)()
			path := dbPath(t)
			var handed uint64 // highest position ever handed out
			var committed []uint64
			for round := range 6 {
				h := open(t, path, Options{Sync: SyncNever})
				if got := h.Head(); len(committed) > 0 && got != committed[len(committed)-1] {
					t.Fatalf("round %d: Head %d after a crash, want the last committed %d", round, got, committed[len(committed)-1])
				}
				for i := range 3*int(block%64) + 5 {
					p := add(t, h, herald.Record{ID: fmt.Sprint("ok", round, "-", i), Topics: []string{"t"}})
					if p[0] <= handed {
						t.Fatalf("round %d: position %d handed out again (already up to %d)", round, p[0], handed)
					}
					handed = p[0]
					committed = append(committed, p[0])
				}
				h.pause()
				h.mu.Lock()
				room := h.reserved - (h.next - 1)
				h.mu.Unlock()
				n := min(room, 7)
				var waits []func() error
				for i := range n {
					recs := []herald.Record{{ID: fmt.Sprint("lost", round, "-", i), Topics: []string{"t"}}}
					wait, err := h.Append(recs)
					if err != nil {
						t.Fatal(err)
					}
					if recs[0].Position <= handed {
						t.Fatalf("round %d: position %d handed out again", round, recs[0].Position)
					}
					handed = recs[0].Position
					waits = append(waits, wait)
				}
				if n > 0 {
					if pos, ok := h.Lookup(fmt.Sprint("lost", round, "-0")); !ok || pos != handed-n+1 {
						t.Errorf("queued record not visible: %d, %v", pos, ok)
					}
				}
				h.crash()
				for _, w := range waits {
					if err := w(); err == nil {
						t.Error("wait of a record lost in the crash returned nil")
					}
				}
				h = open(t, path, Options{Sync: SyncNever})
				if _, ok := h.Lookup(fmt.Sprint("lost", round, "-0")); ok && n > 0 {
					t.Errorf("round %d: a record never committed is found after the crash", round)
				}
				if got := positionsOf(collect(t, h, 0, herald.Topic("t"))); !slices.Equal(got, committed) {
					t.Fatalf("round %d: after the crash the history holds %v, want %v", round, got, committed)
				}
				if round%2 == 0 {
					h.crash() // a crash with nothing queued
				} else {
					h.Close()
				}
			}
		})
	}
}

func positionsOf(recs []herald.Record) []uint64 {
	var p []uint64
	for _, r := range recs {
		p = append(p, r.Position)
	}
	return p
}

// The hub resumes a subscriber across a restart: the ID of event 1 (one
// the hub generated) replays events 2 and 3, then live ones.
func TestHubResumesAfterRestart(t *testing.T) {
	path := dbPath(t)
	h := open(t, path, Options{})
	hub := &herald.Hub{History: h, Heartbeat: -1}
	if err := hub.Open(); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for i := range 3 {
		got, err := hub.Publish(herald.Event{Topics: []string{"news"}, Data: fmt.Sprint("event ", i+1)})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, got[0])
		hub.Publish(herald.Event{Topics: []string{"other"}, Data: "not selected"})
	}
	hub.Close()
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}

	h = open(t, path, Options{})
	defer h.Close()
	hub = &herald.Hub{History: h, Heartbeat: -1}
	if err := hub.Open(); err != nil {
		t.Fatal(err)
	}
	defer hub.Close()
	sub, err := hub.SubscribeWith(herald.SubscribeOptions{Selectors: []herald.Selector{herald.Topic("news")}, LastEventID: ids[0]})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	if r := sub.Reset(); r != nil {
		t.Fatalf("resume after restart: reset %+v", r)
	}
	more, _ := hub.Publish(herald.Event{Topics: []string{"news"}, Data: "event 4"})
	var got strings.Builder
	if err := sub.Replay(func(frames [][]byte) error {
		for _, f := range frames {
			got.Write(f)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	<-sub.Ready()
	for _, f := range sub.Drain(nil) {
		got.Write(f)
	}
	want := fmt.Sprintf("id: %s\ndata: event 2\n\nid: %s\ndata: event 3\n\nid: %s\ndata: event 4\n\n", ids[1], ids[2], more[0])
	if got.String() != want {
		t.Errorf("resumed stream:\n%q\nwant\n%q", got.String(), want)
	}
}

// Records queued for the writer are visible to every read.
func TestQueuedRecordsVisible(t *testing.T) {
	h := open(t, dbPath(t), Options{})
	defer h.Close()
	add(t, h, herald.Record{ID: "a", Topics: []string{"t"}})
	h.pause()
	recs := []herald.Record{{ID: "b", Topics: []string{"t"}}, {ID: "c", Topics: []string{"u"}}}
	wait, err := h.Append(recs)
	if err != nil {
		t.Fatal(err)
	}
	if h.Head() != 3 {
		t.Errorf("Head %d", h.Head())
	}
	if pos, ok := h.Lookup("c"); !ok || pos != 3 {
		t.Errorf("Lookup(c) = %d, %v", pos, ok)
	}
	if got := positionsOf(collect(t, h, 0, herald.Topic("t"))); !slices.Equal(got, []uint64{1, 2}) {
		t.Errorf("Replay(t) = %v", got)
	}
	if got := positionsOf(collect(t, h, 1, herald.All{})); !slices.Equal(got, []uint64{2, 3}) {
		t.Errorf("Replay(*) = %v", got)
	}
	h.resume()
	if err := wait(); err != nil {
		t.Fatal(err)
	}
}

// Close commits what is queued; Append fails afterwards.
func TestCloseFlushes(t *testing.T) {
	path := dbPath(t)
	h := open(t, path, Options{})
	h.pause()
	recs := make([]herald.Record, 1000)
	for i := range recs {
		recs[i] = herald.Record{Topics: []string{"t"}, Data: strconv.Itoa(i)}
	}
	wait, err := h.Append(recs)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	if err := wait(); err != nil {
		t.Fatalf("wait after Close: %v", err)
	}
	if err := h.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := h.Append(recs[:1]); !errors.Is(err, ErrClosed) {
		t.Errorf("Append after Close: %v, want ErrClosed", err)
	}
	h = open(t, path, Options{})
	defer h.Close()
	if got := collect(t, h, 0, herald.Topic("t")); len(got) != 1000 || got[999].Data != "999" {
		t.Errorf("after reopen: %d records", len(got))
	}
}

func TestSecondOpenFailsFast(t *testing.T) {
	path := dbPath(t)
	h := open(t, path, Options{})
	defer h.Close()
	_, err := Open(path, Options{LockTimeout: 50 * time.Millisecond})
	if err == nil || !strings.Contains(err.Error(), "locked") {
		t.Errorf("second Open: %v, want a locked error", err)
	}
}

// Nothing of the history stays in memory: the heap does not grow with the
// number of records published, only the file does (up to retention).
// With -long, the soak-sized run: 200,000 records.
func TestMemoryFlat(t *testing.T) {
	keep, base, more := 10_000, 10_000, 50_000
	if historytest.Long() {
		keep, base, more = 50_000, 20_000, 180_000
	}
	h := open(t, dbPath(t), Options{Sync: SyncNever, Retention: herald.Retention{MaxEvents: keep, MaxBytes: 1 << 30}})
	defer h.Close()
	data := strings.Repeat("x", 200)
	publish := func(n int) {
		recs := make([]herald.Record, 100)
		for range n / 100 {
			for i := range recs {
				recs[i] = herald.Record{Topics: []string{"t" + strconv.Itoa(i%10)}, Data: data}
			}
			add(t, h, recs...)
		}
	}
	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	publish(base)
	before := heap()
	publish(more)
	if grown := int64(heap()) - int64(before); grown > 4<<20 {
		t.Errorf("heap grew by %d bytes over %d records of 200 bytes (%d MB of data)", grown, more, more*200>>20)
	}
}

// A failed commit (a full disk, say) fails its publishes, but subscribers
// already received the records and the head moved past them. They are
// gone like records a crash cuts off before their commit: not lost
// events (nothing acknowledged is missing), so ranges over them replay
// the records around them, and their positions are never reused.
func TestFailedCommitLeavesNoHoles(t *testing.T) {
	path := dbPath(t)
	h := open(t, path, Options{})
	before := add(t, h, herald.Record{ID: "a", Topics: []string{"t"}}, herald.Record{Topics: []string{"u"}})
	h.failNextCommits(1)
	failed := []herald.Record{{ID: "f1", Topics: []string{"t"}}, {ID: "f2", Topics: []string{"u", "w"}}}
	wait, err := h.Append(failed)
	if err != nil {
		t.Fatal(err)
	}
	if err := wait(); !errors.Is(err, errInjected) {
		t.Fatalf("wait of a failed commit: %v, want the injected failure", err)
	}
	f1, f2 := failed[0].Position, failed[1].Position
	if h.Head() != f2 {
		t.Errorf("Head %d after the failed commit, want %d: its positions were handed out", h.Head(), f2)
	}
	// Two more failures, then a commit.
	h.failNextCommits(2)
	for i := range 2 {
		wait, err := h.Append([]herald.Record{{Topics: []string{"x" + strconv.Itoa(i)}}})
		if err != nil {
			t.Fatal(err)
		}
		if err := wait(); err == nil {
			t.Fatal("wait of a failed commit returned nil")
		}
	}
	after := add(t, h, herald.Record{Topics: []string{"t"}})
	check := func(when string) {
		t.Helper()
		head := after[0]
		for _, sl := range [][]herald.Selector{{herald.Topic("t")}, {herald.Topic("u")}, {herald.Topic("w")}, {herald.Topic("x0")}, {historytest.Prefix("w")}, {herald.All{}}} {
			for _, from := range []uint64{0, before[0], before[1], f1, f2} {
				if h.Lost(from, head, sl) {
					t.Errorf("%s: Lost(%d, %d, %v) over failed commits = true, want false", when, from, head, sl)
				}
			}
		}
		if got := positionsOf(collect(t, h, 0, herald.All{})); !slices.Equal(got, append(slices.Clone(before), after...)) {
			t.Errorf("%s: Replay from 0 = %v, want the committed records %v %v", when, got, before, after)
		}
		if got := positionsOf(collect(t, h, before[0], herald.Topic("t"))); !slices.Equal(got, after) {
			t.Errorf("%s: Replay of t after %d = %v, want %v", when, before[0], got, after)
		}
		if pos, ok := h.Lookup("f1"); ok {
			t.Errorf("%s: Lookup of a record never stored = %d", when, pos)
		}
		if pos, ok := h.Lookup("a"); !ok || pos != before[0] {
			t.Errorf("%s: Lookup(a) = %d, %v", when, pos, ok)
		}
	}
	check("committed")
	if holes, _, meta := h.holeKeys(); holes != 0 || meta != 0 {
		t.Errorf("holes on disk after failed commits: %d (meta says %d), want none", holes, meta)
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	h = open(t, path, Options{})
	defer h.Close()
	check("after reopen")
	if next := add(t, h, herald.Record{Topics: []string{"t"}}); next[0] <= after[0] {
		t.Errorf("position %d after reopen, want past %d", next[0], after[0])
	}
}

// The hub answers a publish whose commit failed with an error; a
// subscriber resuming from before it gets the acknowledged events after
// it, without a reset.
func TestFailedCommitKeepsResume(t *testing.T) {
	h := open(t, dbPath(t), Options{})
	defer h.Close()
	hub := &herald.Hub{History: h, Heartbeat: -1}
	if err := hub.Open(); err != nil {
		t.Fatal(err)
	}
	defer hub.Close()
	ok1, err := hub.Publish(herald.Event{Topics: []string{"news"}, Data: "1"})
	if err != nil {
		t.Fatal(err)
	}
	h.failNextCommits(1)
	if _, err := hub.Publish(herald.Event{Topics: []string{"news"}, Data: "2"}); err == nil {
		t.Fatal("Publish whose commit failed returned nil")
	}
	ok3, err := hub.Publish(herald.Event{Topics: []string{"news"}, Data: "3"})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		id, topic string
		want      []string
	}{
		{ok1[0], "news", ok3},
		{ok1[0], "other", nil},
		{ok3[0], "news", nil},
	} {
		sub, err := hub.SubscribeWith(herald.SubscribeOptions{Selectors: []herald.Selector{herald.Topic(c.topic)}, LastEventID: c.id})
		if err != nil {
			t.Fatal(err)
		}
		if r := sub.Reset(); r != nil {
			t.Errorf("resume of %s after %s: reset %+v, want none", c.topic, c.id, r)
		}
		if got := replayedIDs(t, sub); !slices.Equal(got, c.want) {
			t.Errorf("resume of %s after %s replayed %v, want %v", c.topic, c.id, got, c.want)
		}
		sub.Close()
	}
}

// replayedIDs returns the IDs of the events sub's Replay sends.
func replayedIDs(t testing.TB, sub *herald.Subscriber) []string {
	t.Helper()
	var ids []string
	err := sub.Replay(func(frames [][]byte) error {
		for _, f := range frames {
			for _, line := range strings.Split(string(f), "\n") {
				if id, ok := strings.CutPrefix(line, "id: "); ok {
					ids = append(ids, id)
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("Replay: %v", err)
	}
	return ids
}

// A full disk: every commit fails for longer than MaxEvents publishes.
// The acknowledged events stay reachable (from earliest and after each
// of their IDs), and the hub is not ready while publishes fail, and ready
// again once a commit succeeds, with or without a publish.
func TestDiskFullKeepsAcknowledged(t *testing.T) {
	defer func(old time.Duration) { retryInterval = old }(retryInterval)
	retryInterval = 10 * time.Millisecond
	h := open(t, dbPath(t), Options{Sync: SyncNever, Retention: herald.Retention{MaxEvents: 50}})
	defer h.Close()
	hub := &herald.Hub{History: h, Heartbeat: -1}
	if err := hub.Open(); err != nil {
		t.Fatal(err)
	}
	defer hub.Close()
	var acked []string
	publish := func() error {
		ids, err := hub.Publish(herald.Event{Topics: []string{"news"}, Data: "x"})
		if err == nil {
			acked = append(acked, ids[0])
		}
		return err
	}
	for range 20 {
		if err := publish(); err != nil {
			t.Fatal(err)
		}
	}
	if err := hub.Ready(); err != nil {
		t.Fatalf("Ready before the disk filled: %v", err)
	}
	h.failNextCommits(1 << 30)
	for range 200 { // more than MaxEvents
		if err := publish(); err == nil {
			t.Fatal("a publish on the full disk succeeded")
		}
	}
	if err := hub.Ready(); err == nil || !errors.Is(err, errInjected) || !strings.Contains(err.Error(), "commit") {
		t.Errorf("Ready while every commit fails: %v, want the commit's failure", err)
	}
	api := &httpapi.Handler{Hub: hub}
	rec := httptest.NewRecorder()
	api.ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
	if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "injected failure") {
		t.Errorf("/readyz while every commit fails: %d %s, want 503 with the reason", rec.Code, rec.Body.String())
	}
	check := func(when string) {
		t.Helper()
		for i, id := range append([]string{herald.Earliest}, acked...) {
			sub, err := hub.SubscribeWith(herald.SubscribeOptions{Selectors: []herald.Selector{herald.Topic("news")}, LastEventID: id})
			if err != nil {
				t.Fatal(err)
			}
			if r := sub.Reset(); r != nil {
				t.Errorf("%s: resume after %s: reset %+v, want none", when, id, r)
			}
			if got := replayedIDs(t, sub); !slices.Equal(got, acked[i:]) {
				t.Errorf("%s: resume after %s replayed %d events %v, want the %d acknowledged after it", when, id, len(got), got, len(acked[i:]))
			}
			sub.Close()
		}
	}
	check("disk full")

	// Space again: the first commit that succeeds makes the hub ready.
	h.failNextCommits(0)
	if err := publish(); err != nil {
		t.Fatalf("publish after the disk has space again: %v", err)
	}
	if err := hub.Ready(); err != nil {
		t.Errorf("Ready after a commit succeeded: %v", err)
	}
	rec = httptest.NewRecorder()
	api.ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
	if rec.Code != http.StatusOK {
		t.Errorf("/readyz after a commit succeeded: %d %s", rec.Code, rec.Body.String())
	}
	check("space again")

	// Without publishes (a load balancer sends none to a node that is not
	// ready), the writer's own retry makes it ready again.
	h.failNextCommits(1)
	if err := publish(); err == nil {
		t.Fatal("a publish whose commit failed succeeded")
	}
	if err := hub.Ready(); err == nil {
		t.Error("Ready after a failed commit: nil")
	}
	deadline := time.Now().Add(30 * time.Second)
	for hub.Ready() != nil && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond) // polls the writer's retry: no event to wait on
	}
	if err := hub.Ready(); err != nil {
		t.Errorf("Ready long after the failure stopped: %v", err)
	}
	check("retried")
}

func ptr[T any](v T) *T { return &v }

// A churning cap with a unique second topic per record: the holes on
// disk, and their index, stay within MaxEvents, across a reopen too.
func TestHolesBoundedOnDisk(t *testing.T) {
	path := dbPath(t)
	r := herald.Retention{MaxEvents: 200, PerTopic: map[string]int{"orders": 10}}
	h := open(t, path, Options{Retention: r, Sync: SyncNever})
	recs := make([]herald.Record, 100)
	for i := range 50 {
		for j := range recs {
			recs[j] = herald.Record{Topics: []string{"orders", fmt.Sprint("orders/", i*100+j)}}
		}
		add(t, h, recs...)
	}
	holes, holeTopics, meta := h.holeKeys()
	if holes != 200 || holeTopics != 400 || meta != 200 {
		t.Errorf("holes %d, indexed %d, counted %d; want 200, 400, 200", holes, holeTopics, meta)
	}
	head := h.Head()
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	// A smaller MaxEvents folds the oldest at Open.
	r.MaxEvents = 50
	h = open(t, path, Options{Retention: r, Sync: SyncNever})
	defer h.Close()
	if holes, holeTopics, meta := h.holeKeys(); holes != 50 || holeTopics != 100 || meta != 50 {
		t.Errorf("after reopen with MaxEvents 50: holes %d, indexed %d, counted %d; want 50, 100, 50", holes, holeTopics, meta)
	}
	newest := fmt.Sprint("orders/", head-11) // the record at head-10
	if !h.Lost(head-11, head, []herald.Selector{herald.Topic(newest)}) || h.Lost(head-10, head, []herald.Selector{herald.Topic(newest)}) {
		t.Error("the newest hole is not exact after reopen")
	}
	if h.Lost(head-50, head, []herald.Selector{herald.Topic("orders/none")}) || !h.Lost(head-61, head, []herald.Selector{herald.Topic("orders/none")}) {
		t.Error("holes beyond MaxEvents are not folded into the global mark")
	}
}

// A version 1 file (per-topic marks in "lost" and "lostpos") opens: its
// marks become the global mark, which is cautious.
func TestUpgradeFromVersion1(t *testing.T) {
	path := dbPath(t)
	h := open(t, path, Options{})
	pos := add(t, h, herald.Record{Topics: []string{"a"}}, herald.Record{Topics: []string{"b"}}, herald.Record{Topics: []string{"c"}})
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	toV2(t, path) // version 1 had version 2's record encoding
	db, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bbolt.Tx) error {
		for _, name := range [][]byte{bucketHoles, bucketHoleTopics} {
			if err := tx.DeleteBucket(name); err != nil {
				return err
			}
		}
		lost, err := tx.CreateBucket(bucketLost)
		if err != nil {
			return err
		}
		lostPos, err := tx.CreateBucket(bucketLostPos)
		if err != nil {
			return err
		}
		// A cap removed a record of "x" at position 2 (as if).
		if err := lost.Put([]byte("x"), u64(pos[1])); err != nil {
			return err
		}
		if err := lostPos.Put(append(u64(pos[1]), 'x'), nil); err != nil {
			return err
		}
		meta := tx.Bucket(bucketMeta)
		if err := meta.Delete(keyHoles); err != nil {
			return err
		}
		return meta.Put(keyVersion, u64(1))
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	h = open(t, path, Options{})
	defer h.Close()
	if !h.Lost(pos[1]-1, pos[2], []herald.Selector{herald.Topic("c")}) || h.Lost(pos[1], pos[2], []herald.Selector{herald.Topic("c")}) {
		t.Error("the version 1 marks are not kept as the global mark")
	}
	if got := positionsOf(collect(t, h, pos[1], herald.All{})); !slices.Equal(got, pos[2:]) {
		t.Errorf("records after the upgrade: %v", got)
	}
	err = h.db.View(func(tx *bbolt.Tx) error {
		if tx.Bucket(bucketLost) != nil || tx.Bucket(bucketLostPos) != nil {
			t.Error("version 1 buckets kept")
		}
		if v := getU64(tx.Bucket(bucketMeta).Get(keyVersion)); v != formatVersion {
			t.Errorf("version %d after the upgrade", v)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// Lookup finds queued records through an index of their IDs, which
// forgets them once committed.
func TestLookupQueued(t *testing.T) {
	h := open(t, dbPath(t), Options{})
	defer h.Close()
	old := add(t, h, herald.Record{ID: "dup", Topics: []string{"t"}})
	h.pause()
	recs := []herald.Record{{ID: "dup", Topics: []string{"t"}}, {ID: "q", Topics: []string{"t"}}, {ID: "dup", Topics: []string{"t"}}}
	wait, err := h.Append(recs)
	if err != nil {
		t.Fatal(err)
	}
	if pos, ok := h.Lookup("dup"); !ok || pos != recs[2].Position {
		t.Errorf("Lookup(dup) = %d, %v; want the newest queued %d", pos, ok, recs[2].Position)
	}
	if pos, ok := h.Lookup("q"); !ok || pos != recs[1].Position {
		t.Errorf("Lookup(q) = %d, %v", pos, ok)
	}
	if _, n := h.pending(); n != 2 {
		t.Errorf("%d queued IDs indexed, want 2", n)
	}
	h.resume()
	if err := wait(); err != nil {
		t.Fatal(err)
	}
	if _, n := h.pending(); n != 0 {
		t.Errorf("%d queued IDs indexed after the commit, want 0", n)
	}
	if pos, ok := h.Lookup("dup"); !ok || pos != recs[2].Position || old[0] >= pos {
		t.Errorf("Lookup(dup) after the commit = %d, %v", pos, ok)
	}
}

// Holes past MaxEvents fold into a gap, not into the global mark, when a
// record is retained below them: that record stays reachable.
func TestFoldedHolesKeepOlderRecords(t *testing.T) {
	path := dbPath(t)
	r := herald.Retention{MaxEvents: 20, PerTopic: map[string]int{"a": 1}}
	h := open(t, path, Options{Retention: r, Sync: SyncNever})
	old := add(t, h, herald.Record{Topics: []string{"b"}, Data: "kept"})[0]
	for i := range 40 {
		add(t, h, herald.Record{Topics: []string{"a", fmt.Sprint("u/", i)}})
	}
	check := func(when string) {
		t.Helper()
		b := []herald.Selector{herald.Topic("b")}
		if h.Lost(0, old, b) {
			t.Errorf("%s: Lost(0, %d, b) = true: the folded holes hide the retained record", when, old)
		}
		var got []uint64
		err := h.Replay(0, old, b, func(page []herald.Record) error {
			got = append(got, positionsOf(page)...)
			return nil
		})
		if err != nil || !slices.Equal(got, []uint64{old}) {
			t.Errorf("%s: Replay(0, %d, b) = %v, %v; want the retained record", when, old, got, err)
		}
		if !h.Lost(old, h.Head(), b) {
			t.Errorf("%s: Lost over the folded holes = false, want true (cautious)", when)
		}
		if holes, _, _ := h.holeKeys(); holes > r.MaxEvents {
			t.Errorf("%s: %d holes, want at most %d", when, holes, r.MaxEvents)
		}
		if gaps := h.gapKeys(); len(gaps) != 1 || gaps[0].From != old+1 {
			t.Errorf("%s: gaps %v, want one from %d", when, gaps, old+1)
		}
	}
	check("open")
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	h = open(t, path, Options{Retention: r, Sync: SyncNever})
	defer h.Close()
	check("reopened")
}
