package httpapi_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/herald-sse/herald"
	"github.com/herald-sse/herald/httpapi"
	"github.com/herald-sse/herald/sse"
)

// The behaviour tests below run over every way a stream can be served:
// the engine (plain HTTP/1.1), a handler goroutine (what TLS, HTTP/2 and
// servers without ConnContext get), TLS with HTTP/1.1, and HTTP/2.
var transports = []string{"engine", "goroutine", "tls", "h2"}

// transportHub is a hub served over one transport, with a way to make
// clients whose raw TCP connections the test can reach.
type transportHub struct {
	hub     *herald.Hub
	handler *httpapi.Handler
	srv     *httptest.Server
	logs    *logCounter
	mode    string
}

// smallSendBuffers keeps the server's socket buffers small so a client that
// stops reading fills them after a few KiB. It leaves accepted connections
// unwrapped: the engine only takes plain sockets.
type smallSendBuffers struct{ net.Listener }

func (l smallSendBuffers) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetWriteBuffer(16 << 10)
	}
	return c, err
}

func startTransport(t *testing.T, mode string, configure func(*herald.Hub, *httpapi.Handler)) *transportHub {
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
	srv.Listener = smallSendBuffers{srv.Listener}
	if mode != "h2-plainserver" {
		srv.Config.HTTP2 = httpapi.NewServer("", h).HTTP2 // as herald serve runs it
	}
	switch mode {
	case "engine":
		srv.Config.ConnContext = httpapi.ConnContext
		srv.Start()
	case "goroutine":
		srv.Start()
	case "tls":
		srv.Config.ConnContext = httpapi.ConnContext // must be ignored over TLS
		srv.StartTLS()
	case "h2", "h2-plainserver": // the latter without NewServer's HTTP/2 settings
		srv.Config.ConnContext = httpapi.ConnContext
		srv.EnableHTTP2 = true
		srv.StartTLS()
		mode = "h2"
	default:
		t.Fatalf("unknown transport %q", mode)
	}
	t.Cleanup(func() {
		hub.Close()
		srv.Close()
	})
	return &transportHub{hub: hub, handler: h, srv: srv, logs: logs, mode: mode}
}

// client returns an HTTP client for the hub whose raw TCP connections are
// passed to dialed, and whose sockets have small receive buffers if small.
func (th *transportHub) client(small bool, dialed func(*net.TCPConn)) *http.Client {
	d := &net.Dialer{}
	if small {
		d = smallReceiveBuffer
	}
	tr := &http.Transport{
		MaxIdleConnsPerHost: 1000,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := d.DialContext(ctx, network, addr)
			if err == nil && dialed != nil {
				dialed(c.(*net.TCPConn))
			}
			return c, err
		},
	}
	if th.srv.TLS != nil {
		tr.TLSClientConfig = th.srv.Client().Transport.(*http.Transport).TLSClientConfig.Clone()
		if th.mode == "h2" {
			tr.ForceAttemptHTTP2 = true
			tr.TLSClientConfig.NextProtos = []string{"h2"}
		} else {
			tr.TLSClientConfig.NextProtos = []string{"http/1.1"}
		}
	}
	return &http.Client{Transport: tr}
}

// open starts a stream and returns its response once the headers arrived,
// so the subscription exists.
func (th *transportHub) open(t *testing.T, c *http.Client, topics ...string) *http.Response {
	t.Helper()
	resp, err := c.Get(th.srv.URL + "/events?" + url.Values{"topic": topics}.Encode())
	if err != nil {
		t.Fatalf("GET /events: %v", err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /events: status %d", resp.StatusCode)
	}
	wantMajor := 1
	if th.mode == "h2" {
		wantMajor = 2
	}
	if resp.ProtoMajor != wantMajor {
		t.Fatalf("stream served over %s, want HTTP/%d", resp.Proto, wantMajor)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// One reader among 1,000 stops reading. The other 999 receive every event
// while the stalled one is still blocked: it delays none of them. Then
// its queue overflows, and it alone is dropped, its stream cut.
//
// The property is checked by order, not by a duration: every reader has
// every event before the stalled stream is released. (The write deadline
// is off here so that load cannot release it first; deadlines are
// tested on their own.) Under load this test once failed with a 1 s
// bound on the delay, and over HTTP/2 with INTERNAL_ERROR: that was not
// load but a bug, the write deadline left set after each write, which
// over HTTP/2 resets a stream when it expires even if nothing is being
// written (here: the first streams, while the others were still being
// opened). See TestQuietStreamOutlivesWriteTimeout.
func TestStalledReaderAmongThousand(t *testing.T) {
	for _, mode := range transports {
		t.Run(mode, func(t *testing.T) { testStalledReaderAmongThousand(t, mode) })
	}
}

func testStalledReaderAmongThousand(t *testing.T, mode string) {
	const streams = 1000
	ticks, tickEvery := 150, 10*time.Millisecond
	if raceEnabled {
		ticks, tickEvery = 25, 100*time.Millisecond
	}
	th := startTransport(t, mode, func(hub *herald.Hub, h *httpapi.Handler) {
		// Larger than all the bulk below: however far the writer lags
		// behind the publisher, the queue cannot overflow before the
		// test means it to.
		hub.QueueBytes = 16 << 20
		h.WriteTimeout = -1
		h.MaxConnections = streams + 10
	})
	// The stalled stream also gets bulk events nobody else wants, to fill
	// its buffers at once: over HTTP/2 that means the client's 4 MiB
	// per-stream window, over HTTP/1.1 a few socket buffers. The bulk
	// exceeds those buffers, so the stream's writer is blocked, and stays
	// below QueueBytes, so it is not dropped yet (with a 4 MiB queue and
	// 5 MiB of bulk over HTTP/2 it was, whenever the publisher ran more
	// than 1 MiB ahead of the writer).
	stalledClient := th.client(true, nil)
	stalled := th.open(t, stalledClient, "tick", "bulk")

	type result struct {
		maxDelay time.Duration
		err      error
	}
	results := make(chan result, streams-1)
	shared := th.client(false, nil)
	for range streams - 1 {
		resp := th.open(t, shared, "tick")
		go func() {
			dec := sse.NewDecoder(resp.Body)
			var r result
			for want := 0; want < ticks; want++ {
				m, err := dec.Next()
				if err != nil {
					r.err = fmt.Errorf("after %d ticks: %w", want, err)
					break
				}
				seq, sent, _ := strings.Cut(m.Data, " ")
				nanos, _ := strconv.ParseInt(sent, 10, 64)
				if seq != strconv.Itoa(want) {
					r.err = fmt.Errorf("got tick %q, want %d", seq, want)
					break
				}
				r.maxDelay = max(r.maxDelay, time.Since(time.Unix(0, nanos)))
			}
			results <- r
		}()
	}

	bulk := 4
	if mode == "h2" {
		bulk = 96 // 6 MiB
	}
	big := strings.Repeat("b", 64<<10)
	publishBulk := func() {
		t.Helper()
		if _, err := th.hub.Publish(herald.Event{Topics: []string{"bulk"}, Data: big}); err != nil {
			t.Fatal(err)
		}
	}
	for range bulk {
		publishBulk()
	}
	tick := time.NewTicker(tickEvery) // pacing the publisher, not synchronising
	defer tick.Stop()
	for i := range ticks {
		<-tick.C
		data := fmt.Sprintf("%d %d", i, time.Now().UnixNano())
		if _, err := th.hub.Publish(herald.Event{Topics: []string{"tick"}, Data: data}); err != nil {
			t.Fatal(err)
		}
	}
	var worst time.Duration
	for range streams - 1 {
		r := <-results
		if r.err != nil {
			t.Fatalf("a reading stream: %v", r.err)
		}
		worst = max(worst, r.maxDelay)
	}
	t.Logf("%s: worst publish→receive delay among %d readers: %v", mode, streams-1, worst)
	// Every reader has every tick; the stalled stream is still there,
	// still blocked, and dropped by nobody.
	if st := th.hub.Stats(); st.Subscribers != streams || st.Dropped != 0 {
		t.Fatalf("before the stalled stream's queue overflowed: %d subscribers, %d dropped; want %d, 0", st.Subscribers, st.Dropped, streams)
	}
	if n := th.logs.take("slow stream dropped"); n != 0 || th.handler.ActiveStreams() != streams {
		t.Fatalf("the stalled stream was released (%d drops logged, %d streams) before its queue overflowed", n, th.handler.ActiveStreams())
	}

	// Now overflow its queue: it alone is dropped.
	for th.hub.Stats().Dropped == 0 {
		publishBulk()
	}
	if st := th.hub.Stats(); st.Subscribers != streams-1 || st.Dropped != 1 {
		t.Errorf("after the overflow: %d subscribers, %d dropped; want %d, 1", st.Subscribers, st.Dropped, streams-1)
	}
	// The stalled client, reading at last, finds its stream cut short: a
	// clean end would make it believe it had everything.
	_, err := io.Copy(io.Discard, stalled.Body)
	if err == nil {
		t.Error("stalled stream ended cleanly; want it cut")
	}
	waitFor(t, "the stalled stream to be dropped", func() bool { return th.logs.take("slow stream dropped") == 1 })
	waitFor(t, "its slot to be freed", func() bool { return th.handler.ActiveStreams() == streams-1 })
}

// A client that vanishes (reset or orderly close) is noticed within 2 s
// although no event is sent, and its subscription and slot are freed.
func TestPeerGoneNoticedWithoutEvents(t *testing.T) {
	for _, mode := range transports {
		for _, how := range []string{"reset", "close"} {
			t.Run(mode+"/"+how, func(t *testing.T) {
				th := startTransport(t, mode, nil)
				var raw *net.TCPConn
				c := th.client(false, func(tc *net.TCPConn) { raw = tc })
				th.open(t, c, "quiet")
				if th.handler.ActiveStreams() != 1 || th.hub.Stats().Subscribers != 1 {
					t.Fatal("stream not registered")
				}
				if how == "reset" {
					_ = raw.SetLinger(0) // close sends RST
				}
				gone := time.Now()
				raw.Close()
				waitFor(t, "the stream to be freed", func() bool {
					return th.handler.ActiveStreams() == 0 && th.hub.Stats().Subscribers == 0
				})
				if took := time.Since(gone); took > 2*time.Second {
					t.Errorf("noticed after %v, want within 2 s", took)
				}
			})
		}
	}
}

// Events published before the hub closes all arrive, then the stream ends
// cleanly (not cut): the client knows to reconnect, not that it lost data.
func TestShutdownDeliversQueuedThenEnds(t *testing.T) {
	for _, mode := range transports {
		t.Run(mode, func(t *testing.T) {
			th := startTransport(t, mode, nil)
			resp := th.open(t, th.client(false, nil), "t")
			for i := range 100 {
				if _, err := th.hub.Publish(herald.Event{Topics: []string{"t"}, Data: strconv.Itoa(i)}); err != nil {
					t.Fatal(err)
				}
			}
			th.hub.Close()
			dec := sse.NewDecoder(resp.Body)
			for i := range 100 {
				m, err := dec.Next()
				if err != nil || m.Data != strconv.Itoa(i) {
					t.Fatalf("event %d: %q, %v", i, m.Data, err)
				}
			}
			if _, err := dec.Next(); !errors.Is(err, io.EOF) {
				t.Fatalf("after the last event: %v, want a clean end (EOF)", err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := th.handler.WaitStreams(ctx); err != nil {
				t.Fatalf("WaitStreams: %v", err)
			}
		})
	}
}

// Stream headers set by middleware in front of the handler reach the
// client on every transport (the engine writes the head itself).
func TestStreamHeadersOnEveryTransport(t *testing.T) {
	for _, mode := range transports {
		t.Run(mode, func(t *testing.T) {
			th := startTransport(t, mode, nil)
			inner := th.srv.Config.Handler
			th.srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("X-Middleware", "yes")
				inner.ServeHTTP(w, r)
			})
			resp := th.open(t, th.client(false, nil), "t")
			for k, want := range map[string]string{
				"Content-Type":      "text/event-stream",
				"Cache-Control":     "no-cache",
				"X-Accel-Buffering": "no",
				"X-Middleware":      "yes",
			} {
				if got := resp.Header.Get(k); got != want {
					t.Errorf("%s = %q, want %q", k, got, want)
				}
			}
			if _, err := th.hub.Publish(herald.Event{Topics: []string{"t"}, Data: "x\ny"}); err != nil {
				t.Fatal(err)
			}
			m, err := sse.NewDecoder(resp.Body).Next()
			if err != nil || m.Data != "x\ny" {
				t.Fatalf("event: %q, %v", m.Data, err)
			}
		})
	}
}

// Events queued while a stream's socket is full leave together: the
// engine gathers everything queued into one chunk, one write() each.
func TestEngineWritesQueuedEventsTogether(t *testing.T) {
	th := startTransport(t, "engine", func(hub *herald.Hub, _ *httpapi.Handler) { hub.QueueBytes = 4 << 20 })
	conn, br := rawStream(t, th.srv.Listener.Addr().String(), "t", smallReceiveBuffer)
	defer conn.Close()
	for { // the rest of the opening chunk (the retry field)
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("opening chunk: %v", err)
		}
		if line == "\r\n" {
			break
		}
	}

	big := strings.Repeat("b", 64<<10)
	for range 4 { // more than the socket buffers hold: the stream stalls
		if _, err := th.hub.Publish(herald.Event{Topics: []string{"t"}, Data: big}); err != nil {
			t.Fatal(err)
		}
	}
	const small = 300
	for i := range small {
		if _, err := th.hub.Publish(herald.Event{Topics: []string{"t"}, Data: fmt.Sprintf("e%d", i)}); err != nil {
			t.Fatal(err)
		}
	}

	// Read chunk by chunk: on the engine, each chunk is one write().
	var chunksWithSmall, smallSeen int
	body := new(strings.Builder)
	for smallSeen < small {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("chunk size line: %v", err)
		}
		size, err := strconv.ParseInt(strings.TrimSpace(line), 16, 64)
		if err != nil || size == 0 {
			t.Fatalf("chunk size line %q", line)
		}
		chunk := make([]byte, size+2)
		if _, err := io.ReadFull(br, chunk); err != nil {
			t.Fatal(err)
		}
		body.Write(chunk[:size])
		if n := strings.Count(string(chunk), "data: e"); n > 0 {
			chunksWithSmall++
			smallSeen += n
		}
	}
	if chunksWithSmall > 2 {
		t.Errorf("%d queued small events arrived in %d writes, want at most 2", small, chunksWithSmall)
	}
	// And nothing was lost or reordered on the way.
	dec := sse.NewDecoder(strings.NewReader(body.String()))
	for i := range 4 + small {
		m, err := dec.Next()
		want := big
		if i >= 4 {
			want = fmt.Sprintf("e%d", i-4)
		}
		if err != nil || m.Data != want {
			t.Fatalf("event %d: %.20q, %v", i, m.Data, err)
		}
	}
}

// A stream client has nothing to send after its request; one that does
// (or floods the socket) has its stream ended instead of keeping the
// shared poller reading.
func TestEngineEndsStreamOnClientInput(t *testing.T) {
	th := startTransport(t, "engine", nil)
	conn, br := rawStream(t, th.srv.Listener.Addr().String(), "t", nil)
	defer conn.Close()
	if _, err := conn.Write([]byte("GET /events?topic=u HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the stream to end", func() bool { return th.handler.ActiveStreams() == 0 })
	if st := th.hub.Stats(); st.Subscribers != 0 {
		t.Fatalf("%d subscribers left", st.Subscribers)
	}
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.Copy(io.Discard, br); err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("connection not closed: %v", err)
	}
}

// hidingWriter wraps a ResponseWriter without offering Hijack, as many
// middlewares do.
type hidingWriter struct{ http.ResponseWriter }

func (w hidingWriter) Flush() { w.ResponseWriter.(http.Flusher).Flush() }

// The engine takes a stream only when it can hijack it safely: behind a
// wrapper that hides Hijack, or after middleware set Content-Encoding,
// the goroutine path serves it (and says nothing about closing).
func TestEngineOnlyForUnwrappedWriters(t *testing.T) {
	th := startTransport(t, "engine", nil)
	inner := th.srv.Config.Handler
	th.srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Query().Get("via") {
		case "hiding":
			w = hidingWriter{w}
		case "encoding":
			w.Header().Set("Content-Encoding", "identity")
		}
		inner.ServeHTTP(w, r)
	})
	c := th.client(false, nil)
	for via, wantEngine := range map[string]bool{"": true, "hiding": false, "encoding": false} {
		resp, err := c.Get(th.srv.URL + "/events?topic=t&via=" + via)
		if err != nil {
			t.Fatal(err)
		}
		// Only the engine announces Connection: close.
		if resp.StatusCode != http.StatusOK || resp.Close != wantEngine {
			t.Errorf("via %q: status %d, served by the engine %v, want %v", via, resp.StatusCode, resp.Close, wantEngine)
		}
		resp.Body.Close()
	}
}

// A stream refused because the hub is closed gets a plain JSON error,
// without the stream's headers.
func TestRefusedStreamHasNoStreamHeaders(t *testing.T) {
	for _, mode := range transports {
		t.Run(mode, func(t *testing.T) {
			th := startTransport(t, mode, nil)
			th.hub.Close()
			resp, err := th.client(false, nil).Get(th.srv.URL + "/events?topic=t")
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
				t.Fatalf("status %d, Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
			}
			for _, k := range []string{"Cache-Control", "X-Accel-Buffering"} {
				if v := resp.Header.Get(k); v != "" {
					t.Errorf("%s: %q on an error answer", k, v)
				}
			}
		})
	}
}
