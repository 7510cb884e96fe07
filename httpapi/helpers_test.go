package httpapi_test

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/herald-sse/herald"
	"github.com/herald-sse/herald/httpapi"
	"github.com/herald-sse/herald/sse"
)

// slowPath runs the suite with every stream served by a handler goroutine
// (as over TLS and HTTP/2) instead of the engine.
var slowPath = flag.Bool("slowpath", false, "serve streams without the engine")

// testHub is a hub served over HTTP for one test.
type testHub struct {
	hub     *herald.Hub
	handler *httpapi.Handler
	srv     *httptest.Server
	client  *http.Client
	logs    *logCounter
}

// logCounter is a slog.Handler that counts records by message.
type logCounter struct {
	mu     sync.Mutex
	counts map[string]int
}

func (c *logCounter) Enabled(context.Context, slog.Level) bool { return true }
func (c *logCounter) WithAttrs([]slog.Attr) slog.Handler       { return c }
func (c *logCounter) WithGroup(string) slog.Handler            { return c }
func (c *logCounter) Handle(_ context.Context, r slog.Record) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.counts[r.Message]++
	return nil
}

// take returns how often msg was logged since the last take.
func (c *logCounter) take(msg string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.counts[msg]
	delete(c.counts, msg)
	return n
}

// startHub serves a fresh hub; configure may adjust the hub and handler
// before the first request.
func startHub(t testing.TB, configure func(*herald.Hub, *httpapi.Handler)) *testHub {
	t.Helper()
	logs := &logCounter{counts: map[string]int{}}
	hub := &herald.Hub{Heartbeat: -1}
	h := &httpapi.Handler{Hub: hub, OpenPublish: true, Logger: slog.New(logs)}
	if configure != nil {
		configure(hub, h)
	}
	if err := hub.Open(); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(h)
	if !*slowPath {
		srv.Config.ConnContext = httpapi.ConnContext
	}
	srv.Start()
	tr := &http.Transport{MaxIdleConnsPerHost: 100}
	th := &testHub{hub: hub, handler: h, srv: srv, client: &http.Client{Transport: tr}, logs: logs}
	t.Cleanup(func() {
		hub.Close()
		tr.CloseIdleConnections()
		srv.Close()
	})
	return th
}

// stream is an open event stream read by a decoder.
type stream struct {
	resp *http.Response
	dec  *sse.Decoder
}

func (s *stream) close() { s.resp.Body.Close() }

// next returns the next event, failing the test on error.
func (s *stream) next(t testing.TB) sse.Message {
	t.Helper()
	m, err := s.dec.Next()
	if err != nil {
		t.Fatalf("reading stream: %v", err)
	}
	return m
}

// subscribe opens a stream on topics and waits for the response headers,
// so the subscription exists when it returns.
func (th *testHub) subscribe(t testing.TB, topics ...string) *stream {
	t.Helper()
	q := url.Values{"topic": topics}
	resp, err := th.client.Get(th.srv.URL + "/events?" + q.Encode())
	if err != nil {
		t.Fatalf("GET /events: %v", err)
	}
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		t.Fatalf("GET /events: status %d: %s", resp.StatusCode, body)
	}
	s := &stream{resp: resp, dec: sse.NewDecoder(resp.Body)}
	t.Cleanup(s.close)
	return s
}

// post sends body to /publish with contentType and returns the status and
// the decoded JSON answer.
func (th *testHub) post(t testing.TB, contentType, body string) (int, map[string]any) {
	t.Helper()
	resp, err := th.client.Post(th.srv.URL+"/publish", contentType, strings.NewReader(body))
	if err != nil {
		t.Fatalf("POST /publish: %v", err)
	}
	defer resp.Body.Close()
	return resp.StatusCode, decodeJSONBody(t, resp)
}

func decodeJSONBody(t testing.TB, resp *http.Response) map[string]any {
	t.Helper()
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatalf("answer is not a JSON object: %v", err)
	}
	return out
}

// publishJSON publishes one event as JSON and returns its id.
func (th *testHub) publishJSON(t testing.TB, v any) string {
	t.Helper()
	body, _ := json.Marshal(v)
	status, ans := th.post(t, "application/json", string(body))
	if status != http.StatusOK {
		t.Fatalf("publish %s: status %d: %v", body, status, ans)
	}
	id, _ := ans["id"].(string)
	if id == "" {
		t.Fatalf("publish answer has no id: %v", ans)
	}
	return id
}

// waitFor polls cond until it holds or 10 s pass. It is for state only
// observable by polling (goroutine counts, counters updated after a
// connection closes), not a substitute for channels.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// rawStream opens a stream over a plain TCP connection, which costs the
// test no goroutine, and returns once the opening comment arrived. The
// caller decides whether to read it further.
func rawStream(t testing.TB, addr, topic string, dialer *net.Dialer) (net.Conn, *bufio.Reader) {
	t.Helper()
	if dialer == nil {
		dialer = &net.Dialer{}
	}
	conn, err := dialer.DialContext(context.Background(), "tcp", addr)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	fmt.Fprintf(conn, "GET /events?topic=%s HTTP/1.1\r\nHost: herald\r\nAccept: text/event-stream\r\n\r\n", url.QueryEscape(topic))
	br := bufio.NewReaderSize(conn, 512)
	status, err := br.ReadString('\n')
	if err != nil || !strings.Contains(status, " 200 ") {
		t.Fatalf("stream status line %q, %v", status, err)
	}
	// Headers end at a blank line; the first chunk carries the opening
	// comment.
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("reading headers: %v", err)
		}
		if line == "\r\n" {
			break
		}
	}
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("reading opening comment: %v", err)
		}
		if line == ":\n" {
			return conn, br
		}
	}
}
