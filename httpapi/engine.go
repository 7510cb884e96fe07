package httpapi

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/herald-sse/herald"
	"github.com/herald-sse/herald/internal/netpoll"
)

// The engine serves HTTP/1.1 streams whose connections were taken over
// (hijacked) from net/http after the request was parsed and authorised.
// One poller goroutine watches every such socket for hang-ups and for room
// to write; a few writer goroutines write whatever subscribers have queued,
// without ever waiting on a socket. An idle stream therefore costs no
// goroutine and no net/http buffer: only its socket, its subscription and
// a small hijackedStream. See docs/architecture.md for the measurements.

type connContextKey struct{}

// ConnContext records the connection a request arrived on, so that
// [Handler] can serve plain-TCP HTTP/1.1 streams from its shared engine
// instead of a goroutine per stream. Set it as [http.Server.ConnContext]
// ([NewServer] does). Without it, or for TLS and HTTP/2, streams use the
// ordinary handler path, which behaves the same at a higher cost per
// stream.
func ConnContext(ctx context.Context, c net.Conn) context.Context {
	return context.WithValue(ctx, connContextKey{}, c)
}

// maxChunkPayload is the most a writer gathers into one write() call: big
// enough that a busy stream's batch leaves in one system call, small enough
// to stay in cache and to bound what one stalled socket holds back.
const maxChunkPayload = 64 << 10

// chunkHeaderRoom is reserved before a chunk's payload for its size line:
// up to 5 hex digits for 64 KiB, then CRLF.
const chunkHeaderRoom = 8

var (
	chunkTrailer = []byte("\r\n")
	lastChunk    = []byte("0\r\n\r\n")
)

// engine is shared by every Handler in the process, like Go's own network
// poller: a fixed set of goroutines however many handlers and streams.
type engine struct {
	poller  *netpoll.Poller
	writers []*streamWriter

	nextWriter atomic.Uint32 // spreads streams over writers

	mu      sync.Mutex
	streams map[uint64]*hijackedStream
	nextKey uint64
}

var (
	engineOnce sync.Once
	theEngine  *engine
)

// sharedEngine starts the engine on first use. It returns nil where the
// platform has no poller; streams then take the ordinary path.
func sharedEngine() *engine {
	engineOnce.Do(func() {
		if !netpoll.Supported {
			return
		}
		p, err := netpoll.New()
		if err != nil {
			slog.Warn("herald: stream engine unavailable; serving streams with a goroutine each", "error", err)
			return
		}
		e := &engine{poller: p, streams: make(map[uint64]*hijackedStream)}
		// One writer per CPU: writes are system calls, so more writers
		// than CPUs only add switching.
		for range max(1, runtime.GOMAXPROCS(0)) {
			w := &streamWriter{wake: make(chan struct{}, 1), buf: make([]byte, chunkHeaderRoom+maxChunkPayload+len(chunkTrailer))}
			e.writers = append(e.writers, w)
			go w.run()
		}
		go e.poll()
		theEngine = e
	})
	return theEngine
}

// poll reacts to socket events: a hang-up (or stray input) is confirmed
// by reading, and room to write resumes a stream that was waiting for it.
func (e *engine) poll() {
	discard := make([]byte, 4096)
	for {
		err := e.poller.Wait(func(key uint64, ev netpoll.Events) {
			e.mu.Lock()
			s := e.streams[key]
			e.mu.Unlock()
			if s == nil {
				return // closed since the event was reported
			}
			if ev&(netpoll.Readable|netpoll.Hangup) != 0 {
				// A stream request has no body and clients send nothing
				// more; whatever arrives is dropped unread. Reading is how
				// a reset or an orderly close shows.
				for {
					_, err := netpoll.ReadNow(s.raw, discard)
					if err == netpoll.ErrWouldBlock {
						break
					}
					if err != nil {
						s.end(endGone, err)
						return
					}
				}
			}
			if ev&netpoll.Writable != 0 && s.waitingForRoom.Load() {
				s.writer.schedule(s)
			}
		})
		if err != nil {
			// Only a broken epoll set gets here; nothing can watch the
			// sockets any more, so say so loudly.
			slog.Error("herald: stream engine poller failed", "error", err)
			return
		}
	}
}

// add registers s for the poller's events and returns its key. Keys are
// never reused, so a late event for a closed stream finds nothing.
func (e *engine) add(s *hijackedStream) uint64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.nextKey++
	e.streams[e.nextKey] = s
	return e.nextKey
}

func (e *engine) forget(key uint64) {
	e.mu.Lock()
	delete(e.streams, key)
	e.mu.Unlock()
}

// streamWriter is one writer goroutine and the streams waiting for it.
type streamWriter struct {
	mu    sync.Mutex
	ready []*hijackedStream // guarded by mu
	spare []*hijackedStream // guarded by mu
	wake  chan struct{}

	buf    []byte   // owned by the goroutine: one chunk being written
	frames [][]byte // owned by the goroutine: frames drained for one stream
}

// schedule puts s in line for a flush. It is the subscriber's wake
// function, so it runs under the hub's locks: it only appends.
func (w *streamWriter) schedule(s *hijackedStream) {
	w.mu.Lock()
	if s.scheduled {
		w.mu.Unlock()
		return
	}
	s.scheduled = true
	w.ready = append(w.ready, s)
	first := len(w.ready) == 1
	w.mu.Unlock()
	if first {
		select {
		case w.wake <- struct{}{}:
		default:
		}
	}
}

func (w *streamWriter) run() {
	for range w.wake {
		for {
			w.mu.Lock()
			batch := w.ready
			w.ready, w.spare = w.spare[:0], nil
			for _, s := range batch {
				s.scheduled = false // a wake from now on schedules it again
			}
			w.mu.Unlock()
			if len(batch) == 0 {
				break
			}
			for i, s := range batch {
				s.flush(w)
				batch[i] = nil
			}
			w.mu.Lock()
			w.spare = batch[:0]
			w.mu.Unlock()
		}
	}
}

// Why a hijacked stream ends.
type endReason int

const (
	endGone     endReason = iota // the client closed or reset the connection
	endFailed                    // a write failed
	endSlow                      // queue overflow or write deadline: cut hard
	endShutdown                  // the hub closed: queued events sent, response ended
)

var errWriteTimeout = errors.New("write deadline exceeded: client is not reading")

// hijackedStream is one stream served by the engine.
type hijackedStream struct {
	h      *Handler
	writer *streamWriter
	remote string
	topics []string
	opened time.Time

	scheduled      bool        // guarded by writer.mu
	waitingForRoom atomic.Bool // a write came up short; the poller resumes it

	mu       sync.Mutex // serialises flush and end
	sub      *herald.Subscriber
	conn     net.Conn
	raw      syscall.RawConn
	fd       int
	key      uint64
	pending  []byte   // written next: response head, or a chunk the socket did not take
	frames   [][]byte // drained but not yet gathered into a chunk, while the socket is full
	offset   int      // bytes of frames[0] already gathered
	ending   bool     // response terminator queued; close once written
	ended    bool
	deadline *time.Timer
	due      time.Time // when the stalled write gives up; zero when none is stalled
	progress int       // bytes written since due was set
}

// serveHijacked takes the connection over and leaves the stream, and the
// connection slot the caller acquired, to the engine. It reports false,
// having written nothing and kept the slot with the caller, if the
// connection cannot be taken over; the caller then serves the stream
// itself.
func (h *Handler) serveHijacked(w http.ResponseWriter, r *http.Request, e *engine, selectors []herald.Selector, raw []string) bool {
	s := &hijackedStream{h: h, remote: r.RemoteAddr, topics: raw, opened: time.Now()}
	s.writer = e.writers[int(e.nextWriter.Add(1))%len(e.writers)]
	// Held until the stream is registered: the hub may wake it (and a
	// writer flush it) as soon as it subscribes.
	s.mu.Lock()
	defer s.mu.Unlock()
	giveUp := func() {
		s.ended = true // for a flush the subscription already scheduled
		if s.sub != nil {
			s.sub.Close()
		}
	}
	sub, err := h.Hub.SubscribeFunc(func() { s.writer.schedule(s) }, selectors...)
	if err != nil {
		giveUp()
		h.releaseStream()
		w.Header().Set("Retry-After", "5")
		h.fail(w, r, http.StatusServiceUnavailable, "hub is shutting down")
		return true
	}
	s.sub = sub

	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		giveUp()
		return false
	}
	rawConn, ok := netpoll.RawConn(conn)
	var fd int
	if ok {
		fd, err = netpoll.FD(rawConn)
	}
	if !ok || err != nil {
		// ConnContext promised a plain socket; without one nothing can
		// be served any more.
		giveUp()
		conn.Close()
		h.releaseStream()
		h.logger().Error("hijacked stream connection is not a socket", "remote", s.remote)
		return true
	}
	s.conn, s.raw, s.fd = conn, rawConn, fd
	s.key = e.add(s)
	s.pending = responseHead(w.Header())
	h.logger().LogAttrs(r.Context(), slog.LevelDebug, "stream opened",
		slog.String("remote", s.remote), slog.Any("topics", raw))
	if err := e.poller.Add(fd, s.key); err != nil {
		s.endLocked(e, endFailed, err)
		return true
	}
	s.writer.schedule(s)
	return true
}

// responseHead is the status line, headers and opening comment of a
// hijacked stream: what net/http would have sent, with chunked framing so
// a clean end is distinguishable from a cut connection.
func responseHead(hdr http.Header) []byte {
	var b bytes.Buffer
	b.WriteString("HTTP/1.1 200 OK\r\n")
	_ = hdr.WriteSubset(&b, map[string]bool{"Date": true, "Transfer-Encoding": true, "Connection": true, "Content-Length": true})
	b.WriteString("Date: " + time.Now().UTC().Format(http.TimeFormat) + "\r\n")
	// The engine closes the connection when the stream ends, so it says
	// so instead of letting a client queue a request behind the stream.
	b.WriteString("Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
	b.WriteString(strconv.FormatInt(int64(len(openingComment)), 16))
	b.WriteString("\r\n")
	b.Write(openingComment)
	b.Write(chunkTrailer)
	return b.Bytes()
}

// flush writes what the stream has: the unsent rest of a chunk, then its
// queued events in chunks of up to maxChunkPayload, until everything is
// written or the socket is full. It never waits.
func (s *hijackedStream) flush(w *streamWriter) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended || s.sub == nil {
		return
	}
	e := theEngine
	removed, why := s.sub.Removed()
	if removed && errors.Is(why, herald.ErrSlowSubscriber) {
		s.endLocked(e, endSlow, why)
		return
	}
	// Set before writing, not after a short write: the poller's report of
	// room may come between the two, and must not be missed.
	s.waitingForRoom.Store(true)
	for {
		if len(s.pending) > 0 {
			n, err := netpoll.WriteNow(s.raw, s.pending)
			if err != nil && err != netpoll.ErrWouldBlock {
				s.endLocked(e, endFailed, err)
				return
			}
			s.wrote(n)
			s.pending = s.pending[n:]
			if len(s.pending) > 0 {
				s.stalled()
				return
			}
			s.pending = nil
		}
		if s.ending {
			s.endLocked(e, endShutdown, nil)
			return
		}
		if len(s.frames) == 0 {
			w.frames = s.sub.Drain(w.frames[:0])
			if len(w.frames) == 0 {
				if removed {
					// Everything queued before the hub closed is out:
					// end the response cleanly.
					s.pending, s.ending = lastChunk, true
					continue
				}
				s.unstalled()
				return
			}
			s.frames, s.offset = w.frames, 0
		}
		chunk := s.gather(w.buf)
		n, err := netpoll.WriteNow(s.raw, chunk)
		if err != nil && err != netpoll.ErrWouldBlock {
			s.endLocked(e, endFailed, err)
			return
		}
		s.wrote(n)
		if n < len(chunk) {
			// The socket is full. Keep the rest of this chunk (a copy:
			// the buffer is shared) and the frames not yet gathered (a
			// copy of the slice: so is w.frames), and wait for room.
			s.pending = append([]byte(nil), chunk[n:]...)
			if len(s.frames) > 0 {
				s.frames = append([][]byte(nil), s.frames...)
			}
			clear(w.frames)
			s.stalled()
			return
		}
		if len(s.frames) == 0 {
			clear(w.frames) // keep no reference to shared frames
		}
	}
}

// gather fills buf with one chunk made of the stream's next frames and
// returns it, consuming what it took from s.frames.
func (s *hijackedStream) gather(buf []byte) []byte {
	payload := buf[chunkHeaderRoom:chunkHeaderRoom]
	for len(s.frames) > 0 && len(payload) < maxChunkPayload {
		f := s.frames[0][s.offset:]
		n := min(len(f), maxChunkPayload-len(payload))
		payload = append(payload, f[:n]...)
		s.offset += n
		if s.offset == len(s.frames[0]) {
			s.frames[0] = nil
			s.frames, s.offset = s.frames[1:], 0
		}
	}
	if len(s.frames) == 0 {
		s.frames = nil
	}
	size := strconv.AppendInt(buf[:0:chunkHeaderRoom], int64(len(payload)), 16)
	start := chunkHeaderRoom - len(size) - 2
	copy(buf[start:], size)
	buf[chunkHeaderRoom-2], buf[chunkHeaderRoom-1] = '\r', '\n'
	end := chunkHeaderRoom + len(payload)
	end += copy(buf[end:], chunkTrailer)
	return buf[start:end]
}

// stalled arms the write deadline when a write comes up short: the client
// must take maxWriteChunk bytes within WriteTimeout or be dropped.
func (s *hijackedStream) stalled() {
	timeout := s.h.writeTimeout()
	if timeout <= 0 || !s.due.IsZero() {
		return
	}
	s.due = time.Now().Add(timeout)
	s.progress = 0
	if s.deadline == nil {
		s.deadline = time.AfterFunc(timeout, s.checkDeadline)
	} else {
		s.deadline.Reset(timeout)
	}
}

// wrote counts progress; a steady reader earns a new deadline per
// maxWriteChunk bytes, as on the ordinary path.
func (s *hijackedStream) wrote(n int) {
	if s.due.IsZero() {
		return
	}
	s.progress += n
	if s.progress >= maxWriteChunk {
		s.due, s.progress = time.Now().Add(s.h.writeTimeout()), 0
	}
}

// unstalled disarms the deadline: everything is written.
func (s *hijackedStream) unstalled() {
	s.waitingForRoom.Store(false)
	if !s.due.IsZero() {
		s.due = time.Time{}
		s.deadline.Stop()
	}
}

func (s *hijackedStream) checkDeadline() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended || s.due.IsZero() {
		return
	}
	if left := time.Until(s.due); left > 0 {
		s.deadline.Reset(left) // progress moved the deadline
		return
	}
	s.endLocked(theEngine, endSlow, errWriteTimeout)
}

func (s *hijackedStream) end(why endReason, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.endLocked(theEngine, why, err)
}

// endLocked closes the connection and frees everything the stream holds.
func (s *hijackedStream) endLocked(e *engine, why endReason, err error) {
	if s.ended {
		return
	}
	s.ended = true
	if s.deadline != nil {
		s.deadline.Stop()
	}
	_ = e.poller.Delete(s.fd) // before Close: the number is reused at once
	e.forget(s.key)
	if why == endSlow {
		// Discard unsent bytes and reset: a client that stopped reading
		// would never see a FIN queued behind them, and the kernel would
		// keep the buffers until it gave up.
		if tc, ok := s.conn.(*net.TCPConn); ok {
			_ = tc.SetLinger(0)
		}
	}
	s.conn.Close()
	s.sub.Close()
	s.pending, s.frames = nil, nil
	s.h.releaseStream()

	log := s.h.logger()
	ctx := context.Background()
	switch why {
	case endSlow:
		log.LogAttrs(ctx, slog.LevelWarn, "slow stream dropped",
			slog.String("remote", s.remote), slog.Any("topics", s.topics), slog.String("error", err.Error()))
	case endFailed:
		log.LogAttrs(ctx, slog.LevelInfo, "stream write failed",
			slog.String("remote", s.remote), slog.String("error", err.Error()))
	}
	log.LogAttrs(ctx, slog.LevelDebug, "stream closed",
		slog.String("remote", s.remote), slog.Duration("duration", time.Since(s.opened)))
}
