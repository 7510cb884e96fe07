package engine

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/herald-sse/herald"
	"github.com/herald-sse/herald/internal/netpoll"
)

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

// ErrWriteTimeout is why a stream ends whose client did not take
// ProgressBytes within its WriteTimeout.
var ErrWriteTimeout = errors.New("write deadline exceeded: client is not reading")

var errUnexpectedInput = errors.New("client sent data after its stream request")

// Stream is one stream served by the engine. Idle streams outnumber busy
// ones by far, so what only a stalled stream needs lives in a stall
// allocated when its socket fills up.
type Stream struct {
	e      *Engine
	writer *writer
	opened int64 // unix nanoseconds

	scheduled      bool        // guarded by writer.mu
	registered     atomic.Bool // set up and owned by the engine; before that, flushes are skipped
	waitingForRoom atomic.Bool // set while a write may come up short; the poller resumes it

	mu      sync.Mutex // serialises Serve's setup, flush and end
	q       Queue
	timeout time.Duration
	owner   Owner
	ending  bool // response terminator queued; close once written
	ended   bool
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

// NewStream returns a stream for Serve. Subscribe with its Wake method as
// the queue's wake function first: the hub may wake the stream before it
// is served, and Serve catches up.
func (e *Engine) NewStream() *Stream {
	return &Stream{e: e, writer: e.writers[e.nextWriter.Add(1)%uint32(len(e.writers))], opened: time.Now().UnixNano()}
}

// Wake puts the stream in line for a flush. It only appends to a list,
// so the hub may call it under its locks.
func (s *Stream) Wake() { s.writer.schedule(s) }

// Serve takes conn over for s: it writes the response head, cfg.Opening
// and q's replay, then leaves the stream to the engine, which sends q's
// events as they come until the stream ends. The head and the replay are
// written here, on the caller's goroutine, with ordinary blocking writes:
// a replay can be long, and the engine's writers must never wait on one
// client. Live events queue meanwhile.
//
// Serve owns conn from the call on, and cfg.Owner.Ended is called exactly
// once: before Serve returns if the stream never went live.
func (e *Engine) Serve(s *Stream, conn net.Conn, q Queue, cfg Config) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.q, s.timeout, s.owner = q, cfg.WriteTimeout, cfg.Owner
	if err := s.writeStart(conn, cfg.Header, cfg.Opening); err != nil {
		if errors.Is(err, herald.ErrSubscriptionExpired) {
			// Live events queued meanwhile must not follow a replay cut
			// short (a gap): end with the farewell alone.
			_ = s.blockingWrite(conn, s.farewellChunks(err))
		}
		s.endBeforeLive(conn, ReplayStopped, err)
		return
	}
	fd, err := netpoll.Detach(conn)
	if err != nil {
		s.endBeforeLive(conn, Failed, fmt.Errorf("handing the connection to the poller: %w", err))
		return
	}
	s.fd = fd
	s.key = e.add(s)
	if err := e.poller.Add(fd, s.key); err != nil {
		s.endLocked(Failed, err)
		return
	}
	s.registered.Store(true)
	s.writer.schedule(s) // covers wakes that came before registration
}

// endBeforeLive ends a stream that was never handed to the poller.
func (s *Stream) endBeforeLive(conn net.Conn, why Reason, err error) {
	s.ended = true
	conn.Close()
	s.owner.Ended(End{Reason: why, Err: err, Duration: time.Since(time.Unix(0, s.opened))})
}

// chunkBuffers holds the 64 KiB buffers of replays: most streams replay
// nothing and never take one.
var chunkBuffers = sync.Pool{New: func() any {
	b := make([]byte, chunkHeaderRoom+maxChunkPayload+len(chunkTrailer))
	return &b
}}

// blockingWrite writes b to a connection not yet handed to the poller,
// within the write deadline.
func (s *Stream) blockingWrite(conn net.Conn, b []byte) error {
	if t := s.timeout; t > 0 {
		if err := conn.SetWriteDeadline(time.Now().Add(t)); err != nil {
			return err
		}
	}
	_, err := conn.Write(b)
	return err
}

// writeStart writes the response head, the opening frames and the replay,
// in chunks, with a write deadline per chunk.
func (s *Stream) writeStart(conn net.Conn, hdr http.Header, opening [][]byte) error {
	// Head and opening frames in one write, sized to fit.
	size := 0
	for _, f := range opening {
		size += len(f)
	}
	start := responseHead(hdr)
	if size > 0 {
		start = strconv.AppendInt(start, int64(size), 16)
		start = append(start, "\r\n"...)
		for _, f := range opening {
			start = append(start, f...)
		}
		start = append(start, chunkTrailer...)
	}
	if err := s.blockingWrite(conn, start); err != nil {
		return err
	}
	var buf *[]byte
	defer func() {
		if buf != nil {
			chunkBuffers.Put(buf)
		}
	}()
	err := s.q.Replay(func(frames [][]byte) error {
		if buf == nil {
			buf = chunkBuffers.Get().(*[]byte)
		}
		cur := frameCursor{frames: frames}
		for len(cur.frames) > 0 {
			if err := s.blockingWrite(conn, gather(*buf, &cur)); err != nil {
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

// farewellChunks ends a response whose queue the hub removed for why:
// the farewell frame, if any, then the terminating chunk.
func (s *Stream) farewellChunks(why error) []byte {
	frame := s.owner.Farewell(why)
	if len(frame) == 0 {
		return lastChunk
	}
	b := strconv.AppendInt(nil, int64(len(frame)), 16)
	b = append(b, "\r\n"...)
	b = append(b, frame...)
	b = append(b, chunkTrailer...)
	return append(b, lastChunk...)
}

// responseHead is the status line and headers of a stream: what net/http
// would have sent, with chunked framing so a clean end is distinguishable
// from a cut connection.
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

// readClosed reads from a stream's socket to learn why the poller
// reported it. A stream client has nothing to send after its request (a
// pipelined request behind an endless response could never be answered),
// so input ends the stream as surely as a close or reset does. Reading
// just one buffer means a client that floods its socket costs the shared
// poller one read, not as many as it can send.
func (s *Stream) readClosed(buf []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended {
		return
	}
	switch n, err := netpoll.Read(s.fd, buf); {
	case err == netpoll.ErrWouldBlock:
	case err != nil:
		s.endLocked(Gone, err)
	case n > 0:
		s.endLocked(UnexpectedInput, errUnexpectedInput)
	}
}

// flush writes what the stream has: the unsent rest of a chunk, then its
// queued events in chunks of up to maxChunkPayload, until everything is
// written or the socket is full. It never waits.
func (s *Stream) flush(w *writer) {
	if !s.registered.Load() {
		// Still being set up, under mu: waiting would hold this writer
		// (and its other streams) behind a connection handshake. Setup
		// schedules the stream once it is done.
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended {
		return
	}
	removed, why := s.q.Removed()
	if removed && errors.Is(why, herald.ErrSlowSubscriber) {
		s.endLocked(Slow, why)
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
				s.endLocked(Failed, err)
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
			s.endLocked(Removed, why) // why was read above, and stays once removed
			return
		}
		if len(cur.frames) == 0 {
			w.drained = s.q.Drain(w.drained[:0])
			w.cur, cur = frameCursor{frames: w.drained}, &w.cur
			if len(w.drained) == 0 {
				if removed {
					// Everything queued before the hub removed the queue
					// is out: end the response cleanly, saying why.
					s.pending, s.ending = s.farewellChunks(why), true
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
			s.endLocked(Failed, err)
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
// the client must take ProgressBytes within WriteTimeout or be dropped.
func (s *Stream) stalled() *stall {
	st := s.stall
	if st == nil {
		st = &stall{}
		s.stall = st
	}
	timeout := s.timeout
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
// ProgressBytes.
func (s *Stream) wrote(n int) {
	st := s.stall
	if st == nil || st.due.IsZero() {
		return
	}
	st.progress += n
	if st.progress >= ProgressBytes {
		st.due, st.progress = time.Now().Add(s.timeout), 0
	}
}

// unstalled forgets the stall: everything is written.
func (s *Stream) unstalled() {
	s.waitingForRoom.Store(false)
	if s.stall != nil {
		if s.stall.deadline != nil {
			s.stall.deadline.Stop()
		}
		s.stall = nil
	}
}

func (s *Stream) checkDeadline(st *stall) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended || s.stall != st {
		return // ended, or drained since: this timer is stale
	}
	if left := time.Until(st.due); left > 0 {
		st.deadline.Reset(left) // progress moved the deadline
		return
	}
	s.endLocked(Slow, ErrWriteTimeout)
}

// endLocked closes the connection, frees what the stream holds and
// reports the end.
func (s *Stream) endLocked(why Reason, err error) {
	if s.ended {
		return
	}
	s.ended = true
	if s.stall != nil && s.stall.deadline != nil {
		s.stall.deadline.Stop()
	}
	_ = s.e.poller.Delete(s.fd) // before Close: the number is reused at once
	s.e.forget(s.key)
	// A slow client is reset: one that stopped reading would never see a
	// FIN queued behind unsent bytes, and the kernel would keep the
	// buffers until it gave up.
	_ = netpoll.CloseFD(s.fd, why == Slow)
	s.pending, s.stall = nil, nil
	s.owner.Ended(End{Reason: why, Err: err, Duration: time.Since(time.Unix(0, s.opened))})
}
