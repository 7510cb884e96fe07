package e2e

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/herald-sse/herald"
	"github.com/herald-sse/herald/httpapi"
)

// A page on an allowed origin streams from the hub with its EventSource
// (credentials included); a page on another origin is refused (403) and
// its EventSource gives up, rather than being served without CORS headers.
func TestCrossOriginEventSource(t *testing.T) {
	requireBrowser(t)
	page := func() *httptest.Server {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "<!doctype html><title>another site</title>")
		}))
		t.Cleanup(s.Close)
		return s
	}
	allowed, denied := page(), page()

	hub := &herald.Hub{}
	if err := hub.Open(); err != nil {
		t.Fatal(err)
	}
	api := &httpapi.Handler{Hub: hub, OpenPublish: true, CORSOrigins: []string{allowed.URL}}
	srv := httptest.NewUnstartedServer(api)
	srv.Config.ConnContext = httpapi.ConnContext
	srv.Start()
	t.Cleanup(func() { hub.Close(); srv.Close() })
	// Replayed to every subscriber (lastEventId=earliest): the page needs
	// no signal to know when to expect it.
	if _, err := hub.Publish(herald.Event{Topics: []string{"cors"}, Data: "hello from the hub"}); err != nil {
		t.Fatal(err)
	}

	var res struct {
		Results []struct {
			Page           string
			Opened, Closed bool
			Data           string
		}
	}
	runNode(t, "cors.mjs", srv.URL, map[string]any{"pages": []string{allowed.URL + "/", denied.URL + "/"}, "timeoutMs": 10000}, &res)
	if len(res.Results) != 2 {
		t.Fatalf("results %+v", res.Results)
	}
	if ok := res.Results[0]; !ok.Opened || ok.Data != "hello from the hub" {
		t.Errorf("allowed origin: %+v, want the stream open with the event", ok)
	}
	if no := res.Results[1]; no.Opened || !no.Closed {
		t.Errorf("denied origin: %+v, want the EventSource closed for good", no)
	}
}
