package httpapi_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
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
	n := startHub(t, func(hub *herald.Hub, _ *httpapi.Handler) {
		hub.Broker, hub.SyncWait = b, 20*time.Millisecond
		hub.Logger = slog.New(slog.DiscardHandler)
	})
	if status, body := n.get(t, "/readyz"); status != http.StatusServiceUnavailable || body["status"] != "not ready" {
		t.Errorf("/readyz before sync: %d %v", status, body)
	}
	status, body := n.get(t, "/events?topic=a")
	if status != http.StatusServiceUnavailable || !strings.Contains(fmt.Sprint(body["error"]), "not yet in sync") {
		t.Errorf("stream before sync: %d %v, want 503 saying the node is not in sync", status, body)
	}
	if got := n.logs.take("request rejected"); got != 1 {
		t.Errorf("refusal logged %d times, want once", got)
	}
}
