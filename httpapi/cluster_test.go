package httpapi_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/herald-sse/herald"
	"github.com/herald-sse/herald/httpapi"
)

// startNode serves a hub joined to b as node name.
func startNode(t *testing.T, b herald.Broker, name string) *testHub {
	t.Helper()
	return startHub(t, func(hub *herald.Hub, _ *httpapi.Handler) {
		hub.Broker, hub.NodeID, hub.AnnounceEvery = b, name, 10*time.Millisecond
		hub.Logger = slog.New(slog.DiscardHandler)
	})
}

func (th *testHub) get(t *testing.T, path string) (int, map[string]any) {
	t.Helper()
	resp, err := th.client.Get(th.srv.URL + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	return resp.StatusCode, decodeJSONBody(t, resp)
}

func TestClusterOverHTTP(t *testing.T) {
	b := &herald.MemoryBroker{}
	a, c := startNode(t, b, "a"), startNode(t, b, "c")
	waitFor(t, "both nodes ready", func() bool {
		sa, _ := a.get(t, "/readyz")
		sc, _ := c.get(t, "/readyz")
		return sa == http.StatusOK && sc == http.StatusOK
	})
	s := c.subscribe(t, "news")
	id := a.publishJSON(t, map[string]any{"topics": []string{"news"}, "data": "through a"})
	if m := s.next(t); m.Data != "through a" || m.LastEventID != id {
		t.Errorf("node c streamed %+v, want the event published through a with id %q", m, id)
	}

	waitFor(t, "GET /cluster lists both nodes", func() bool {
		status, body := a.get(t, "/cluster")
		raw, _ := json.Marshal(body["nodes"])
		var nodes []herald.NodeInfo
		json.Unmarshal(raw, &nodes)
		return status == http.StatusOK && body["node"] == "a" && body["ready"] == true && len(nodes) == 2 &&
			nodes[0].Node == "a" && nodes[1].Node == "c" && nodes[1].Connections == 1 && nodes[1].Lag == 0
	})

	b.SetUnavailable(errors.New("connection refused"))
	status, body := a.post(t, "application/json", `{"topics":["news"],"data":"lost?"}`)
	if status != http.StatusServiceUnavailable || body["error"] == nil {
		t.Errorf("publish during a broker outage: %d %v, want 503 with an error", status, body)
	}
	waitFor(t, "/readyz reports the outage", func() bool {
		status, body := c.get(t, "/readyz")
		return status == http.StatusServiceUnavailable && body["status"] == "not ready" && body["error"] != nil
	})
	if status, _ := a.get(t, "/cluster"); status != http.StatusServiceUnavailable {
		t.Errorf("GET /cluster during an outage: %d, want 503", status)
	}
	b.SetUnavailable(nil)
	waitFor(t, "/readyz after the outage", func() bool { s, _ := c.get(t, "/readyz"); return s == http.StatusOK })
	a.publishJSON(t, map[string]any{"topics": []string{"news"}, "data": "after"})
	if m := s.next(t); m.Data != "after" {
		t.Errorf("the stream open through the outage got %q next, want %q", m.Data, "after")
	}
}

func TestStreamRefusedBeforeSync(t *testing.T) {
	b := &herald.MemoryBroker{}
	b.SetUnavailable(errors.New("down"))
	n := startNode(t, b, "n")
	if status, body := n.get(t, "/readyz"); status != http.StatusServiceUnavailable || body["status"] != "not ready" {
		t.Errorf("/readyz before sync: %d %v", status, body)
	}
	// The request's context bounds the wait: the client gives up.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, n.srv.URL+"/events?topic=a", nil)
	if resp, err := n.client.Do(req); err == nil {
		resp.Body.Close()
		t.Errorf("stream before sync answered %d", resp.StatusCode)
	}
	// The handler answers 503 once the wait ends, even with the client
	// gone, and logs it once.
	logged := 0
	waitFor(t, "the refusal is logged", func() bool { logged += n.logs.take("request rejected"); return logged > 0 })
	if logged != 1 {
		t.Errorf("refusal logged %d times, want once", logged)
	}
}
