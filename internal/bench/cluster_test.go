package bench

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herald-sse/herald"
	"github.com/herald-sse/herald/httpapi"
)

// clusterNode is a Herald node of a test cluster, counting the stream
// and publish requests it serves.
type clusterNode struct {
	url       string
	port      uint16
	streams   atomic.Int64 // GET /events, the preflight request included
	publishes atomic.Int64 // POST /publish
}

// newCluster serves n hubs sharing one MemoryBroker, each on its own
// port: the nodes of a cluster, in this process. Publishing is open.
func newCluster(t *testing.T, n int) []*clusterNode {
	t.Helper()
	broker := &herald.MemoryBroker{}
	nodes := make([]*clusterNode, n)
	for i := range nodes {
		hub := &herald.Hub{Heartbeat: -1, Broker: broker, NodeID: fmt.Sprintf("node%d", i)}
		if err := hub.Open(); err != nil {
			t.Fatal(err)
		}
		api := &httpapi.Handler{Hub: hub, OpenPublish: true, Logger: slog.New(slog.DiscardHandler)}
		node := &clusterNode{}
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			switch {
			case r.Method == http.MethodGet && r.URL.Path == "/events":
				node.streams.Add(1)
			case r.Method == http.MethodPost && r.URL.Path == "/publish":
				node.publishes.Add(1)
			}
			api.ServeHTTP(w, r)
		}))
		t.Cleanup(func() {
			hub.Close()
			srv.Close()
		})
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := hub.WaitSynced(ctx)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		node.url = srv.URL
		node.port = netip.MustParseAddrPort(strings.TrimPrefix(srv.URL, "http://")).Port()
		nodes[i] = node
	}
	return nodes
}

// streamURLs lists the nodes' /events?topic=topic, separated by commas.
func streamURLs(nodes []*clusterNode, topic string) string {
	urls := make([]string, len(nodes))
	for i, n := range nodes {
		urls[i] = n.url + "/events?topic=" + topic
	}
	return strings.Join(urls, ",")
}

// 200 streams over three nodes in three worker processes (this test
// binary, re-executed), whose shares (67, 67, 66) do not divide by three:
// stream i opens node i mod 3 over the whole run, publishes go to the
// nodes in turn, and every stream gets every event, whichever node it is
// on, with its latency.
func TestRunClusterWithWorkers(t *testing.T) {
	requireEngine(t)
	nodes := newCluster(t, 3)
	var progress strings.Builder
	res, err := Run(context.Background(), Config{
		URL:               streamURLs(nodes, "c"),
		Streams:           200,
		StreamsPerProcess: 70,
		Events:            120,
		Batch:             4,
		Window:            40,
		Progress:          &progress,
		ProgressInterval:  50 * time.Millisecond,
	})
	if err != nil {
		t.Fatalf("%v\n%s", err, progress.String())
	}
	if res.Workers != 3 {
		t.Errorf("%d workers, want 3", res.Workers)
	}
	checkComplete(t, res, 200, 120)

	// Round robin over the run, not per worker (which would give
	// 68, 66, 66); one more request each for the preflight.
	for i, want := range []int64{67 + 1, 67 + 1, 66 + 1} {
		if got := nodes[i].streams.Load(); got != want {
			t.Errorf("node %d served %d stream requests, want %d", i, got, want)
		}
	}
	p := res.Publish
	var pubs []int64
	for _, n := range nodes {
		pubs = append(pubs, n.publishes.Load())
	}
	if sum := pubs[0] + pubs[1] + pubs[2]; sum != p.Requests || slices.Max(pubs)-slices.Min(pubs) > 1 || slices.Min(pubs) == 0 {
		t.Errorf("publish requests per node %v of %d: want them in turn", pubs, p.Requests)
	}
	want := []string{nodes[0].url + "/publish", nodes[1].url + "/publish", nodes[2].url + "/publish"}
	if p.URL != strings.Join(want, ",") {
		t.Errorf("publish URL %q, want each node's", p.URL)
	}

	// The three nodes are this process, listening on three ports.
	s := res.Server
	if s == nil || s.Source != "proc" || !slices.Equal(s.PIDs, []int{os.Getpid()}) || len(s.Ports) != 3 {
		t.Errorf("server %+v: want this process, found on the three ports", s)
	}
	for i, n := range nodes {
		if !slices.Contains(s.Ports, n.port) {
			t.Errorf("node %d's port %d not among %v", i, n.port, s.Ports)
		}
	}
	var text strings.Builder
	res.WriteText(&text)
	if !strings.Contains(text.String(), "targets     3 stream URLs, taken in turn:\n              "+nodes[0].url+"/events?topic=c\n") {
		t.Errorf("summary does not list the targets:\n%s", text.String())
	}
}

// In one process, at a fixed rate, with the publish URLs given (one
// twice, so it takes two of every three requests): streams and events
// still reach every node.
func TestRunClusterInProcessWithPublishURLs(t *testing.T) {
	requireEngine(t)
	nodes := newCluster(t, 2)
	res, err := Run(context.Background(), Config{
		URL:        streamURLs(nodes, "d"),
		Streams:    30,
		Events:     30,
		Rate:       3000,
		PublishURL: nodes[1].url + "/publish, " + nodes[1].url + "/publish," + nodes[0].url + "/publish",
	})
	if err != nil {
		t.Fatal(err)
	}
	checkComplete(t, res, 30, 30)
	if a, b := nodes[0].streams.Load(), nodes[1].streams.Load(); a != 16 || b != 16 {
		t.Errorf("stream requests per node %d, %d; want 15 each and the preflight", a, b)
	}
	if a, b := nodes[0].publishes.Load(), nodes[1].publishes.Load(); a != 10 || b != 20 {
		t.Errorf("publish requests per node %d, %d; want 10 and 20", a, b)
	}
}

func TestSplitURLs(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{"http://a/e?topic=t", []string{"http://a/e?topic=t"}},
		{"http://a/e?topic=x,y", []string{"http://a/e?topic=x,y"}},
		{"http://a:1/e,http://b:2/e", []string{"http://a:1/e", "http://b:2/e"}},
		{" http://a/e?t=1,2 , https://b/p,HTTP://c/, svc+x-1.2://d", []string{"http://a/e?t=1,2", "https://b/p", "HTTP://c/", "svc+x-1.2://d"}},
		{"http://a/e?next=,x://", []string{"http://a/e?next=", "x://"}},
		{"http://a/e?t=1,2x://,:/", []string{"http://a/e?t=1,2x://,:/"}},
		{"", []string{""}},
	} {
		if got := SplitURLs(tc.in); !slices.Equal(got, tc.want) {
			t.Errorf("SplitURLs(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestPlanCluster(t *testing.T) {
	requireEngine(t)
	ctx := context.Background()
	p, err := newPlan(ctx, Config{
		URL:     "http://127.0.0.1:8081/events?topic=a,http://127.0.0.1:8082/events?topic=a, http://127.0.0.1:8081/other?topic=a",
		Streams: 3, Header: http.Header{"Authorization": {"Bearer x"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.targets) != 3 || p.targets[0].Addr.Port() != 8081 || p.targets[1].Addr.Port() != 8082 || p.targets[2].Addr != p.targets[0].Addr {
		t.Errorf("targets %v", p.targets)
	}
	if r := string(p.targets[2].Request); !strings.HasPrefix(r, "GET /other?topic=a HTTP/1.1\r\nHost: 127.0.0.1:8081\r\n") || !strings.Contains(r, "Authorization: Bearer x\r\n") {
		t.Errorf("third request %q", r)
	}
	// One publish URL per distinct origin.
	if want := []string{"http://127.0.0.1:8081/publish", "http://127.0.0.1:8082/publish"}; !slices.Equal(p.publishURLs, want) || p.topic != "a" {
		t.Errorf("publish %q topic %q; want %q", p.publishURLs, p.topic, want)
	}
	if len(p.sources) != 254 {
		t.Errorf("%d sources, want a random /24 for loopback targets", len(p.sources))
	}

	p, err = newPlan(ctx, Config{URL: "http://127.0.0.1:1/e?topic=a,http://127.0.0.1:2/e?topic=b", Streams: 2, Topic: "c",
		PublishURL: "https://x/pub,http://y:9/pub"})
	if err != nil || p.topic != "c" || !slices.Equal(p.publishURLs, []string{"https://x/pub", "http://y:9/pub"}) {
		t.Errorf("given topic and publish URLs: %v, %q, %q", err, p.topic, p.publishURLs)
	}
	p, err = newPlan(ctx, Config{URL: "http://127.0.0.1:1/e,http://[::1]:2/e", Streams: 2, PublishURL: " none "})
	if err != nil || p.publishURLs != nil || p.sources != nil {
		t.Errorf("IPv4 and IPv6 targets without publishing: %v, publish %q, sources %v; want the kernel's choice", err, p.publishURLs, p.sources)
	}
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{URL: "http://127.0.0.1:1/e?topic=a,http://127.0.0.1:2/e?topic=b", Streams: 1}, "different topics"},
		{Config{URL: "http://127.0.0.1:1/e?topic=a,http://127.0.0.1:2/e", Streams: 1}, "different topics"},
		{Config{URL: "http://127.0.0.1:1/e?topic=a,https://127.0.0.1:2/e?topic=a", Streams: 1}, "https"},
		{Config{URL: "http://127.0.0.1:1/e?topic=a,http://127.0.0.1:2/e?topic=a", Streams: 1, PublishURL: "http://x/p,ftp://y/p"}, "publish URL"},
		{Config{URL: "http://127.0.0.1:1/e?topic=a", Streams: 1, PublishURL: "/publish"}, "publish URL"},
		{Config{URL: "http://127.0.0.1:1/e,http://[::1]:2/e", Streams: 1, PublishURL: PublishNone, Source: "127.0.0.1"}, "IP versions"},
	} {
		if _, err := newPlan(ctx, tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: error %v, want one about %q", tc.cfg, err, tc.want)
		}
	}
}

// /metrics of several targets add up; a gauge that one target lacks is
// not reported at all.
func TestServerMetricsOfSeveralTargets(t *testing.T) {
	metrics := func(body string) string {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/metrics" {
				fmt.Fprint(w, body)
			}
		}))
		t.Cleanup(srv.Close)
		return srv.URL
	}
	a := metrics("go_goroutines 10\nprocess_resident_memory_bytes 1000\n")
	b := metrics("go_goroutines 20\nprocess_resident_memory_bytes 2000\n")
	c := metrics("go_goroutines 30\n")
	probe := func(urls ...string) *serverProbe {
		p, err := newPlan(context.Background(), Config{URL: strings.Join(urls, ","), Streams: 1, PublishURL: PublishNone, ServerPIDs: []int{os.Getpid()}})
		if err != nil {
			t.Fatal(err)
		}
		sp, _ := newServerProbe(context.Background(), p)
		return sp
	}
	sp := probe(a+"/events", b+"/events", a+"/other")
	if len(sp.metricsURLs) != 2 {
		t.Errorf("metrics URLs %q, want one per target address", sp.metricsURLs)
	}
	if s := sp.sample(context.Background()); s.goroutines != 30 || s.metricsRSS != 3000 {
		t.Errorf("sample %+v, want sums", s)
	}
	if s := probe(a+"/events", b+"/events", c+"/events").sample(context.Background()); s.goroutines != 60 || s.metricsRSS != 0 {
		t.Errorf("sample %+v, want goroutines summed and no RSS", s)
	}
	r := serverResult(sp, serverSample{goroutines: 10}, serverSample{goroutines: 30, rss: 1 << 20}, 10)
	if r.MetricsTargets != 2 || r.GoroutinesPerStream != 2 {
		t.Errorf("result %+v", r)
	}
	var text strings.Builder
	(&Result{Target: a + "/e", Server: r}).WriteText(&text)
	if !strings.Contains(text.String(), "goroutines summed over 2 targets 10 -> 30, 2.00/stream") {
		t.Errorf("summary:\n%s", text.String())
	}
}
