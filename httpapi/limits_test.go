package httpapi_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/herald-sse/herald"
	"github.com/herald-sse/herald/httpapi"
	"github.com/herald-sse/herald/sse"
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
		// The history would keep 20 MB of these events by design; this
		// test is about the queues.
		hub.History = herald.NewMemoryHistory(herald.Retention{MaxEvents: 100})
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

// Under churn the count stays exact. Each round, 40 clients ask for a
// stream at once and keep what they got until all have an answer, so no
// more than the limit may be accepted; a round starts while the previous
// round's streams are still closing. Afterwards exactly the limit can be
// opened again, no more, no less.
func TestConnectionLimitExactUnderChurn(t *testing.T) {
	const limit, clients, rounds = 20, 40, 15
	th := startHub(t, func(_ *herald.Hub, h *httpapi.Handler) { h.MaxConnections = limit })
	addr := th.srv.Listener.Addr().String()

	for round := 0; round < rounds; round++ {
		var answered, wg sync.WaitGroup
		var accepted, refused atomic.Int64
		answered.Add(clients)
		for c := 0; c < clients; c++ {
			wg.Go(func() {
				conn, err := net.Dial("tcp", addr)
				if err != nil {
					answered.Done()
					t.Error(err)
					return
				}
				defer conn.Close()
				fmt.Fprintf(conn, "GET /events?topic=t HTTP/1.1\r\nHost: h\r\n\r\n")
				status := make([]byte, 12)
				_, err = io.ReadFull(conn, status)
				switch {
				case err != nil:
					t.Errorf("reading status: %v", err)
				case string(status) == "HTTP/1.1 200":
					accepted.Add(1)
				case string(status) == "HTTP/1.1 503":
					refused.Add(1)
				default:
					t.Errorf("unexpected status line %q", status)
				}
				answered.Done()
				answered.Wait() // hold the stream until every client has its answer
			})
		}
		wg.Wait()
		if a, r := accepted.Load(), refused.Load(); a > limit || a+r != clients || (round == 0 && a != limit) {
			t.Fatalf("round %d: %d accepted, %d refused; limit %d", round, a, r, limit)
		}
	}
	waitFor(t, "all churned streams to end", func() bool { return th.handler.ActiveStreams() == 0 })
	for i := 0; i < limit; i++ {
		th.subscribe(t, "t")
	}
	assertFull(t, th)
}

// engineGoroutines is what the shared engine runs: a poller and a writer
// per CPU.
var engineGoroutines = 1 + runtime.GOMAXPROCS(0)

// 1,000 streams come and go and leave no goroutine behind; on the engine,
// they never had one.
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
	if *slowPath {
		if n := runtime.NumGoroutine(); n < baseline+1000 {
			t.Fatalf("goroutines %d: streams not running (baseline %d)", n, baseline)
		}
	} else {
		// The engine's goroutines are started once per process; past
		// them, open streams cost none.
		if n := runtime.NumGoroutine(); n > baseline+engineGoroutines {
			t.Fatalf("goroutines %d with 1000 engine streams, baseline %d: want at most %d more", n, baseline, engineGoroutines)
		}
	}
	for _, c := range conns {
		c.Close()
	}
	waitFor(t, "streams to end", func() bool {
		return th.handler.ActiveStreams() == 0 && th.hub.Stats().Subscribers == 0
	})
	waitFor(t, "goroutines back to baseline", func() bool { return runtime.NumGoroutine() <= baseline })
}

// rawRequest sends req on a fresh connection and returns the response,
// which must arrive within 5 s.
func rawRequest(t *testing.T, addr, req string) *http.Response {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(conn, req); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no answer to %q: %v", req, err)
	}
	return resp
}

// A request that announces a body and never sends it is answered at once
// and its connection closed; it holds no stream slot.
func TestBodyNeverSent(t *testing.T) {
	th := startHub(t, func(_ *herald.Hub, h *httpapi.Handler) { h.MaxConnections = 1 })
	addr := th.srv.Listener.Addr().String()
	for _, target := range []string{"GET /events?topic=a", "GET /healthz", "GET /nope", "PUT /publish"} {
		resp := rawRequest(t, addr, target+" HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\n")
		resp.Body.Close()
		if !resp.Close {
			t.Errorf("%s: connection kept open with an unread body", target)
		}
	}
	waitFor(t, "no stream slot held", func() bool { return th.handler.ActiveStreams() == 0 })
	th.subscribe(t, "a") // the only slot is free
}

func TestSlowPublisherGets408(t *testing.T) {
	th := startHub(t, func(_ *herald.Hub, h *httpapi.Handler) { h.BodyReadTimeout = 50 * time.Millisecond })
	resp := rawRequest(t, th.srv.Listener.Addr().String(),
		"POST /publish HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\nContent-Length: 50\r\n\r\n{")
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusRequestTimeout || !resp.Close {
		t.Errorf("status %d, close %v; want 408 and the connection closed", resp.StatusCode, resp.Close)
	}
	if ans := decodeJSONBody(t, resp); !strings.Contains(fmt.Sprint(ans["error"]), "not received within") {
		t.Errorf("error body %v", ans)
	}
	if th.hub.Stats().Published != 0 {
		t.Error("a partial body was published")
	}
}

// smallSendBufferListener makes the server's kernel buffer tiny, so what a
// client has not read stays in Herald rather than in the kernel.
type smallSendBufferListener struct{ net.Listener }

func (l smallSendBufferListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tcp, ok := c.(*net.TCPConn); ok {
		tcp.SetWriteBuffer(4096)
	}
	return c, err
}

// The write deadline applies per chunk, not to a whole batch: a client
// reading slowly but steadily gets a large event whole.
func TestSteadySlowReaderIsNotCutOff(t *testing.T) {
	const (
		timeout = 600 * time.Millisecond
		size    = 3 << 19 // 1.5 MiB
		rate    = 1 << 20 // bytes per second the client reads
	)
	hub := &herald.Hub{Heartbeat: -1}
	if err := hub.Open(); err != nil {
		t.Fatal(err)
	}
	defer hub.Close()
	h := &httpapi.Handler{Hub: hub, OpenPublish: true, WriteTimeout: timeout}
	srv := httptest.NewUnstartedServer(h)
	srv.Listener = smallSendBufferListener{srv.Listener}
	srv.Start()
	defer srv.Close()

	conn, br := rawStream(t, srv.Listener.Addr().String(), "big", smallReceiveBuffer)
	defer conn.Close()
	big := strings.Repeat("z", size)
	if _, err := hub.Publish(herald.Event{Topics: []string{"big"}, Data: big}); err != nil {
		t.Fatal(err)
	}
	// The client reads at a steady 1 MiB/s: the event takes 1.5 s, well
	// over the deadline, while each 64 KiB chunk takes ~60 ms, a tenth
	// of it. The pacing is the point of the test, not a synchronisation;
	// a client that fell behind catches up without pausing, so load on
	// the machine only makes it read faster.
	conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	start := time.Now()
	var got, read int
	buf := make([]byte, 16<<10)
	for got < len(big) {
		n, err := br.Read(buf)
		read += n
		got += strings.Count(string(buf[:n]), "z")
		if err != nil {
			t.Fatalf("cut off after %d of %d bytes: %v", got, len(big), err)
		}
		time.Sleep(time.Until(start.Add(time.Duration(read) * time.Second / rate)))
	}
	if took := time.Since(start); took < 2*timeout {
		t.Fatalf("read the event in %v: the test needs it to take over twice the %v deadline", took, timeout)
	}
}

// writeCounter counts the writes the server makes on its connections and
// lets a test hook into them.
type writeCounter struct {
	net.Listener
	writes  atomic.Int64
	onWrite atomic.Pointer[func([]byte)]
}

type countedConn struct {
	net.Conn
	l *writeCounter
}

func (l *writeCounter) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return countedConn{c, l}, nil
}

func (c countedConn) Write(p []byte) (int, error) {
	if hook := c.l.onWrite.Load(); hook != nil {
		(*hook)(p)
	}
	c.l.writes.Add(1)
	return c.Conn.Write(p)
}

// Events queued while a write is in progress leave together in the next
// write.
func TestQueuedEventsLeaveInOneWrite(t *testing.T) {
	hub := &herald.Hub{Heartbeat: -1}
	if err := hub.Open(); err != nil {
		t.Fatal(err)
	}
	defer hub.Close()
	srv := httptest.NewUnstartedServer(&httpapi.Handler{Hub: hub, OpenPublish: true})
	counter := &writeCounter{Listener: srv.Listener}
	srv.Listener = counter
	srv.Start()
	defer srv.Close()

	resp, err := http.Get(srv.URL + "/events?topic=t")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	dec := sse.NewDecoder(resp.Body)

	// Hold the writer inside the write of the first event while 50 more
	// are published.
	blocked, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	hook := func(p []byte) {
		if strings.Contains(string(p), "first") {
			once.Do(func() { close(blocked); <-release })
		}
	}
	counter.onWrite.Store(&hook)
	before := counter.writes.Load()
	if _, err := hub.Publish(herald.Event{Topics: []string{"t"}, Data: "first"}); err != nil {
		t.Fatal(err)
	}
	<-blocked
	for i := 0; i < 50; i++ {
		if _, err := hub.Publish(herald.Event{Topics: []string{"t"}, Data: fmt.Sprint("queued ", i)}); err != nil {
			t.Fatal(err)
		}
	}
	close(release)
	for i := 0; i < 51; i++ {
		if _, err := dec.Next(); err != nil {
			t.Fatal(err)
		}
	}
	if n := counter.writes.Load() - before; n != 2 {
		t.Errorf("51 events took %d writes, want 2: the first, then the 50 queued meanwhile", n)
	}
}
