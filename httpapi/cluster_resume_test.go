package httpapi_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/herald-sse/herald"
	"github.com/herald-sse/herald/httpapi"
	"github.com/herald-sse/herald/sse"
)

// heldFollow is a broker whose Follow reads nothing until released: a
// node lagging behind the others.
type heldFollow struct {
	*herald.MemoryBroker
	release chan struct{}
}

func (b heldFollow) Follow(ctx context.Context, epoch string, after uint64, fn func(herald.Batch) error) error {
	select {
	case <-b.release:
	case <-ctx.Done():
		return ctx.Err()
	}
	return b.MemoryBroker.Follow(ctx, epoch, after, fn)
}

// A lagging node asked to resume after a publisher's ID it has not read,
// while the broker is down, answers 503 with Retry-After and a JSON
// reason, not a reset to its own head (before events the client has had);
// once it can read the log, the same request resumes right after the ID.
func TestClusterLaggingNodeRefusesResumeDuringOutage(t *testing.T) {
	b := &herald.MemoryBroker{}
	held := heldFollow{b, make(chan struct{})}
	a, c := startNode(t, b, "a"), startNode(t, held, "lagging")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.hub.WaitSynced(ctx); err != nil { // the log is empty: nothing to read
		t.Fatal(err)
	}
	a.publishJSON(t, map[string]any{"topics": []string{"news"}, "data": "1", "id": "pub-1"})
	a.publishJSON(t, map[string]any{"topics": []string{"news"}, "data": "2"})

	resume := func() *http.Response {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, c.srv.URL+"/events?topic=news", nil)
		req.Header.Set("Last-Event-ID", "pub-1")
		resp, err := c.client.Do(req)
		if err != nil {
			t.Fatalf("GET /events: %v", err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}
	b.SetUnavailable(errors.New("connection refused"))
	resp := resume()
	if resp.StatusCode != http.StatusServiceUnavailable {
		m, _ := sse.NewDecoder(resp.Body).Next()
		t.Fatalf("resume during an outage on a lagging node: status %d, first event %q %q; want 503", resp.StatusCode, m.Type, m.Data)
	}
	body := decodeJSONBody(t, resp)
	if msg, _ := body["error"].(string); !strings.Contains(msg, "not yet in sync") || resp.Header.Get("Retry-After") == "" {
		t.Errorf("503 with error %v and Retry-After %q; want a reason and Retry-After", body["error"], resp.Header.Get("Retry-After"))
	}

	b.SetUnavailable(nil)
	close(held.release)
	resp = resume()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("resume once the node can read the log: status %d", resp.StatusCode)
	}
	dec := sse.NewDecoder(resp.Body)
	for {
		m, err := dec.Next()
		if err != nil {
			t.Fatalf("reading the resumed stream: %v", err)
		}
		if m.Type == httpapi.DefaultResetEvent {
			t.Fatalf("resumed with a reset: %s", m.Data)
		}
		if m.Type == "message" {
			if m.Data != "2" {
				t.Errorf("resumed after pub-1 with %q, want %q", m.Data, "2")
			}
			return
		}
	}
}
