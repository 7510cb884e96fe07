package herald

import (
	"strings"
	"testing"
)

// Whatever a client sends as Last-Event-ID, subscribing never fails or
// panics, and either resumes inside the history or says why it cannot.
func FuzzResumePoint(f *testing.F) {
	h := &Hub{Heartbeat: -1}
	if err := h.Open(); err != nil {
		f.Fatal(err)
	}
	defer h.Close()
	ids, err := h.Publish(
		Event{Topics: []string{"a"}, Data: "1"},
		Event{Topics: []string{"a"}, ID: "custom-id", Data: "2"},
		Event{Topics: []string{"b"}, Data: "3"},
	)
	if err != nil {
		f.Fatal(err)
	}
	for _, seed := range []string{ids[0], ids[2], "custom-id", Earliest, "", "-", "x-", "-1", ids[0] + "0", strings.Repeat("z", 2000), "\x00-\xff", NewEpoch() + "-1"} {
		f.Add(seed)
	}
	head := h.History.Head()
	f.Fuzz(func(t *testing.T, lastEventID string) {
		s, err := h.SubscribeWith(SubscribeOptions{Selectors: []Selector{Topic("a"), All{}}, LastEventID: lastEventID})
		if err != nil {
			t.Fatalf("SubscribeWith(%q): %v", lastEventID, err)
		}
		defer s.Close()
		if r := s.Reset(); r != nil {
			switch r.Reason {
			case ResetUnknown, ResetExpired, ResetForeign:
			default:
				t.Fatalf("reason %q", r.Reason)
			}
			if r.LastEventID != lastEventID {
				t.Fatalf("reset names %q, asked %q", r.LastEventID, lastEventID)
			}
			return
		}
		if lastEventID != "" && (s.replayAfter > head || s.replayUpTo != head) {
			t.Fatalf("%q resumes at (%d, %d], head %d", lastEventID, s.replayAfter, s.replayUpTo, head)
		}
		n := 0
		if err := s.Replay(func(frames [][]byte) error { n += len(frames); return nil }); err != nil {
			t.Fatal(err)
		}
		if lastEventID != "" && uint64(n) != head-s.replayAfter {
			t.Fatalf("%q replayed %d events after %d, head %d", lastEventID, n, s.replayAfter, head)
		}
	})
}

// Any selector text either parses into a selector that prints back to
// the same text and matches without panicking, or is refused.
func FuzzParseSelector(f *testing.F) {
	for _, seed := range []string{"news", "*", "", "a/b/{id}", strings.Repeat("x", 2000), "\x00", "\u2028", " t "} {
		f.Add(seed, "news")
	}
	f.Fuzz(func(t *testing.T, raw, topic string) {
		sel, err := ParseSelector(raw)
		if err != nil {
			return
		}
		again, err := ParseSelector(sel.String())
		if err != nil || again.String() != sel.String() {
			t.Fatalf("%q prints as %q, which parses as %v, %v", raw, sel.String(), again, err)
		}
		_ = sel.Match(topic)
	})
}
