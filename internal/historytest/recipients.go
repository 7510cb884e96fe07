package historytest

import (
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/herald-sse/herald"
)

// Reopener is an optional test hook: a store that survives a restart
// implements it by closing itself and opening the same store again, with
// the same retention. The suite then checks what a restart keeps.
type Reopener interface {
	Reopen() (herald.History, error)
}

// recipientRecords are records restricted in every way, and not, with
// the same topic "r".
func recipientRecords() []herald.Record {
	return []herald.Record{
		{ID: "private", Topics: []string{"r"}, Data: "p", Private: true},
		{ID: "users", Topics: []string{"r", "s"}, Data: "u", ToUsers: []string{"alice", "bob", "ünï"}},
		{ID: "conns", Topics: []string{"r"}, Data: "c", ToConnections: []string{"c1"}},
		{ID: "both", Topics: []string{"r"}, Data: "b", Private: true, ToUsers: []string{"carol"}, ToConnections: []string{"c2", "c3"}},
		{ID: "public", Topics: []string{"r"}, Data: "pub"},
		{ID: "empty", Topics: []string{"r"}, Data: "e", ToUsers: []string{""}},
	}
}

// wantRecipients checks that every way of replaying h from after gives
// want, Private and the recipients included.
func wantRecipients(t *testing.T, h herald.History, after uint64, want []herald.Record) {
	t.Helper()
	for _, sl := range [][]herald.Selector{all, topics("r"), topics("r", "s"), sels(Prefix("r"))} {
		got, err := replay(t, h, after, h.Head(), sl...)
		if err != nil || len(got) != len(want) {
			t.Errorf("Replay(%d, %v): %d records, %v; want %d", after, sl, len(got), err, len(want))
			continue
		}
		for i, g := range got {
			w := want[i]
			if g.Position != w.Position || g.ID != w.ID || g.Data != w.Data || g.Private != w.Private ||
				!slices.Equal(g.ToUsers, w.ToUsers) || !slices.Equal(g.ToConnections, w.ToConnections) {
				t.Errorf("Replay(%d, %v) record %d: got %+v, want %+v", after, sl, i, g, w)
			}
		}
	}
}

// Private, ToUsers and ToConnections come back as appended, before and
// after the store committed them: dropping them would make private or
// targeted events public on replay.
func (s *suite) recipients(t *testing.T) {
	h := s.history(t, herald.Retention{})
	add(t, h, rec("before", "r"))
	in := recipientRecords()
	wait, err := h.Append(in)
	if err != nil {
		t.Fatalf("Append: %v", err)
	}
	wantRecipients(t, h, 1, in) // perhaps only queued
	if wait != nil {
		if err := wait(); err != nil {
			t.Fatalf("Append's wait: %v", err)
		}
	}
	wantRecipients(t, h, 1, in)
	single := herald.Record{ID: "single", Topics: []string{"r"}, Private: true, ToUsers: []string{"dave"}}
	single.Position = add(t, h, single)[0]
	wantRecipients(t, h, single.Position-1, []herald.Record{single})
}

// Private and the recipients survive a restart of a store that
// implements Reopener, and so does the byte accounting of MaxBytes.
func (s *suite) recipientsReopened(t *testing.T) {
	const limit = 3000
	h := s.open(t, herald.Retention{MaxBytes: limit})
	if _, ok := h.(Reopener); !ok {
		if err := h.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		t.Skip("the store does not implement Reopener")
	}
	in := recipientRecords()
	add(t, h, in...)
	reopened, err := h.(Reopener).Reopen()
	if err != nil {
		t.Fatalf("Reopen: %v", err)
	}
	h = reopened
	t.Cleanup(func() {
		if err := h.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	wantRecipients(t, h, 0, in)
	// The sizes counted before the restart are those of the records:
	// appending the same again removes exactly the oldest that no longer
	// fit.
	recs := slices.Clone(in)
	for i := range 12 {
		r := herald.Record{ID: "more" + strconv.Itoa(i), Topics: []string{"r"}, Data: strings.Repeat("m", 100), ToUsers: []string{strings.Repeat("u", 50), "v"}, Private: i%2 == 0}
		r.Position = add(t, h, r)[0]
		recs = append(recs, r)
	}
	first := wantKeptWithin(t, h, recs, limit)
	wantRecipients(t, h, recs[first-1].Position, recs[first:])
}

// MaxBytes counts the recipients too, as Record.Size does.
func (s *suite) maxBytesRecipients(t *testing.T) {
	const limit = 5000
	h := s.history(t, herald.Retention{MaxBytes: limit})
	var recs []herald.Record
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range 60 {
		r := rec("b"+strconv.Itoa(i), "r")
		r.Data = strings.Repeat("d", rng.IntN(100))
		for range rng.IntN(8) {
			r.ToUsers = append(r.ToUsers, strings.Repeat("u", rng.IntN(60)))
		}
		for range rng.IntN(4) {
			r.ToConnections = append(r.ToConnections, strings.Repeat("c", rng.IntN(60)))
		}
		r.Private = rng.IntN(2) == 0
		r.Position = add(t, h, r)[0]
		recs = append(recs, r)
	}
	first := wantKeptWithin(t, h, recs, limit)
	wantRecipients(t, h, recs[first-1].Position, recs[first:])
}
