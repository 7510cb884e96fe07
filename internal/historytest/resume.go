package historytest

import (
	"strings"
	"testing"

	"github.com/herald-sse/herald"
)

// A hub on the store answers a resume after a publisher's ID of an event
// the stream may not see (private, or for other users or connections)
// exactly as it answers an ID never issued, so a guessed ID does not tell
// whether such an event exists; a stream that may see the event resumes
// right after it. The hub decides from what Lookup and Replay return, so
// a store that loses the restrictions of a record fails here too.
func (s *suite) resumeHidesUnseen(t *testing.T) {
	hub := &herald.Hub{History: s.history(t, herald.Retention{}), Heartbeat: -1}
	if err := hub.Open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hub.Close() })
	if _, err := hub.Publish(
		herald.Event{Topics: []string{"t"}, ID: "public", Data: "public"},
		herald.Event{Topics: []string{"t"}, ID: "secret", Data: "secret", Private: true},
		herald.Event{Topics: []string{"t"}, ID: "for-alice", Data: "for-alice", ToUsers: []string{"alice"}},
		herald.Event{Topics: []string{"t"}, ID: "for-c1", Data: "for-c1", ToConnections: []string{"c1"}},
		herald.Event{Topics: []string{"t"}, ID: "secret-carol", Data: "secret-carol", Private: true, ToUsers: []string{"carol"}},
		herald.Event{Topics: []string{"t"}, Data: "last"},
	); err != nil {
		t.Fatal(err)
	}
	rights := []herald.Selector{herald.Topic("t")}
	type who = herald.SubscribeOptions
	anonymous, reader := who{}, who{Rights: rights}
	alice, bob, carol := who{Subject: "alice"}, who{Subject: "bob", Rights: rights}, who{Subject: "carol"}
	c1, c2 := who{ConnectionID: "c1"}, who{ConnectionID: "c2", Rights: rights}
	carolReader := who{Subject: "carol", Rights: rights}

	// What resuming after id answers o: the reset, or what it replays.
	resume := func(o herald.SubscribeOptions, id string) (*herald.Reset, []string) {
		t.Helper()
		o.Selectors, o.LastEventID = []herald.Selector{herald.Topic("t")}, id
		sub, err := hub.SubscribeWith(o)
		if err != nil {
			t.Fatalf("resume after %q as %+v: %v", id, o, err)
		}
		defer sub.Close()
		var got []string
		if err := sub.Replay(func(frames [][]byte) error {
			for _, f := range frames {
				for line := range strings.Lines(string(f)) {
					if d, ok := strings.CutPrefix(line, "data: "); ok {
						got = append(got, strings.TrimSuffix(d, "\n"))
					}
				}
			}
			return nil
		}); err != nil {
			t.Fatalf("Replay after %q: %v", id, err)
		}
		return sub.Reset(), got
	}

	for _, c := range []struct {
		name string
		o    herald.SubscribeOptions
		id   string
	}{
		{"anonymous/private", anonymous, "secret"},
		{"anonymous/user", anonymous, "for-alice"},
		{"other user/user", bob, "for-alice"},
		{"anonymous/connection", anonymous, "for-c1"},
		{"other connection/connection", c2, "for-c1"},
		{"the user without rights/private for the user", carol, "secret-carol"},
		{"rights but another user/private for a user", reader, "secret-carol"},
	} {
		never, _ := resume(c.o, "never-issued")
		if never == nil || never.Reason != herald.ResetUnknown {
			t.Fatalf("%s: resuming after an ID never issued: reset %+v, want %q", c.name, never, herald.ResetUnknown)
		}
		reset, replayed := resume(c.o, c.id)
		if reset == nil || reset.Reason != never.Reason || reset.ResumeID != never.ResumeID || replayed != nil {
			t.Errorf("%s: resuming after %q: reset %+v, replayed %v; want the answer to an ID never issued, %+v",
				c.name, c.id, reset, replayed, never)
		}
	}

	for _, c := range []struct {
		name string
		o    herald.SubscribeOptions
		id   string
		want []string
	}{
		{"anonymous/public", anonymous, "public", []string{"last"}},
		{"rights/private", reader, "secret", []string{"last"}},
		{"the user/user", alice, "for-alice", []string{"last"}},
		{"the connection/connection", c1, "for-c1", []string{"last"}},
		{"the user with rights/private for the user", carolReader, "secret-carol", []string{"last"}},
		{"rights/public", reader, "public", []string{"secret", "last"}},
		{"the user with rights/public", carolReader, "public", []string{"secret", "secret-carol", "last"}},
	} {
		reset, replayed := resume(c.o, c.id)
		if reset != nil || strings.Join(replayed, ",") != strings.Join(c.want, ",") {
			t.Errorf("%s: resuming after %q: reset %+v, replayed %v; want %v", c.name, c.id, reset, replayed, c.want)
		}
	}
}
