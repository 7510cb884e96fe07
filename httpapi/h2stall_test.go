package httpapi_test

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herald-sse/herald"
	"github.com/herald-sse/herald/httpapi"
	"github.com/herald-sse/herald/sse"
)

// h2Client is an HTTP/2 client for th whose every connection goes through
// wrap, with per-stream receive windows of window bytes (0: Go's default).
func (th *transportHub) h2Client(window int, wrap func(net.Conn) net.Conn) *http.Client {
	cfg := th.srv.Client().Transport.(*http.Transport).TLSClientConfig.Clone()
	cfg.NextProtos = []string{"h2"}
	cfg.ServerName = "example.com" // what httptest's certificate names
	tr := &http.Transport{
		DialTLSContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := smallReceiveBuffer.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			tc := tls.Client(wrap(c), cfg)
			return tc, tc.HandshakeContext(ctx)
		},
		MaxConnsPerHost: 1, // every stream on one connection
		HTTP2:           &http.HTTP2Config{MaxReceiveBufferPerStream: window},
	}
	tr.Protocols = new(http.Protocols)
	tr.Protocols.SetHTTP2(true)
	return &http.Client{Transport: tr}
}

// stoppableConn stops reading once stop is set, until release is closed:
// a client that no longer reads its connection at all.
type stoppableConn struct {
	net.Conn
	stop    *atomic.Bool
	release chan struct{}
}

func (c stoppableConn) Read(p []byte) (int, error) {
	if c.stop.Load() {
		<-c.release
	}
	return c.Conn.Read(p)
}

// acceptedWithin polls (the slots are only observable that way) for a new
// stream, on a connection of its own, to be accepted again, and fails
// unless that happens within limit of start.
func (th *transportHub) acceptedWithin(t *testing.T, start time.Time, limit time.Duration) {
	t.Helper()
	c := th.srv.Client()
	for {
		resp, err := c.Get(th.srv.URL + "/events?topic=other")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Since(start) > limit {
			t.Fatalf("no stream accepted %v after the stall (last: %v); %d slots held, %d subscribers",
				limit, err, th.handler.ActiveStreams(), th.hub.Stats().Subscribers)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("a new stream was accepted %v after the stall", time.Since(start))
}

// One HTTP/2 connection carries 50 streams and its client stops reading
// the connection: under MaxConnections 50 and WriteTimeout 2 s, the
// streams release their slots within the write timeout (new streams
// accepted again within 5 s), as stalled HTTP/1.1 streams do, even on a
// server without NewServer's HTTP/2 settings; with them, the connection
// itself is closed too (no goroutine is left behind).
func TestStalledHTTP2ConnectionReleasesItsStreams(t *testing.T) {
	for _, mode := range []string{"h2", "h2-plainserver"} {
		t.Run(mode, func(t *testing.T) { testStalledHTTP2Connection(t, mode) })
	}
}

func testStalledHTTP2Connection(t *testing.T, mode string) {
	const streams = 50
	th := startTransport(t, mode, func(hub *herald.Hub, h *httpapi.Handler) {
		hub.QueueBytes = 64 << 20 // the deadline, not the queue, must release them
		h.MaxConnections = streams
		h.WriteTimeout = 2 * time.Second
	})
	stop, release := new(atomic.Bool), make(chan struct{})
	defer close(release)
	c := th.h2Client(0, func(c net.Conn) net.Conn { return stoppableConn{c, stop, release} })
	for range streams {
		th.open(t, c, "bulk")
	}
	if n := th.handler.ActiveStreams(); n != streams {
		t.Fatalf("%d streams open", n)
	}
	stop.Store(true)
	big := strings.Repeat("b", 64<<10)
	for range 40 { // more than the sockets and the queues hold
		if _, err := th.hub.Publish(herald.Event{Topics: []string{"bulk"}, Data: big}); err != nil {
			t.Fatal(err)
		}
	}
	stalled := time.Now()
	th.acceptedWithin(t, stalled, 5*time.Second)
	waitFor(t, "every stalled stream to be released", func() bool { return th.handler.ActiveStreams() == 0 })
	if mode == "h2-plainserver" {
		return // the connection stays until its client closes it
	}
	// The handlers' helper goroutines end with the connection, which the
	// server closes once nothing could be written to it for 2 s.
	th.srv.Client().CloseIdleConnections()
	waitFor(t, "the server's goroutines for the stalled connection to end", func() bool {
		return serverStreamGoroutines() == 0
	})
}

// serverStreamGoroutines counts the goroutines of stream handlers, their
// write helpers and HTTP/2 server connections.
func serverStreamGoroutines() int {
	buf := make([]byte, 4<<20)
	n := 0
	for _, g := range strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n") {
		if strings.Contains(g, "httpapi.(*Handler).serveStream") || strings.Contains(g, "httpapi.(*streamOutput)") ||
			strings.Contains(g, "http2serverConn") {
			n++
		}
	}
	return n
}

// Streams whose client stops reading them, but not the connection (their
// HTTP/2 flow-control windows fill up), are reset one by one within the
// write timeout, while another stream of the same connection keeps
// receiving every event.
func TestStalledHTTP2StreamsSpareTheirConnection(t *testing.T) {
	const stalled = 49
	th := startTransport(t, "h2", func(hub *herald.Hub, h *httpapi.Handler) {
		hub.QueueBytes = 64 << 20 // the deadline, not the queue, must release them
		h.MaxConnections = stalled + 1
		h.WriteTimeout = 2 * time.Second
	})
	var conns atomic.Int32
	c := th.h2Client(1<<10, func(c net.Conn) net.Conn { conns.Add(1); return c })
	for range stalled {
		th.open(t, c, "bulk") // never read
	}
	live := sse.NewDecoder(th.open(t, c, "live").Body)
	big := strings.Repeat("b", 64<<10)
	for range 20 {
		if _, err := th.hub.Publish(herald.Event{Topics: []string{"bulk"}, Data: big}); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	for i := 0; th.handler.ActiveStreams() > 1; i++ {
		if _, err := th.hub.Publish(herald.Event{Topics: []string{"live"}, Data: strconv.Itoa(i)}); err != nil {
			t.Fatal(err)
		}
		if m, err := live.Next(); err != nil || m.Data != strconv.Itoa(i) {
			t.Fatalf("live stream, event %d: %q, %v", i, m.Data, err)
		}
		if time.Since(start) > 5*time.Second {
			t.Fatalf("%d streams still held after 5 s", th.handler.ActiveStreams())
		}
		time.Sleep(10 * time.Millisecond) // pacing the publisher
	}
	t.Logf("stalled streams released %v after the stall", time.Since(start))
	if n := conns.Load(); n != 1 {
		t.Fatalf("the client used %d connections, want all streams on one", n)
	}
	if _, err := th.hub.Publish(herald.Event{Topics: []string{"live"}, Data: "after"}); err != nil {
		t.Fatal(err)
	}
	if m, err := live.Next(); err != nil || m.Data != "after" {
		t.Fatalf("live stream after the resets: %q, %v", m.Data, err)
	}
}

// A stream quiet for longer than the write timeout is not cut: the
// deadline covers writing, not waiting for events. (Over HTTP/2 a
// deadline left set resets the stream when it expires, written or not.)
func TestQuietStreamOutlivesWriteTimeout(t *testing.T) {
	for _, mode := range transports {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			th := startTransport(t, mode, func(_ *herald.Hub, h *httpapi.Handler) { h.WriteTimeout = 300 * time.Millisecond })
			dec := sse.NewDecoder(th.open(t, th.client(false, nil), "t").Body)
			for i := range 2 {
				if _, err := th.hub.Publish(herald.Event{Topics: []string{"t"}, Data: strconv.Itoa(i)}); err != nil {
					t.Fatal(err)
				}
				if m, err := dec.Next(); err != nil || m.Data != strconv.Itoa(i) {
					t.Fatalf("event %d: %q, %v", i, m.Data, err)
				}
				time.Sleep(time.Second) // quiet for three write timeouts
			}
		})
	}
}
