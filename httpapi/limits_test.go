package httpapi_test

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/herald-sse/herald"
	"github.com/herald-sse/herald/httpapi"
)

// smallReceiveBuffer makes the kernel hold little for a client that stops
// reading, so its backlog reaches the hub's queue quickly.
var smallReceiveBuffer = &net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
	})
	return errors.Join(err, serr)
}}

// A subscriber that never reads is dropped while the others receive every
// one of thousands of events, and the hub's memory stays bounded meanwhile.
func TestStalledSubscriberDoesNotHoldBackOthers(t *testing.T) {
	const (
		queueBytes = 64 << 10
		events     = 20000
		window     = 32 // events in flight: 32 KiB, half a queue
		readers    = 3
	)
	th := startHub(t, func(hub *herald.Hub, h *httpapi.Handler) {
		hub.QueueBytes = queueBytes
		h.WriteTimeout = time.Minute // the queue limit, not the deadline, must drop it
	})
	stalled, _ := rawStream(t, th.srv.Listener.Addr().String(), "t", smallReceiveBuffer)
	defer stalled.Close()

	// progress[i] receives each event number reader i decoded, in order.
	progress := make([]chan int, readers)
	for i := range progress {
		progress[i] = make(chan int, window)
		s := th.subscribe(t, "t")
		go func(out chan<- int) {
			defer close(out)
			for {
				m, err := s.dec.Next()
				if err != nil {
					return
				}
				var n int
				fmt.Sscanf(m.Data, "%d", &n)
				out <- n
			}
		}(progress[i])
	}

	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	pad := strings.Repeat("p", 1000)
	maxQueued := 0
	for base := 0; base < events; base += window {
		for n := base; n < base+window; n++ {
			if _, err := th.hub.Publish(herald.Event{Topics: []string{"t"}, Data: fmt.Sprintf("%d %s", n, pad)}); err != nil {
				t.Fatal(err)
			}
		}
		maxQueued = max(maxQueued, th.hub.Stats().QueuedBytes)
		for i, ch := range progress {
			for n := base; n < base+window; n++ {
				got, ok := <-ch
				if !ok || got != n {
					t.Fatalf("reader %d: got event %d (open %v), want %d", i, got, ok, n)
				}
			}
		}
	}
	var after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&after)

	if st := th.hub.Stats(); st.Dropped != 1 || st.Subscribers != readers {
		t.Errorf("stats %+v: want the stalled subscriber, and only it, dropped", st)
	}
	if limit := (readers + 1) * queueBytes; maxQueued > limit {
		t.Errorf("hub queued %d bytes, above %d", maxQueued, limit)
	}
	// 20 MB went through; what stays must be near the bounded queues.
	if grew := int64(after.HeapInuse) - int64(before.HeapInuse); grew > 8<<20 {
		t.Errorf("heap grew by %d bytes while publishing", grew)
	}
	// The stalled client finds its connection closed once it reads again.
	stalled.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.Copy(io.Discard, stalled); err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("stalled connection not closed by the hub: %v", err)
	}
}

// A client whose socket stays full longer than the write deadline is
// dropped even though its queue never overflows.
func TestWriteDeadlineDropsStalledClient(t *testing.T) {
	th := startHub(t, func(hub *herald.Hub, h *httpapi.Handler) {
		hub.QueueBytes = 256 << 20
		h.WriteTimeout = 50 * time.Millisecond
	})
	stalled, _ := rawStream(t, th.srv.Listener.Addr().String(), "t", smallReceiveBuffer)
	defer stalled.Close()

	pad := strings.Repeat("p", 64<<10)
	waitFor(t, "the stalled stream to be dropped", func() bool {
		if _, err := th.hub.Publish(herald.Event{Topics: []string{"t"}, Data: pad}); err != nil {
			t.Fatal(err)
		}
		return th.handler.ActiveStreams() == 0
	})
	if st := th.hub.Stats(); st.Dropped != 0 || st.Subscribers != 0 {
		t.Errorf("stats %+v: want the deadline, not the queue, to drop the stream", st)
	}
}

func TestConnectionLimit(t *testing.T) {
	const limit = 5
	th := startHub(t, func(_ *herald.Hub, h *httpapi.Handler) { h.MaxConnections = limit })
	var open []*stream
	for i := 0; i < limit; i++ {
		open = append(open, th.subscribe(t, "t"))
	}
	assertFull(t, th)

	open[0].close()
	waitFor(t, "a slot to free up", func() bool { return th.handler.ActiveStreams() == limit-1 })
	open[0] = th.subscribe(t, "t")
	assertFull(t, th)
}

func assertFull(t *testing.T, th *testHub) {
	t.Helper()
	resp, err := th.client.Get(th.srv.URL + "/events?topic=t")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("over the limit: status %d, Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if ans := decodeJSONBody(t, resp); !strings.Contains(fmt.Sprint(ans["error"]), "too many connections") {
		t.Errorf("error body %v", ans)
	}
}

// Under churn the count stays exact: afterwards exactly the limit can be
// opened again, no more, no less.
func TestConnectionLimitExactUnderChurn(t *testing.T) {
	const limit = 20
	th := startHub(t, func(_ *herald.Hub, h *httpapi.Handler) { h.MaxConnections = limit })
	addr := th.srv.Listener.Addr().String()

	var wg sync.WaitGroup
	var mu sync.Mutex
	var accepted, refused int
	for g := 0; g < 40; g++ {
		wg.Go(func() {
			for i := 0; i < 25; i++ {
				conn, err := net.Dial("tcp", addr)
				if err != nil {
					t.Error(err)
					return
				}
				fmt.Fprintf(conn, "GET /events?topic=t HTTP/1.1\r\nHost: h\r\n\r\n")
				buf := make([]byte, 12)
				_, err = io.ReadFull(conn, buf)
				conn.Close()
				mu.Lock()
				switch {
				case err != nil:
					t.Errorf("reading status: %v", err)
				case string(buf) == "HTTP/1.1 200":
					accepted++
				case string(buf) == "HTTP/1.1 503":
					refused++
				default:
					t.Errorf("unexpected status line %q", buf)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if accepted == 0 || refused == 0 {
		t.Logf("churn did not reach the limit (accepted %d, refused %d)", accepted, refused)
	}
	waitFor(t, "all churned streams to end", func() bool { return th.handler.ActiveStreams() == 0 })
	for i := 0; i < limit; i++ {
		th.subscribe(t, "t")
	}
	assertFull(t, th)
}

// 1,000 streams come and go and leave no goroutine behind.
func TestNoGoroutineLeftAfterDisconnects(t *testing.T) {
	th := startHub(t, nil)
	addr := th.srv.Listener.Addr().String()
	baseline := runtime.NumGoroutine()

	conns := make([]net.Conn, 0, 1000)
	for i := 0; i < 1000; i++ {
		c, _ := rawStream(t, addr, fmt.Sprintf("t%d", i%10), nil)
		conns = append(conns, c)
	}
	if st := th.hub.Stats(); st.Subscribers != 1000 {
		t.Fatalf("subscribers = %d, want 1000", st.Subscribers)
	}
	if n := runtime.NumGoroutine(); n < baseline+1000 {
		t.Fatalf("goroutines %d: streams not running (baseline %d)", n, baseline)
	}
	for _, c := range conns {
		c.Close()
	}
	waitFor(t, "streams to end", func() bool {
		return th.handler.ActiveStreams() == 0 && th.hub.Stats().Subscribers == 0
	})
	waitFor(t, "goroutines back to baseline", func() bool { return runtime.NumGoroutine() <= baseline })
}
