package httpapi

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"sync/atomic"
	"time"

	"github.com/herald-sse/herald"
	"github.com/herald-sse/herald/internal/engine"
)

// goroutineTransport serves a stream from its handler's goroutine,
// through net/http: for TLS, HTTP/2, and writers the engine cannot take
// over. It behaves as the engine does, at the cost of a goroutine and
// net/http's buffers per stream.
type goroutineTransport struct{}

func (goroutineTransport) serve(h *Handler, w http.ResponseWriter, r *http.Request, st *streamSpec) {
	defer h.releaseStream(st.owner)
	sub, ok := h.subscribeStream(w, r, st)
	if !ok {
		return
	}
	defer sub.Close()
	defer h.conns.remove(st.opts.ConnectionID)
	setStreamHeaders(w.Header())
	w.WriteHeader(http.StatusOK)

	log := h.logger()
	started := time.Now()
	log.LogAttrs(r.Context(), slog.LevelDebug, "stream opened",
		slog.String("remote", r.RemoteAddr), slog.Any("topics", st.topics))
	defer func() {
		log.LogAttrs(r.Context(), slog.LevelDebug, "stream closed",
			slog.String("remote", r.RemoteAddr), slog.Duration("duration", time.Since(started)))
	}()

	out := h.newStreamOutput(w, r, st.topics)
	if err := out.write(h.opening(sub, st.opts.ConnectionID)...); err != nil {
		out.cutIfStalled(err)
		return
	}
	if err := sub.Replay(func(frames [][]byte) error { return out.write(frames...) }); err != nil {
		if errors.Is(err, herald.ErrSlowSubscriber) {
			log.LogAttrs(r.Context(), slog.LevelWarn, "slow stream dropped",
				slog.String("remote", r.RemoteAddr), slog.Any("topics", st.topics))
			panic(http.ErrAbortHandler)
		}
		if errors.Is(err, herald.ErrHistoryLost) {
			// End the response: the client resumes again and learns
			// that it lost events.
			log.LogAttrs(r.Context(), slog.LevelInfo, "replay overtaken by retention", slog.String("remote", r.RemoteAddr))
		}
		if errors.Is(err, herald.ErrSubscriptionExpired) {
			// The replay was cut short, so live events queued meanwhile
			// must not follow (they would leave a gap): only say why.
			err = out.write(h.expiredFrame())
		}
		out.cutIfStalled(err)
		return
	}
	for {
		select {
		case <-r.Context().Done():
			return
		case <-sub.Ready():
			if err := out.writeQueued(sub); err != nil {
				out.cutIfStalled(err)
				log.LogAttrs(r.Context(), slog.LevelInfo, "stream write failed",
					slog.String("remote", r.RemoteAddr), slog.String("error", err.Error()))
				return
			}
		case <-sub.Done():
			if errors.Is(sub.Err(), herald.ErrSlowSubscriber) {
				log.LogAttrs(r.Context(), slog.LevelWarn, "slow stream dropped",
					slog.String("remote", r.RemoteAddr), slog.Any("topics", st.topics))
				// Cut the connection instead of ending the response: the
				// client is not reading, so a clean end would only block.
				panic(http.ErrAbortHandler)
			}
			// Shutdown or resync: send what is already queued, then end
			// cleanly so the client reconnects (to this hub's successor).
			// At the token's expiry, also say why, so the client gets a
			// fresh token before it does.
			err := out.writeQueued(sub)
			if err == nil && errors.Is(sub.Err(), herald.ErrSubscriptionExpired) {
				log.LogAttrs(r.Context(), slog.LevelDebug, "stream token expired", slog.String("remote", r.RemoteAddr))
				err = out.write(h.expiredFrame())
			}
			out.cutIfStalled(err)
			return
		}
	}
}

// maxWriteChunk is how much a client must take within one WriteTimeout,
// as engine.ProgressBytes is for the engine: the deadline is renewed after
// each chunk, so a client that reads slowly but steadily is not cut off
// in the middle of a large batch.
const maxWriteChunk = engine.ProgressBytes

// streamOutput writes the frames of a stream served by its handler
// goroutine.
type streamOutput struct {
	h      *Handler
	w      http.ResponseWriter
	rc     *http.ResponseController
	r      *http.Request
	topics []string
	// watched: writes run on a helper goroutine that the handler gives up
	// on when they stall (HTTP/2, see write).
	watched bool
}

func (h *Handler) newStreamOutput(w http.ResponseWriter, r *http.Request, topics []string) *streamOutput {
	// ResponseController reaches Flush and the write deadline through
	// middleware wrappers that hide http.Flusher.
	return &streamOutput{h: h, w: w, rc: http.NewResponseController(w), r: r, topics: topics,
		watched: r.ProtoMajor >= 2 && h.writeTimeout() > 0}
}

// errWriteStalled is what write returns when it gave up on an HTTP/2
// write that made no progress.
var errWriteStalled = fmt.Errorf("%w (%w)", engine.ErrWriteTimeout, os.ErrDeadlineExceeded)

// cutIfStalled cuts the stream if err says the client stopped reading:
// a clean end would only block behind what it did not take. After a
// write was given up on (errWriteStalled) the handler must not return
// normally either, since the helper goroutine may still be writing.
func (o *streamOutput) cutIfStalled(err error) {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		o.h.logger().LogAttrs(o.r.Context(), slog.LevelWarn, "slow stream dropped",
			slog.String("remote", o.r.RemoteAddr), slog.Any("topics", o.topics), slog.String("error", engine.ErrWriteTimeout.Error()))
		panic(http.ErrAbortHandler)
	}
}

// writeQueued writes everything queued for sub, with one flush.
func (o *streamOutput) writeQueued(sub *herald.Subscriber) error {
	h := o.h
	fp, _ := h.frameSlices.Get().(*[][]byte)
	if fp == nil {
		fp = new([][]byte)
	}
	frames := sub.Drain((*fp)[:0])
	err := o.write(frames...)
	if errors.Is(err, errWriteStalled) {
		return err // the helper goroutine may still be reading frames
	}
	clear(frames) // drop references to shared frames before pooling
	if cap(frames) <= 1024 {
		*fp = frames[:0]
		h.frameSlices.Put(fp)
	}
	return err
}

// write writes frames and flushes once, with a deadline per maxWriteChunk
// bytes.
//
// Over HTTP/2 the deadline alone does not free a stalled stream. Its
// expiry queues a reset of the stream, which frees the handler when sent;
// but a client that stops reading the whole connection lets nothing be
// sent: the connection's writer is blocked on the socket, and so is this
// goroutine, in Flush, until the client hangs up, keeping the stream's
// connection slot. So HTTP/2 writes run on a helper goroutine, and if one
// makes no progress for WriteTimeout, write gives up on it and returns
// errWriteStalled; the handler then panics with http.ErrAbortHandler
// (cutIfStalled), which has net/http reset the stream without touching
// the response any more (a handler that returned normally would have
// net/http flush and recycle the response while the helper still writes
// to it). The helper ends when the stream or the connection closes:
// NewServer sets HTTP/2's WriteByteTimeout so that a connection nothing
// can be written to is closed.
func (o *streamOutput) write(frames ...[]byte) error {
	if !o.watched {
		return o.h.writeFrames(o.w, o.rc, nil, frames...)
	}
	timeout := o.h.writeTimeout()
	var progress atomic.Int64 // unix nanoseconds of the last chunk taken
	progress.Store(time.Now().UnixNano())
	done := make(chan error, 1)
	go func() { done <- o.h.writeFrames(o.w, o.rc, &progress, frames...) }()
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		select {
		case err := <-done:
			return err
		case <-t.C:
			if left := time.Until(time.Unix(0, progress.Load()).Add(timeout)); left > 0 {
				t.Reset(left) // it made progress: a new deadline from there
				continue
			}
			return errWriteStalled
		}
	}
}

// writeFrames writes frames and flushes once, renewing the write deadline
// for every maxWriteChunk bytes, and stores the time into progress (if
// not nil) after each. net/http's buffers coalesce small frames, so a
// batch of queued events leaves in as few writes as its size allows.
//
// The deadline is cleared once the frames are out: over HTTP/2 it is a
// timer that resets the stream when it fires, written or not, so one left
// set would cut every stream idle for longer than WriteTimeout.
func (h *Handler) writeFrames(w http.ResponseWriter, rc *http.ResponseController, progress *atomic.Int64, frames ...[]byte) error {
	timeout := h.writeTimeout()
	sinceDeadline := maxWriteChunk
	deadlineSet := false
	for _, f := range frames {
		for len(f) > 0 {
			if sinceDeadline >= maxWriteChunk {
				if timeout > 0 {
					if err := rc.SetWriteDeadline(time.Now().Add(timeout)); err != nil && !errors.Is(err, http.ErrNotSupported) {
						return err
					}
					deadlineSet = true
				}
				sinceDeadline = 0
			}
			n := min(len(f), maxWriteChunk-sinceDeadline)
			if _, err := w.Write(f[:n]); err != nil {
				return err
			}
			if progress != nil {
				progress.Store(time.Now().UnixNano())
			}
			f = f[n:]
			sinceDeadline += n
		}
	}
	if err := rc.Flush(); err != nil {
		return err
	}
	if deadlineSet {
		if err := rc.SetWriteDeadline(time.Time{}); err != nil && !errors.Is(err, http.ErrNotSupported) {
			return err
		}
	}
	return nil
}
