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
	discard := make([]byte, 512) // only to see whether anything came
	for {
		err := e.poller.Wait(func(key uint64, ev netpoll.Events) {
			e.mu.Lock()
			s := e.streams[key]
			e.mu.Unlock()
			if s == nil {
				return // closed since the event was reported
			}
			if ev&(netpoll.Readable|netpoll.Hangup) != 0 {
				s.readClosed(discard)
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

// readClosed reads from a stream's socket to learn why the poller
// reported it. A stream client has nothing to send after its request (a
// pipelined request behind an endless response could never be answered),
// so input ends the stream as surely as a close or reset does. Reading
// just one buffer means a client that floods its socket costs the shared
// poller one read, not as many as it can send.
func (s *hijackedStream) readClosed(buf []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended {
		return
	}
	switch n, err := netpoll.Read(s.fd, buf); {
	case err == netpoll.ErrWouldBlock:
	case err != nil:
		s.endLocked(endGone, err)
	case n > 0:
		s.endLocked(endUnexpectedInput, errUnexpectedInput)
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

	// Owned by the goroutine, reused for every stream it flushes.
	buf     []byte      // one chunk being written
	drained [][]byte    // frames drained from one subscriber
	cur     frameCursor // position in drained
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
	endGone            endReason = iota // the client closed or reset the connection
	endFailed                           // a write failed
	endSlow                             // queue overflow or write deadline: cut hard
	endShutdown                         // the hub closed: queued events sent, response ended
	endUnexpectedInput                  // the client sent bytes after its request
)

var (
	errWriteTimeout    = errors.New("write deadline exceeded: client is not reading")
	errUnexpectedInput = errors.New("client sent data after its stream request")
)

// hijackedStream is one stream served by the engine. Idle streams
// outnumber busy ones by far, so what only a stalled stream needs lives in
// a stall allocated when its socket fills up.
type hijackedStream struct {
	h      *Handler
	writer *streamWriter
	remote string
	owner  owner  // whose connection slot the stream holds
	connID string // announced connection ID, if any
	opened int64  // unix nanoseconds

	scheduled      bool        // guarded by writer.mu
	registered     atomic.Bool // set up and owned by the engine; before that, flushes are skipped
	waitingForRoom atomic.Bool // set while a write may come up short; the poller resumes it

	mu      sync.Mutex // serialises flush and end
	ending  bool       // response terminator queued; close once written
	ended   bool
	sub     *herald.Subscriber
	fd      int // detached from Go's poller: closed by endLocked, used only under mu
	key     uint64
	pending []byte // written next: the terminator, or a chunk the socket did not take
	stall   *stall
}

// stall is what a stream keeps while its socket is full.
type stall struct {
	rest     frameCursor // frames drained but not yet gathered into a chunk
	deadline *time.Timer // nil when WriteTimeout is off
	due      time.Time   // when the stream is dropped unless it makes progress
	progress int         // bytes written since due was set
}

// frameCursor is a position in a list of frames.
type frameCursor struct {
	frames [][]byte
	offset int // bytes of frames[0] already taken
}

// serveHijacked takes the connection over and leaves the stream, and the
// connection slot the caller acquired, to the engine. It reports false,
// having written nothing and kept the slot with the caller, if the
// connection cannot be taken over; the caller then serves the stream
// itself.
func (h *Handler) serveHijacked(w http.ResponseWriter, r *http.Request, e *engine, opts herald.SubscribeOptions, raw []string, o owner) bool {
	s := &hijackedStream{h: h, remote: r.RemoteAddr, owner: o, opened: time.Now().UnixNano()}
	s.writer = e.writers[e.nextWriter.Add(1)%uint32(len(e.writers))]
	// Held until the stream is registered: the hub may wake it as soon as
	// it subscribes.
	s.mu.Lock()
	defer s.mu.Unlock()
	giveUp := func() {
		s.ended = true // for a flush the subscription already scheduled
		if s.sub != nil {
			s.sub.Close()
		}
		h.conns.remove(s.connID)
	}
	opts.Wake = func() { s.writer.schedule(s) }
	sub, err := h.Hub.SubscribeWith(opts)
	if err != nil {
		giveUp()
		h.releaseStream(s.owner)
		h.subscribeFailed(w, r, err)
		return true
	}
	s.sub = sub
	if opts.ConnectionID != "" {
		s.connID = opts.ConnectionID
		h.conns.add(&connection{ID: s.connID, Subject: opts.Subject, Topics: raw, Remote: r.RemoteAddr, Since: time.Now()})
	}

	conn, _, err := w.(http.Hijacker).Hijack()
	if err != nil {
		giveUp()
		return false
	}
	setStreamHeaders(w.Header())
	h.logger().LogAttrs(r.Context(), slog.LevelDebug, "stream opened",
		slog.String("remote", s.remote), slog.Any("topics", raw))
	// The head and any replay are written here, by the request's own
	// goroutine with ordinary blocking writes: a replay can be long, and
	// the engine's writers must never wait on one client. Live events
	// queue meanwhile; the engine takes over once the replay is out.
	err = h.writeHijackedStart(conn, w.Header(), sub, s.connID)
	if errors.Is(err, herald.ErrSubscriptionExpired) {
		// The token expired during the replay. Live events queued
		// meanwhile must not follow a replay cut short (a gap): end with
		// the expired event alone.
		err = h.writeHijackedExpired(conn)
		if err == nil {
			err = herald.ErrSubscriptionExpired
		}
		giveUp()
		conn.Close()
		h.releaseStream(s.owner)
		return true
	}
	if err != nil {
		giveUp()
		conn.Close()
		h.releaseStream(s.owner)
		if errors.Is(err, herald.ErrHistoryLost) {
			h.logger().LogAttrs(r.Context(), slog.LevelInfo, "replay overtaken by retention", slog.String("remote", s.remote))
		}
		return true
	}
	fd, err := netpoll.Detach(conn)
	if err != nil {
		// engineFor checked for a plain socket; nothing can be served
		// any more.
		giveUp()
		conn.Close()
		h.releaseStream(s.owner)
		h.logger().Error("hijacked stream connection could not be detached", "remote", s.remote, "error", err)
		return true
	}
	s.fd = fd
	s.key = e.add(s)
	if err := e.poller.Add(fd, s.key); err != nil {
		s.endLocked(endFailed, err)
		return true
	}
	s.registered.Store(true)
	s.writer.schedule(s) // covers wakes that came before registration
	return true
}

// chunkBuffers holds the 64 KiB buffers of replays on hijacked streams:
// most streams replay nothing and never take one.
var chunkBuffers = sync.Pool{New: func() any {
	b := make([]byte, chunkHeaderRoom+maxChunkPayload+len(chunkTrailer))
	return &b
}}

// writeHijackedStart writes the response head, the opening frames and the
// replay to a hijacked connection, in chunks, with a write deadline per
// chunk as on the ordinary path.
func (h *Handler) writeHijackedStart(conn net.Conn, hdr http.Header, sub *herald.Subscriber, connID string) error {
	write := func(b []byte) error {
		if t := h.writeTimeout(); t > 0 {
			if err := conn.SetWriteDeadline(time.Now().Add(t)); err != nil {
				return err
			}
		}
		_, err := conn.Write(b)
		return err
	}
	// Head and opening frames in one write, sized to fit.
	opening := h.opening(sub, connID)
	size := 0
	for _, f := range opening {
		size += len(f)
	}
	start := responseHead(hdr)
	start = strconv.AppendInt(start, int64(size), 16)
	start = append(start, "\r\n"...)
	for _, f := range opening {
		start = append(start, f...)
	}
	start = append(start, chunkTrailer...)
	if err := write(start); err != nil {
		return err
	}
	var buf *[]byte
	defer func() {
		if buf != nil {
			chunkBuffers.Put(buf)
		}
	}()
	err := sub.Replay(func(frames [][]byte) error {
		if buf == nil {
			buf = chunkBuffers.Get().(*[]byte)
		}
		cur := frameCursor{frames: frames}
		for len(cur.frames) > 0 {
			if err := write(gather(*buf, &cur)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	return conn.SetWriteDeadline(time.Time{})
}

// writeHijackedExpired ends a hijacked response with the expired event.
func (h *Handler) writeHijackedExpired(conn net.Conn) error {
	if t := h.writeTimeout(); t > 0 {
		if err := conn.SetWriteDeadline(time.Now().Add(t)); err != nil {
			return err
		}
	}
	_, err := conn.Write(h.expiredChunks())
	return err
}

// expiredChunks is the expired event as the last chunk of a response,
// followed by the terminating chunk.
func (h *Handler) expiredChunks() []byte {
	frame := h.expiredFrame()
	b := strconv.AppendInt(nil, int64(len(frame)), 16)
	b = append(b, "\r\n"...)
	b = append(b, frame...)
	b = append(b, chunkTrailer...)
	return append(b, lastChunk...)
}

// responseHead is the status line and headers of a hijacked stream: what
// net/http would have sent, with chunked framing so a clean end is
// distinguishable from a cut connection.
func responseHead(hdr http.Header) []byte {
	var b bytes.Buffer
	b.WriteString("HTTP/1.1 200 OK\r\n")
	_ = hdr.WriteSubset(&b, map[string]bool{"Date": true, "Transfer-Encoding": true, "Connection": true, "Content-Length": true})
	b.WriteString("Date: " + time.Now().UTC().Format(http.TimeFormat) + "\r\n")
	// The engine closes the connection when the stream ends, so it says
	// so instead of letting a client queue a request behind the stream.
	b.WriteString("Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
	return b.Bytes()
}

// flush writes what the stream has: the unsent rest of a chunk, then its
// queued events in chunks of up to maxChunkPayload, until everything is
// written or the socket is full. It never waits.
func (s *hijackedStream) flush(w *streamWriter) {
	if !s.registered.Load() {
		// Still being set up, under mu: waiting would hold this writer
		// (and its other streams) behind a connection handshake. Setup
		// schedules the stream once it is done.
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended || s.sub == nil {
		return
	}
	removed, why := s.sub.Removed()
	if removed && errors.Is(why, herald.ErrSlowSubscriber) {
		s.endLocked(endSlow, why)
		return
	}
	// Set before writing, not after a short write: the poller's report of
	// room may come between the two, and must not be missed.
	s.waitingForRoom.Store(true)
	w.cur = frameCursor{} // whatever the previous stream left is not ours
	cur := &w.cur
	if s.stall != nil && len(s.stall.rest.frames) > 0 {
		cur = &s.stall.rest
	}
	for {
		if len(s.pending) > 0 {
			n, err := netpoll.Write(s.fd, s.pending)
			if err != nil && err != netpoll.ErrWouldBlock {
				s.endLocked(endFailed, err)
				return
			}
			s.wrote(n)
			if s.pending = s.pending[n:]; len(s.pending) > 0 {
				s.stalled() // cur is the stall's own or empty: nothing to keep
				return
			}
			s.pending = nil
		}
		if s.ending {
			s.endLocked(endShutdown, nil)
			return
		}
		if len(cur.frames) == 0 {
			w.drained = s.sub.Drain(w.drained[:0])
			w.cur, cur = frameCursor{frames: w.drained}, &w.cur
			if len(w.drained) == 0 {
				if removed {
					// Everything queued before the hub closed (or the
					// token expired) is out: end the response cleanly,
					// saying why when the token expired.
					s.pending, s.ending = lastChunk, true
					if errors.Is(why, herald.ErrSubscriptionExpired) {
						s.pending = s.h.expiredChunks()
					}
					continue
				}
				s.unstalled()
				return
			}
		}
		chunk := gather(w.buf, cur)
		n, err := netpoll.Write(s.fd, chunk)
		if err != nil && err != netpoll.ErrWouldBlock {
			clear(w.drained)
			s.endLocked(endFailed, err)
			return
		}
		s.wrote(n)
		if n < len(chunk) {
			// The socket is full. Keep the rest of this chunk and the
			// frames not yet gathered (copies: the writer's buffers serve
			// the next stream), and wait for room.
			s.pending = append([]byte(nil), chunk[n:]...)
			st := s.stalled()
			if cur == &w.cur && len(cur.frames) > 0 {
				st.rest = frameCursor{frames: append([][]byte(nil), cur.frames...), offset: cur.offset}
			}
			clear(w.drained) // keep no reference to shared frames
			return
		}
	}
}

// gather fills buf with one chunk made of the frames at cur and returns
// it, advancing cur past what it took. Callers never gather from an empty
// cursor and hub frames are never empty, so no chunk has size 0, which
// would end the response.
func gather(buf []byte, cur *frameCursor) []byte {
	payload := buf[chunkHeaderRoom:chunkHeaderRoom]
	for len(cur.frames) > 0 && len(payload) < maxChunkPayload {
		f := cur.frames[0][cur.offset:]
		n := min(len(f), maxChunkPayload-len(payload))
		payload = append(payload, f[:n]...)
		cur.offset += n
		if cur.offset == len(cur.frames[0]) {
			cur.frames[0] = nil // done with this shared frame
			cur.frames, cur.offset = cur.frames[1:], 0
		}
	}
	size := strconv.AppendInt(buf[:0:chunkHeaderRoom], int64(len(payload)), 16)
	start := chunkHeaderRoom - len(size) - 2
	copy(buf[start:], size)
	buf[chunkHeaderRoom-2], buf[chunkHeaderRoom-1] = '\r', '\n'
	end := chunkHeaderRoom + len(payload)
	end += copy(buf[end:], chunkTrailer)
	return buf[start:end]
}

// stalled notes that a write came up short and arms the write deadline:
// the client must take maxWriteChunk bytes within WriteTimeout or be
// dropped.
func (s *hijackedStream) stalled() *stall {
	st := s.stall
	if st == nil {
		st = &stall{}
		s.stall = st
	}
	timeout := s.h.writeTimeout()
	if timeout <= 0 || !st.due.IsZero() {
		return st
	}
	st.due, st.progress = time.Now().Add(timeout), 0
	if st.deadline == nil {
		st.deadline = time.AfterFunc(timeout, func() { s.checkDeadline(st) })
	} else {
		st.deadline.Reset(timeout)
	}
	return st
}

// wrote counts progress; a steady reader earns a new deadline per
// maxWriteChunk bytes, as on the ordinary path.
func (s *hijackedStream) wrote(n int) {
	st := s.stall
	if st == nil || st.due.IsZero() {
		return
	}
	st.progress += n
	if st.progress >= maxWriteChunk {
		st.due, st.progress = time.Now().Add(s.h.writeTimeout()), 0
	}
}

// unstalled forgets the stall: everything is written.
func (s *hijackedStream) unstalled() {
	s.waitingForRoom.Store(false)
	if s.stall != nil {
		if s.stall.deadline != nil {
			s.stall.deadline.Stop()
		}
		s.stall = nil
	}
}

func (s *hijackedStream) checkDeadline(st *stall) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended || s.stall != st {
		return // ended, or drained since: this timer is stale
	}
	if left := time.Until(st.due); left > 0 {
		st.deadline.Reset(left) // progress moved the deadline
		return
	}
	s.endLocked(endSlow, errWriteTimeout)
}

// endLocked closes the connection and frees everything the stream holds.
func (s *hijackedStream) endLocked(why endReason, err error) {
	if s.ended {
		return
	}
	s.ended = true
	if s.stall != nil && s.stall.deadline != nil {
		s.stall.deadline.Stop()
	}
	e := theEngine
	_ = e.poller.Delete(s.fd) // before Close: the number is reused at once
	e.forget(s.key)
	// A slow client is reset: one that stopped reading would never see a
	// FIN queued behind unsent bytes, and the kernel would keep the
	// buffers until it gave up.
	_ = netpoll.CloseFD(s.fd, why == endSlow)
	s.sub.Close()
	s.h.conns.remove(s.connID)
	s.pending, s.stall = nil, nil
	s.h.releaseStream(s.owner)

	log := s.h.logger()
	ctx := context.Background()
	switch why {
	case endSlow:
		log.LogAttrs(ctx, slog.LevelWarn, "slow stream dropped",
			slog.String("remote", s.remote), slog.Any("topics", selectorNames(s.sub.Selectors())), slog.String("error", err.Error()))
	case endFailed:
		log.LogAttrs(ctx, slog.LevelInfo, "stream write failed",
			slog.String("remote", s.remote), slog.String("error", err.Error()))
	case endUnexpectedInput:
		log.LogAttrs(ctx, slog.LevelInfo, "stream ended",
			slog.String("remote", s.remote), slog.String("error", err.Error()))
	}
	log.LogAttrs(ctx, slog.LevelDebug, "stream closed",
		slog.String("remote", s.remote), slog.Duration("duration", time.Since(time.Unix(0, s.opened))))
}

func selectorNames(sels []herald.Selector) []string {
	names := make([]string, len(sels))
	for i, sel := range sels {
		names[i] = sel.String()
	}
	return names
}
