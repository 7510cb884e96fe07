package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/herald-sse/herald"
	"github.com/herald-sse/herald/httpapi"
	"github.com/herald-sse/herald/internal/bench"
)

// A multi-process bench re-executes os.Executable() with "bench --worker":
// in a test that is this test binary, which then acts as the herald
// command would.
func init() {
	if os.Getenv(bench.WorkerEnv) == "1" && len(os.Args) == 3 && os.Args[1] == "bench" {
		os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
	}
}

func newBenchTarget(t *testing.T) string {
	t.Helper()
	hub := &herald.Hub{Heartbeat: -1}
	if err := hub.Open(); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(&httpapi.Handler{Hub: hub, OpenPublish: true, Logger: slog.New(slog.DiscardHandler)})
	t.Cleanup(func() {
		hub.Close()
		srv.Close()
	})
	return srv.URL
}

// herald bench --json in two worker processes started through the CLI's
// own --worker mode: one JSON object on stdout, progress on stderr.
func TestBenchJSON(t *testing.T) {
	base := newBenchTarget(t)
	var out, errOut bytes.Buffer
	code := run(context.Background(), []string{"bench",
		"--url", base + "/events?topic=cli", "--streams", "40", "--streams-per-process", "20",
		"--events", "30", "--batch", "3", "--json",
	}, &out, &errOut)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	var res bench.Result
	dec := json.NewDecoder(&out)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&res); err != nil {
		t.Fatalf("stdout is not one JSON result: %v\n%s", err, out.String())
	}
	if dec.More() {
		t.Error("more than one JSON value on stdout")
	}
	if res.Workers != 2 || res.Connect.Connected != 40 || res.Delivery.Deliveries != 40*30 ||
		res.Delivery.Drops != 0 || res.Delivery.Duplicates != 0 || res.Delivery.Latency.P99Ms <= 0 {
		t.Errorf("result %+v", res)
	}
	if !strings.Contains(errOut.String(), "streams 40/40") {
		t.Errorf("stderr has no progress line: %q", errOut.String())
	}
}

// The text summary, in one process, with settings from the environment.
func TestBenchTextAndEnv(t *testing.T) {
	base := newBenchTarget(t)
	t.Setenv("HERALD_STREAMS", "10")
	t.Setenv("HERALD_EVENTS", "5")
	var out, errOut bytes.Buffer
	code := run(context.Background(), []string{"bench", "--url", base + "/events?topic=env", "--quiet", "--rate", "1000"}, &out, &errOut)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	for _, want := range []string{"10 connected, 0 failed", "5 events in 5 requests (1000 events/s", "50 deliveries", "drops 0", "latency     p50"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("summary lacks %q:\n%s", want, out.String())
		}
	}
	if errOut.Len() != 0 {
		t.Errorf("--quiet still wrote %q", errOut.String())
	}
}

// herald bench against a two-node cluster (hubs sharing a MemoryBroker)
// through the CLI, in two worker processes: --url lists both nodes, the
// default publish URLs are both nodes' /publish, and every stream gets
// every event.
func TestBenchCluster(t *testing.T) {
	broker := &herald.MemoryBroker{}
	var urls []string
	for i := range 2 {
		hub := &herald.Hub{Heartbeat: -1, Broker: broker, NodeID: fmt.Sprintf("n%d", i)}
		if err := hub.Open(); err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(&httpapi.Handler{Hub: hub, OpenPublish: true, Logger: slog.New(slog.DiscardHandler)})
		t.Cleanup(func() {
			hub.Close()
			srv.Close()
		})
		urls = append(urls, srv.URL)
	}
	var out, errOut bytes.Buffer
	code := run(context.Background(), []string{"bench",
		"--url", urls[0] + "/events?topic=cl," + urls[1] + "/events?topic=cl", "--streams", "30", "--streams-per-process", "15",
		"--events", "20", "--quiet",
	}, &out, &errOut)
	if code != 0 {
		t.Fatalf("exit %d: %s\n%s", code, errOut.String(), out.String())
	}
	for _, want := range []string{
		"targets     2 stream URLs, taken in turn:\n              " + urls[0] + "/events?topic=cl\n              " + urls[1] + "/events?topic=cl\n",
		"30 in 2 worker processes", "30 connected, 0 failed", "20 events in 20 requests to 2 URLs in turn", "600 deliveries", "drops 0", "duplicates 0", "latency     p50",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("summary lacks %q:\n%s", want, out.String())
		}
	}
}

func TestBenchFailures(t *testing.T) {
	var errOut bytes.Buffer
	code := run(context.Background(), []string{"bench", "--url", "http://127.0.0.1:1/events?topic=x", "--streams", "3", "--quiet"}, io.Discard, &errOut)
	if code != 1 || !strings.Contains(errOut.String(), "unreachable") {
		t.Errorf("unreachable target: exit %d, %q", code, errOut.String())
	}
	for _, args := range [][]string{
		{"--streams", "0"},
		{"--streams", "x"},
		{"--rate", "-1"},
		{"--batch", "0"},
		{"--max-failed", "2"},
		{"--connect-timeout", "0s"},
		{"--header", "no colon"},
		{"--server-pid", "1,x"},
		{"--publish-format", "xml"},
		{"--batch", "2", "--publish-format", "form"},
		{"--url", "https://example.com/events"},
		{"--url", "http://127.0.0.1:1/e?topic=a,http://127.0.0.1:2/e?topic=b"},
		{"--publish-url", "http://127.0.0.1:1/publish,ftp://x/"},
		{"extra"},
	} {
		var errOut bytes.Buffer
		code := run(context.Background(), append([]string{"bench"}, args...), io.Discard, &errOut)
		if code == 0 || errOut.Len() == 0 {
			t.Errorf("bench %q: exit %d, stderr %q; want a failure explained", args, code, errOut.String())
		}
	}
}

func TestBenchHelp(t *testing.T) {
	var help bytes.Buffer
	if code := run(context.Background(), []string{"bench", "--help"}, &help, io.Discard); code != 0 {
		t.Fatalf("bench --help exit %d", code)
	}
	for _, name := range []string{"url", "streams", "streams-per-process", "source", "connect-concurrency", "idle",
		"duration", "events", "rate", "window", "batch", "size", "publish-url", "server-pid", "json"} {
		if !strings.Contains(help.String(), "--"+name+" ") || !strings.Contains(help.String(), envName(name)) {
			t.Errorf("bench --help does not list --%s with %s", name, envName(name))
		}
	}
	if strings.Contains(help.String(), "--worker") {
		t.Error("bench --help shows the internal worker mode")
	}
}
