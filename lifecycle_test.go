package herald

import (
	"context"
	"errors"
	"strings"
	"testing"
)

// unhealthyHistory is a MemoryHistory whose store reports a failure.
type unhealthyHistory struct{ *MemoryHistory }

func (unhealthyHistory) Healthy() error { return errors.New("disk full") }

// epochHistory is a MemoryHistory under an epoch of its own choosing.
type epochHistory struct {
	*MemoryHistory
	epoch string
}

func (h epochHistory) Epoch() string { return h.epoch }

// A hub that cannot work says so when opened, naming what is wrong,
// instead of panicking or misbehaving on first use; and it stays unusable.
func TestOpenRefusesMisconfiguredHub(t *testing.T) {
	mem := func() *MemoryHistory { return NewMemoryHistory(Retention{}) }
	var nilStore *MemoryHistory
	cases := []struct {
		name string
		hub  *Hub
		want string
	}{
		{"negative queue", &Hub{QueueBytes: -1}, "QueueBytes -1"},
		{"nil pointer history", &Hub{History: nilStore}, "nil *herald.MemoryHistory"},
		{"broker with another history", &Hub{Broker: &MemoryBroker{}, History: unhealthyHistory{mem()}}, "*MemoryHistory, not a herald.unhealthyHistory"},
		{"unhealthy history", &Hub{History: unhealthyHistory{mem()}}, "disk full"},
		{"epoch with a dash", &Hub{History: epochHistory{mem(), "abc-def-ghij"}}, `epoch "abc-def-ghij"`},
		{"empty epoch", &Hub{History: epochHistory{mem(), ""}}, `epoch ""`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			defer c.hub.Close()
			err := c.hub.Open()
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Open() = %v, want an error naming %q", err, c.want)
			}
			if _, err := c.hub.Publish(Event{Topics: []string{"t"}, Data: "x"}); !errors.Is(err, ErrHubNotOpen) {
				t.Fatalf("Publish after a failed Open: %v, want ErrHubNotOpen", err)
			}
		})
	}
}

// Nothing works before Open, and the error says what to do; Close works
// in any state, and Open after Close or twice is refused.
func TestHubLifecycle(t *testing.T) {
	h := &Hub{Heartbeat: -1}
	if _, err := h.Publish(Event{Topics: []string{"t"}, Data: "x"}); !errors.Is(err, ErrHubNotOpen) {
		t.Fatalf("Publish before Open: %v", err)
	}
	if _, err := h.Subscribe(Topic("t")); !errors.Is(err, ErrHubNotOpen) {
		t.Fatalf("Subscribe before Open: %v", err)
	}
	if err := h.Ready(); !errors.Is(err, ErrHubNotOpen) {
		t.Fatalf("Ready before Open: %v", err)
	}
	if _, err := h.Nodes(context.Background()); !errors.Is(err, ErrHubNotOpen) {
		t.Fatalf("Nodes before Open: %v", err)
	}
	if err := h.Open(); err != nil {
		t.Fatal(err)
	}
	if err := h.Open(); err == nil {
		t.Fatal("a second Open succeeded")
	}
	s, err := h.Subscribe(Topic("t"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.Publish(Event{Topics: []string{"t"}, Data: "x"}); err != nil {
		t.Fatal(err)
	}
	if got := len(s.Drain(nil)); got != 1 {
		t.Fatalf("drained %d frames, want 1", got)
	}
	h.Close()
	if err := h.Open(); !errors.Is(err, ErrHubClosed) {
		t.Fatalf("Open after Close: %v", err)
	}
	if _, err := h.Publish(Event{Topics: []string{"t"}, Data: "x"}); !errors.Is(err, ErrHubClosed) {
		t.Fatalf("Publish after Close: %v", err)
	}
	never := &Hub{}
	if err := never.Close(); err != nil {
		t.Fatalf("Close of a hub never opened: %v", err)
	}
}

// Open reads the settings once: fields changed afterwards do not change
// how the hub behaves, as Hub's documentation promises.
func TestFieldsChangedAfterOpenAreNotRead(t *testing.T) {
	first := NewMemoryHistory(Retention{})
	h := &Hub{Heartbeat: -1, QueueBytes: 1 << 20, History: first}
	if err := h.Open(); err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	h.QueueBytes = 1 // would drop any subscriber sent a byte, if read
	h.History = NewMemoryHistory(Retention{})
	s, err := h.Subscribe(Topic("t"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.Publish(Event{Topics: []string{"t"}, Data: "first"}, Event{Topics: []string{"t"}, Data: "second"}); err != nil {
		t.Fatal(err)
	}
	if removed, why := s.Removed(); removed {
		t.Fatalf("subscriber removed (%v): the QueueBytes set after Open was read", why)
	}
	if got := len(s.Drain(nil)); got != 2 {
		t.Fatalf("drained %d frames, want 2", got)
	}
	if got := first.Head(); got != 2 {
		t.Fatalf("the history given at Open holds %d events, want 2", got)
	}
}
