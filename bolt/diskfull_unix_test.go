//go:build linux

package bolt

import (
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/herald-sse/herald"
)

// A real full disk: the file may not grow past a size limit
// (RLIMIT_FSIZE, in a child process so that no other test's files are
// limited), so bbolt's own writes fail. Every acknowledged event stays
// reachable, the hub is not ready while commits fail, and it is ready
// again once the file may grow.
func TestFileSizeLimit(t *testing.T) {
	if os.Getenv("HERALD_FSIZE_CHILD") != "" {
		fileSizeLimitChild(t)
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestFileSizeLimit$", "-test.v")
	cmd.Env = append(os.Environ(), "HERALD_FSIZE_CHILD="+filepath.Join(t.TempDir(), "herald.db"))
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: TestFileSizeLimit") {
		t.Fatalf("the child with a file size limit: %v\n%s", err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, "diskfull_unix_test.go") {
			t.Log(strings.TrimSpace(line))
		}
	}
}

func fileSizeLimitChild(t *testing.T) {
	// Past the limit a write fails with EFBIG, instead of the signal
	// killing the process.
	signal.Ignore(syscall.SIGXFSZ)
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
		t.Fatal(err)
	}
	const limit = 1 << 20
	if old.Max < limit {
		t.Skipf("the hard file size limit is %d", old.Max)
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &syscall.Rlimit{Cur: limit, Max: old.Max}); err != nil {
		t.Fatal(err)
	}
	h := open(t, os.Getenv("HERALD_FSIZE_CHILD"), Options{Sync: SyncNever, Retention: herald.Retention{MaxEvents: 1 << 20, MaxBytes: 1 << 30}})
	defer h.Close()
	hub := &herald.Hub{History: h, Heartbeat: -1}
	if err := hub.Open(); err != nil {
		t.Fatal(err)
	}
	defer hub.Close()
	data := strings.Repeat("d", 1000)
	var acked []string
	publish := func() error {
		ids, err := hub.Publish(herald.Event{Topics: []string{"news"}, Data: data})
		if err == nil {
			acked = append(acked, ids[0])
		}
		return err
	}
	failed, inARow := 0, 0
	for i := 0; i < 20_000 && inARow < 200; i++ {
		if err := publish(); err != nil {
			failed++
			inARow++
			if r := hub.Ready(); r == nil {
				t.Fatalf("Ready right after a publish failed with %v: nil", err)
			}
			continue
		}
		inARow = 0
	}
	t.Logf("%d publishes acknowledged, %d failed on the full file", len(acked), failed)
	if failed == 0 || len(acked) == 0 {
		t.Fatal("the file size limit never made a commit fail, or none succeeded")
	}
	if err := hub.Ready(); err == nil || !strings.Contains(err.Error(), "file too large") {
		t.Errorf("Ready while commits fail: %v, want the reason", err)
	}
	check := func(when string) {
		t.Helper()
		ids := []string{herald.Earliest}
		for i := 0; i < len(acked); i += max(1, len(acked)/20) {
			ids = append(ids, acked[i])
		}
		ids = append(ids, acked[len(acked)-1])
		for _, id := range ids {
			sub, err := hub.SubscribeWith(herald.SubscribeOptions{Selectors: []herald.Selector{herald.Topic("news")}, LastEventID: id})
			if err != nil {
				t.Fatal(err)
			}
			want := acked
			if id != herald.Earliest {
				want = acked[slices.Index(acked, id)+1:]
			}
			if r := sub.Reset(); r != nil {
				t.Errorf("%s: resume after %s: reset %+v", when, id, r)
			}
			if got := replayedIDs(t, sub); !slices.Equal(got, want) {
				t.Errorf("%s: resume after %s replayed %d events, want the %d acknowledged after it", when, id, len(got), len(want))
			}
			sub.Close()
		}
	}
	check("full")

	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
		t.Fatal(err)
	}
	if err := publish(); err != nil {
		t.Fatalf("publish once the file may grow: %v", err)
	}
	if err := hub.Ready(); err != nil {
		t.Errorf("Ready once a commit succeeded: %v", err)
	}
	check("space again")
}
