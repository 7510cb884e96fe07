package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/herald-sse/herald"
	"github.com/herald-sse/herald/httpapi"
)

// TestMain lets this test binary serve as a worker process: multi-process
// runs re-execute os.Executable(), which in a test is the test binary,
// with WorkerEnv set.
func TestMain(m *testing.M) {
	if os.Getenv(WorkerEnv) == "1" {
		if err := ServeWorker(context.Background(), os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "worker:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// newHerald serves a real hub in this process.
func newHerald(t *testing.T, maxConns int) *httptest.Server {
	t.Helper()
	hub := &herald.Hub{Heartbeat: -1}
	if err := hub.Open(); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(&httpapi.Handler{Hub: hub, OpenPublish: true, MaxConnections: maxConns, Logger: slog.New(slog.DiscardHandler)})
	t.Cleanup(func() {
		hub.Close()
		srv.Close()
	})
	return srv
}

func requireEngine(t *testing.T) {
	if !supported {
		t.Skip("the load generator needs Linux")
	}
}

// checkComplete asserts that every connected stream got every event once,
// in order, with a latency.
func checkComplete(t *testing.T, res Result, streams, events int) {
	t.Helper()
	d := res.Delivery
	want := int64(streams * events)
	if res.Connect.Connected != int64(streams) || res.Connect.Failed != 0 {
		t.Errorf("connect: %+v", res.Connect)
	}
	if res.Publish == nil || res.Publish.Events != uint64(events) || res.Publish.Errors != 0 {
		t.Fatalf("publish: %+v", res.Publish)
	}
	if d.Deliveries != want || d.Expected != uint64(want) || d.Foreign != 0 {
		t.Errorf("deliveries %d (foreign %d), expected %d; want %d", d.Deliveries, d.Foreign, d.Expected, want)
	}
	if d.Gaps != 0 || d.Missing != 0 || d.Drops != 0 || d.Duplicates != 0 || d.StreamsClosed != 0 {
		t.Errorf("gaps %d missing %d drops %d duplicates %d closed %d; want none", d.Gaps, d.Missing, d.Drops, d.Duplicates, d.StreamsClosed)
	}
	l := d.Latency
	if l.Count != uint64(want) || l.MinMs <= 0 || l.P50Ms <= 0 || l.P99Ms < l.P50Ms || l.MaxMs < l.P99Ms {
		t.Errorf("latency %+v", l)
	}
	if c := res.Connect.Latency; c.Count != uint64(streams) || c.P50Ms <= 0 {
		t.Errorf("connect latency %+v", c)
	}
	if d.BytesPerEvent < float64(DefaultSize) || d.BytesPerEvent > float64(DefaultSize)+60 {
		t.Errorf("%.1f bytes per event", d.BytesPerEvent)
	}
}

// 300 streams in three real worker processes (this test binary,
// re-executed), a closed-loop publisher with JSON batches: every stream
// gets every event exactly once, and the result survives JSON.
func TestRunWorkersAgainstHerald(t *testing.T) {
	requireEngine(t)
	srv := newHerald(t, 0)
	var progress strings.Builder
	res, err := Run(context.Background(), Config{
		URL:               srv.URL + "/events?topic=t",
		Streams:           300,
		StreamsPerProcess: 100,
		Events:            200,
		Batch:             10,
		Window:            50,
		Progress:          &progress,
		ProgressInterval:  50 * time.Millisecond,
	})
	if err != nil {
		t.Fatalf("%v\n%s", err, progress.String())
	}
	if res.Workers != 3 {
		t.Errorf("%d workers, want 3", res.Workers)
	}
	checkComplete(t, res, 300, 200)
	// Batches of 10, or fewer when the window has less room.
	if p := res.Publish; p.Format != "json" || p.Mode != "closed-loop" || p.Requests < 20 || p.Requests > 100 {
		t.Errorf("publish %+v: want 20 or a few more JSON requests in the closed loop", p)
	}
	if !strings.Contains(progress.String(), "streams 300/300") {
		t.Errorf("progress never showed every stream: %q", progress.String())
	}

	b, err := json.Marshal(res)
	if err != nil {
		t.Fatal(err)
	}
	var back map[string]any
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	delivery, _ := back["delivery"].(map[string]any)
	if delivery["deliveries"] != float64(60000) {
		t.Errorf("JSON delivery: %v", delivery)
	}
}

// In one process, at a fixed rate with form posts.
func TestRunInProcessAtRate(t *testing.T) {
	requireEngine(t)
	srv := newHerald(t, 0)
	res, err := Run(context.Background(), Config{
		URL:     srv.URL + "/events?topic=r",
		Streams: 50,
		Events:  40,
		Rate:    2000,
		Source:  "127.0.0.1,127.0.0.2",
	})
	if err != nil {
		t.Fatal(err)
	}
	checkComplete(t, res, 50, 40)
	if p := res.Publish; p.Format != "form" || p.Mode != "rate" || p.Requests != 40 || p.Rate > 2200 {
		t.Errorf("publish %+v: want 40 form requests at about 2000/s", p)
	}
	if res.Workers != 0 || res.Source != "127.0.0.1,127.0.0.2" {
		t.Errorf("workers %d source %q", res.Workers, res.Source)
	}
	if res.Server == nil || res.Server.Source != "proc" || res.Server.RSSAfterBytes == 0 {
		t.Errorf("server %+v: want this process measured from /proc", res.Server)
	}
	found := false
	for _, n := range res.Notes {
		found = found || strings.Contains(n, "runs in this process")
	}
	if !found {
		t.Errorf("notes %q do not say the server is this process", res.Notes)
	}
}

// Streams the server refuses are counted by cause, and too many make the
// run fail, with results.
func TestRunCountsRefusedStreams(t *testing.T) {
	requireEngine(t)
	srv := newHerald(t, 10)
	res, err := Run(context.Background(), Config{
		URL:        srv.URL + "/events?topic=x",
		Streams:    20,
		PublishURL: PublishNone,
	})
	if !errors.Is(err, ErrTooManyFailed) {
		t.Fatalf("error %v, want ErrTooManyFailed", err)
	}
	c := res.Connect
	if c.Connected > 10 || c.Failed < 10 || c.Connected+c.Failed != 20 || c.Errors["HTTP status 503"] != c.Failed {
		t.Errorf("connect %+v: want about 10 refused with 503", c)
	}
	if res.Publish != nil {
		t.Error("published with publishing off")
	}
}

func TestRunUnreachable(t *testing.T) {
	requireEngine(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	_, err = Run(context.Background(), Config{URL: "http://" + addr + "/events?topic=x", Streams: 5})
	if err == nil || !strings.Contains(err.Error(), "unreachable") || !strings.Contains(err.Error(), "refused") {
		t.Errorf("error %v, want target unreachable: connection refused", err)
	}

	srv := httptest.NewServer(http.NotFoundHandler())
	defer srv.Close()
	_, err = Run(context.Background(), Config{URL: srv.URL + "/events?topic=x", Streams: 5})
	if err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("error %v, want the 404 explained", err)
	}
}

// Against a server that is not Herald: a raw HTTP/1.0-style stream, close
// delimited, with CR line ends, that emits its own events and ends some
// streams. Publishing is off; events are counted without latency.
func TestRunOtherServerWithoutPublishing(t *testing.T) {
	requireEngine(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	quit := make(chan struct{})
	t.Cleanup(func() {
		close(quit)
		ln.Close()
		wg.Wait()
	})
	var n int
	var mu sync.Mutex
	remotes := map[string]int{}
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			n++
			short := n%4 == 0 // every fourth stream ends after one event
			remotes[netip.MustParseAddrPort(c.RemoteAddr().String()).Addr().String()]++
			mu.Unlock()
			wg.Go(func() {
				defer c.Close()
				line, _ := bufio.NewReader(c).ReadString('\n')
				if !strings.HasPrefix(line, "GET /feed ") {
					return
				}
				fmt.Fprint(c, "HTTP/1.0 200 OK\r\nContent-Type: text/event-stream\r\n\r\n:hi\r")
				t := time.NewTicker(5 * time.Millisecond)
				defer t.Stop()
				for i := 0; ; i++ {
					if _, err := fmt.Fprintf(c, "event: tick\rdata: %d\r\r", i); err != nil {
						return
					}
					if short {
						return
					}
					select {
					case <-quit:
						return
					case <-t.C:
					}
				}
			})
		}
	})
	res, err := Run(context.Background(), Config{
		URL:        "http://" + ln.Addr().String() + "/feed",
		Streams:    20,
		PublishURL: PublishNone,
		Duration:   200 * time.Millisecond,
		Source:     "127.0.0.3,127.0.0.4",
	})
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	// 20 streams and the preflight request, which leaves the kernel choose.
	if remotes["127.0.0.3"] != 10 || remotes["127.0.0.4"] != 10 {
		t.Errorf("streams came from %v, want 10 from each source address", remotes)
	}
	mu.Unlock()
	d := res.Delivery
	if d.Deliveries == 0 || d.Foreign != d.Deliveries || d.Latency.Count != 0 || d.Gaps != 0 {
		t.Errorf("delivery %+v: want foreign events only", d)
	}
	if res.Connect.Connected != 20 || d.StreamsClosed < 5 || d.CloseReasons[errEnded.Error()] != d.StreamsClosed {
		t.Errorf("connected %d, closed %d (%v); want 20 and at least 5 ended", res.Connect.Connected, d.StreamsClosed, d.CloseReasons)
	}
}

func TestPlanDefaultsAndErrors(t *testing.T) {
	requireEngine(t)
	ctx := context.Background()
	p, err := newPlan(ctx, Config{URL: "http://localhost:9/events?topic=a&topic=b", Streams: 1})
	if err != nil {
		t.Fatal(err)
	}
	if p.topic != "a" || !slices.Equal(p.publishURLs, []string{"http://localhost:9/publish"}) || p.format != "form" {
		t.Errorf("topic %q publish %q format %q", p.topic, p.publishURLs, p.format)
	}
	if len(p.targets) != 1 || !p.targets[0].Addr.Addr().IsLoopback() || !strings.HasPrefix(p.sourceDesc, "127.") || len(p.sources) != 254 {
		t.Errorf("targets %v sources %s (%d)", p.targets, p.sourceDesc, len(p.sources))
	}
	if !strings.HasPrefix(string(p.targets[0].Request), "GET /events?topic=a&topic=b HTTP/1.1\r\nHost: localhost:9\r\n") {
		t.Errorf("request %q", p.targets[0].Request)
	}
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{URL: "https://x/events", Streams: 1}, "https"},
		{Config{URL: "ftp://x/", Streams: 1}, "http://"},
		{Config{URL: "http://127.0.0.1/events", Streams: 1}, "no topic"},
		{Config{URL: "http://127.0.0.1/e?topic=t", Streams: 0}, "Streams"},
		{Config{URL: "http://127.0.0.1/e?topic=t", Streams: 1, Batch: 5, PublishFormat: "form"}, "json"},
		{Config{URL: "http://127.0.0.1/e?topic=t", Streams: 1, PublishFormat: "xml"}, "xml"},
		{Config{URL: "http://127.0.0.1/e?topic=t", Streams: 1, Source: "::1"}, "IP versions"},
		{Config{URL: "http://127.0.0.1/e?topic=t", Streams: 1, Source: "bogus"}, "prefix"},
		{Config{URL: "http://127.0.0.1/e?topic=t", Streams: 1, Header: http.Header{"X": {"a\r\nb"}}}, "line break"},
	} {
		if _, err := newPlan(ctx, tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: error %v, want one about %q", tc.cfg, err, tc.want)
		}
	}
	p, err = newPlan(ctx, Config{URL: "http://127.0.0.1/e", Streams: 1, PublishURL: PublishNone, Source: "127.5.0.0/23"})
	if err != nil || p.publishURLs != nil || len(p.sources) != 508 {
		t.Errorf("publishing off with a /23: %v, publish %q, %d sources", err, p.publishURLs, len(p.sources))
	}
	p, err = newPlan(ctx, Config{URL: "http://[::1]:80/e", Streams: 1, PublishURL: PublishNone})
	if err != nil || p.sources != nil {
		t.Errorf("IPv6 loopback: %v, sources %v; want the kernel's choice", err, p.sources)
	}
}
