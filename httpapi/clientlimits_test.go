package httpapi_test

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/herald-sse/herald"
	"github.com/herald-sse/herald/httpapi"
)

// At most MaxConnectionsPerIP streams per client; the client is taken
// from X-Forwarded-For only when the peer is a trusted proxy.
func TestMaxConnectionsPerIP(t *testing.T) {
	for _, mode := range []string{"engine", "goroutine"} {
		t.Run(mode, func(t *testing.T) {
			th := startTransport(t, mode, func(_ *herald.Hub, h *httpapi.Handler) { h.MaxConnectionsPerIP = 2 })
			c := th.client(false, nil)
			open := func(xff string) *http.Response {
				t.Helper()
				req, _ := http.NewRequest(http.MethodGet, th.srv.URL+"/events?topic=a", nil)
				if xff != "" {
					req.Header.Set("X-Forwarded-For", xff)
				}
				resp, err := c.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { resp.Body.Close() })
				return resp
			}
			first, second := open(""), open("198.51.100.7") // not trusted: still the same client
			if first.StatusCode != 200 || second.StatusCode != 200 {
				t.Fatalf("statuses %d, %d", first.StatusCode, second.StatusCode)
			}
			third := open("")
			if third.StatusCode != http.StatusTooManyRequests || third.Header.Get("Retry-After") == "" {
				t.Fatalf("third stream: %d, Retry-After %q; want 429 with Retry-After", third.StatusCode, third.Header.Get("Retry-After"))
			}
			first.Body.Close()
			waitFor(t, "the slot to be released", func() bool { return th.handler.ActiveStreams() == 1 })
			if again := open(""); again.StatusCode != 200 {
				t.Fatalf("after one closed: %d", again.StatusCode)
			}
		})
	}
}

func TestClientIPBehindTrustedProxies(t *testing.T) {
	th := startTransport(t, "engine", func(_ *herald.Hub, h *httpapi.Handler) {
		h.MaxConnectionsPerIP = 1
		h.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("10.0.0.0/8")}
	})
	c := th.client(false, nil)
	status := func(xff string) int {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, th.srv.URL+"/events?topic=a", nil)
		req.Header.Set("X-Forwarded-For", xff)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp.StatusCode
	}
	// Two clients behind the proxy chain each get their one stream; a
	// second from the first client is refused. Addresses left of the
	// first untrusted hop are the client's own claims and are ignored.
	for _, tc := range []struct {
		xff  string
		want int
	}{
		{"203.0.113.1", 200},
		{"203.0.113.2, 10.1.2.3", 200},
		{"6.6.6.6, 203.0.113.1", 429},
		{"203.0.113.1, 10.9.9.9", 429},
	} {
		if got := status(tc.xff); got != tc.want {
			t.Errorf("X-Forwarded-For %q: status %d, want %d", tc.xff, got, tc.want)
		}
	}
}

// A client that sends its headers slowly (slowloris) is cut off after
// the header timeout, while established streams keep receiving.
func TestSlowlorisClosedStreamsContinue(t *testing.T) {
	hub := &herald.Hub{Heartbeat: -1}
	if err := hub.Open(); err != nil {
		t.Fatal(err)
	}
	h := &httpapi.Handler{Hub: hub, OpenPublish: true}
	srv := httpapi.NewServer("127.0.0.1:0", h)
	srv.ReadHeaderTimeout = 300 * time.Millisecond
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { hub.Close(); srv.Close() })
	addr := ln.Addr().String()

	stream, br := rawStream(t, addr, "a", nil)
	defer stream.Close()

	slow, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	io.WriteString(slow, "GET /events?topic=a HTTP/1.1\r\nHost: x\r\n") // and never the blank line
	start := time.Now()
	slow.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.Copy(io.Discard, slow); err != nil {
		t.Fatalf("slow client not disconnected: %v", err)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("slow client cut after %v", took)
	}

	if _, err := hub.Publish(herald.Event{Topics: []string{"a"}, Data: "still here"}); err != nil {
		t.Fatal(err)
	}
	stream.SetReadDeadline(time.Now().Add(5 * time.Second))
	if !readUntil(br, "data: still here") {
		t.Fatal("the established stream stopped receiving")
	}
}

func readUntil(br *bufio.Reader, want string) bool {
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return false
		}
		if strings.Contains(line, want) {
			return true
		}
	}
}
