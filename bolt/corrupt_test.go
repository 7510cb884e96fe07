package bolt

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/herald-sse/herald"
)

// payload is the data of the record numbered i by fillFile: unique, so a
// test finds it in the file.
func payload(i int) string { return fmt.Sprintf("payload-%06d-%s", i, strings.Repeat("z", 40)) }

// fillFile writes n records to a new file and returns its path and the
// records as replayed.
func fillFile(t *testing.T, n int) (string, map[uint64]herald.Record) {
	t.Helper()
	path := dbPath(t)
	h := open(t, path, Options{Sync: SyncNever})
	recs := make([]herald.Record, 0, 100)
	for i := 0; i < n; {
		recs = recs[:0]
		for ; len(recs) < cap(recs) && i < n; i++ {
			recs = append(recs, herald.Record{ID: fmt.Sprint("id", i), Topics: []string{fmt.Sprint("t", i%7)}, Data: payload(i)})
		}
		add(t, h, recs...)
	}
	want := make(map[uint64]herald.Record)
	for _, r := range collect(t, h, 0, herald.All{}) {
		want[r.Position] = r
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	return path, want
}

// logBuffer is a logger whose output a test reads.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *logBuffer) logger() *slog.Logger { return slog.New(slog.NewTextHandler(b, nil)) }

// flip inverts the byte at off of the file at path.
func flip(t testing.TB, path string, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var b [1]byte
	if _, err := f.ReadAt(b[:], off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0xff
	if _, err := f.WriteAt(b[:], off); err != nil {
		t.Fatal(err)
	}
}

// offsetOf returns where s is in the file at path.
func offsetOf(t testing.TB, path, s string) int64 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(b, []byte(s))
	if i < 0 || bytes.Index(b[i+1:], []byte(s)) >= 0 {
		t.Fatalf("%q is not once in the file", s)
	}
	return int64(i)
}

// served replays everything h serves, from every start, and checks it
// against want: never an altered record. It returns how many were served
// from 0 and whether a replay reported a loss.
func served(t *testing.T, h *History, want map[uint64]herald.Record) (n int, lost bool) {
	t.Helper()
	for _, sels := range [][]herald.Selector{{herald.All{}}, {herald.Topic("t3"), herald.Topic("t5")}} {
		for after := uint64(0); after < h.Head(); after += 97 {
			err := h.Replay(after, h.Head(), sels, func(page []herald.Record) error {
				for _, r := range page {
					w, ok := want[r.Position]
					if !ok || !equalRecords([]herald.Record{r}, []herald.Record{w}) {
						t.Errorf("served an altered record at %d: %+v, want %+v", r.Position, r, w)
					}
				}
				if after == 0 {
					n += len(page)
				}
				return nil
			})
			switch {
			case errors.Is(err, herald.ErrHistoryLost):
				lost = true
			case err != nil:
				t.Errorf("Replay(%d): %v", after, err)
			}
		}
	}
	return n, lost
}

// An existing empty file is refused, not made a new history.
func TestEmptyFileRefused(t *testing.T) {
	path := dbPath(t)
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	h, err := Open(path, Options{})
	if err == nil {
		h.Close()
		t.Fatal("Open of a 0-byte file succeeded")
	}
	if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "empty") || !strings.Contains(err.Error(), "delete it") {
		t.Errorf("Open of a 0-byte file: %v, want it named, said empty, and what to do", err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Size() != 0 {
		t.Errorf("the refused file was changed: %v, %v", fi, err)
	}
}

// A record whose bytes changed on disk is reported and treated as lost,
// at Open and when a replay meets it: never served altered.
func TestCorruptRecordNotServed(t *testing.T) {
	path, want := fillFile(t, 300)
	flip(t, path, offsetOf(t, path, payload(100))+9)
	var logs logBuffer
	h, err := Open(path, Options{Logger: logs.logger()})
	if err != nil {
		t.Fatalf("Open with a corrupt record: %v", err)
	}
	defer h.Close()
	pos := uint64(101) // fillFile's record 100
	if !strings.Contains(logs.String(), "corrupt record") || !strings.Contains(logs.String(), "position=101") {
		t.Errorf("the corrupt record was not reported at Open; log:\n%s", logs.String())
	}
	if !h.Lost(pos-1, pos, []herald.Selector{herald.All{}}) || h.Lost(pos, h.Head(), []herald.Selector{herald.All{}}) {
		t.Error("the corrupt record is not lost, or more than it is")
	}
	if n, lost := served(t, h, want); !lost || n != 0 {
		t.Errorf("from 0: %d served, lost %v; want the loss reported", n, lost)
	}
	if got := collect(t, h, pos, herald.All{}); len(got) != 199 {
		t.Errorf("after the corrupt record: %d records, want 199", len(got))
	}

	// Damage while open: the replay that meets it stops with a loss and
	// reports it.
	hub := &herald.Hub{History: h, Heartbeat: -1}
	if err := hub.Open(); err != nil {
		t.Fatal(err)
	}
	defer hub.Close()
	flip(t, path, offsetOf(t, path, payload(200))+12)
	if _, lost := served(t, h, want); !lost {
		t.Error("a record damaged while open was not reported lost")
	}
	if !strings.Contains(logs.String(), "position=201") {
		t.Errorf("the record damaged while open was not logged:\n%s", logs.String())
	}
	sub, err := hub.SubscribeWith(herald.SubscribeOptions{Selectors: []herald.Selector{herald.All{}}, LastEventID: "id150"})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	if r := sub.Reset(); r == nil || r.Reason != herald.ResetExpired {
		t.Errorf("resume over the damaged record: reset %+v, want expired", r)
	}
	// The loss is persisted: it holds after a reopen.
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	h = open(t, path, Options{Logger: logs.logger()})
	defer h.Close()
	if !h.Lost(200, 201, []herald.Selector{herald.All{}}) || h.Lost(201, h.Head(), []herald.Selector{herald.All{}}) {
		t.Error("after reopen: the record damaged while open is not lost, or more is")
	}
}

// Random flipped bytes and truncations anywhere in the file: Open fails
// with an error naming the file, or the history serves only unaltered
// records; never a panic.
func TestDamagedFiles(t *testing.T) {
	path, want := fillFile(t, 2000)
	orig, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	try := func(name string, b []byte) (opened, lost bool) {
		t.Helper()
		p := dbPath(t)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		var logs logBuffer
		h, err := Open(p, Options{Logger: logs.logger(), Sync: SyncNever})
		if err != nil {
			t.Log(name, err)
			if !strings.Contains(err.Error(), p) {
				t.Errorf("%s: the error does not name the file: %v", name, err)
			}
			return false, false
		}
		defer h.Close()
		_, lost = served(t, h, want)
		return true, lost || strings.Contains(logs.String(), "corrupt")
	}
	var refused, reported int
	for i := range 40 {
		b := bytes.Clone(orig)
		for range 5 {
			b[rng.IntN(len(b))] ^= byte(1 + rng.IntN(255))
		}
		opened, lost := try(fmt.Sprint("flips ", i), b)
		if !opened {
			refused++
		}
		if lost {
			reported++
		}
	}
	// Cut into its pages: refused. Cut only in the unused space at the
	// end: it may open, serving what it holds.
	for _, n := range []int{len(orig) / 2, len(orig) / 3, 4096 * 3, 4096, 100} {
		if opened, _ := try(fmt.Sprint("truncated to ", n), orig[:n]); opened {
			t.Errorf("a file truncated from %d to %d bytes opened", len(orig), n)
		}
	}
	for _, n := range []int{len(orig) - 4096, len(orig) - 1} {
		try(fmt.Sprint("truncated to ", n), orig[:n])
	}
	t.Logf("40 files with 5 flipped bytes: %d refused at Open, %d opened with a loss reported", refused, reported)
}
