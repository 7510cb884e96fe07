package httpapi

import (
	"bytes"
	"errors"
	"testing"

	"github.com/herald-sse/herald"
)

// FuzzDecodeJSONEvents feeds arbitrary publish bodies to the JSON decoder:
// it must never panic, and whatever it accepts must be a well-formed batch
// that the hub then validates with a clear error or publishes.
func FuzzDecodeJSONEvents(f *testing.F) {
	hub := &herald.Hub{Heartbeat: -1}
	if err := hub.Open(); err != nil {
		f.Fatal(err)
	}
	defer hub.Close()
	f.Fuzz(func(t *testing.T, body []byte) {
		events, batch, err := decodeJSONEvents(body)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error message")
			}
			return
		}
		if len(events) == 0 || (!batch && len(events) != 1) {
			t.Fatalf("accepted %d events (batch %v) from %q", len(events), batch, body)
		}
		if batch != (bytes.TrimLeft(body, " \t\r\n")[0] == '[') {
			t.Fatalf("batch = %v for %q", batch, body)
		}
		if _, err := hub.Publish(events...); err != nil && !refused(err) {
			t.Fatalf("publishing decoded events: %v", err)
		}
	})
}

// FuzzDecodeFormEvent does the same for form bodies.
func FuzzDecodeFormEvent(f *testing.F) {
	hub := &herald.Hub{Heartbeat: -1}
	if err := hub.Open(); err != nil {
		f.Fatal(err)
	}
	defer hub.Close()
	f.Fuzz(func(t *testing.T, body []byte) {
		e, err := decodeFormEvent(body)
		if err != nil {
			return
		}
		if len(e.Topics) == 0 {
			t.Fatalf("accepted an event without topic from %q", body)
		}
		if _, err := hub.Publish(e); err != nil && !refused(err) {
			t.Fatalf("publishing decoded event: %v", err)
		}
	})
}

// refused reports whether err is the hub refusing what a publisher sent
// (an invalid event, or an ID a retained event already has, which the
// fuzzer produces by repeating inputs), rather than failing.
func refused(err error) bool {
	return errors.Is(err, herald.ErrInvalidEvent) || errors.Is(err, herald.ErrDuplicateID)
}
