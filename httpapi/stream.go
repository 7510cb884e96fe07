package httpapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"sync/atomic"
	"time"

	"github.com/herald-sse/herald"
	"github.com/herald-sse/herald/internal/netpoll"
	"github.com/herald-sse/herald/sse"
)

// openingComment is written at once so that proxies and clients see the
// response headers without waiting for the first event.
var openingComment = []byte(":\n")

// lastEventID is where the client asks to resume: the Last-Event-ID
// header a reconnecting EventSource sends, else a query parameter, which
// a first connection can set (EventSource cannot set headers). Both
// spellings Mercure clients use are accepted.
func lastEventID(r *http.Request) string {
	if id := r.Header.Get("Last-Event-ID"); id != "" {
		return id
	}
	q := r.URL.Query()
	for _, k := range []string{"lastEventId", "lastEventID", "last_event_id"} {
		if id := q.Get(k); id != "" {
			return id
		}
	}
	return ""
}

// opening is what a stream starts with: a comment so that the headers
// leave at once, the reconnection delay, the connection ID when
// announced, and a reset event if the subscriber could not resume where
// it asked.
func (h *Handler) opening(sub *herald.Subscriber, connID string) [][]byte {
	frames := [][]byte{openingComment}
	if retry := h.retry(); retry > 0 {
		frames = append(frames, sse.AppendRetry(nil, retry))
	}
	if connID != "" {
		data, _ := json.Marshal(map[string]string{"connection": connID})
		// No id field: the client's Last-Event-ID stays its place in
		// the history.
		frame, _ := sse.AppendEvent(nil, &sse.Event{Type: connectedEvent, Data: string(data)})
		frames = append(frames, frame)
	}
	if rs := sub.Reset(); rs != nil {
		data, _ := json.Marshal(resetBody{
			Reason:      rs.Reason,
			LastEventID: rs.LastEventID,
			Message:     resetMessages[rs.Reason],
		})
		frame, err := sse.AppendEvent(nil, &sse.Event{
			ID: rs.ResumeID, ClearID: rs.ResumeID == "",
			Type: h.resetEvent(), Data: string(data),
		})
		if err == nil { // the event name was validated; ids are the hub's own
			frames = append(frames, frame)
		}
	}
	return frames
}

// resetBody is the data of the reset event.
type resetBody struct {
	Reason      string `json:"reason"`
	LastEventID string `json:"lastEventId"`
	Message     string `json:"message"`
}

// expiredFrame is the last event of a stream whose token expired. It has
// no id field: the client's Last-Event-ID stays its place in the history,
// so reconnecting with a fresh token resumes without a gap.
func (h *Handler) expiredFrame() []byte {
	frame, _ := sse.AppendEvent(nil, &sse.Event{Type: h.expiredEvent(), Data: `{"reason":"token_expired"}`})
	return frame
}

var resetMessages = map[string]string{
	herald.ResetUnknown: "this hub never issued the last event ID; events may have been missed: reload state",
	herald.ResetExpired: "events after the last event ID are no longer retained: reload state",
	herald.ResetForeign: "the last event ID comes from another history (the hub's store was replaced): reload state",
}

// maxWriteChunk is how much a client must take within one WriteTimeout:
// the deadline is renewed after each chunk, so a client that reads slowly
// but steadily is not cut off in the middle of a large batch.
const maxWriteChunk = 64 << 10

// serveStream subscribes to the selectors in the query and writes events
// until the client goes away, the hub closes, or the client is too slow.
func (h *Handler) serveStream(w http.ResponseWriter, r *http.Request) {
	if bodyUnread(r) {
		h.fail(w, r, http.StatusBadRequest, "a stream request must not have a body")
		return
	}
	selectors, raw, err := h.parseSelectors(r)
	if err != nil {
		h.fail(w, r, http.StatusBadRequest, err.Error())
		return
	}
	opts := herald.SubscribeOptions{Selectors: selectors, LastEventID: lastEventID(r), Context: r.Context()}
	if h.SubscribeAuth != nil {
		id, ok := h.authenticate(w, r, h.SubscribeAuth, h.Anonymous)
		if !ok {
			return
		}
		if msg, ok := authorizeSubscribe(id, selectors, h.Anonymous); !ok {
			h.forbid(w, r, msg)
			return
		}
		if id != nil && id.Subject == "" && h.MaxConnectionsPerSubject > 0 {
			// A token without sub names no user to count it against.
			h.failWithReason(w, r, http.StatusForbidden, "the token has no sub claim: streams are capped per subject (--max-connections-per-subject)", "missing_subject")
			return
		}
		if id != nil {
			// Private events need a subscribe right for one of their
			// topics; targeted ones, this subject.
			opts.Subject, opts.Rights = id.Subject, id.Subscribe
			// The stream ends when the token does.
			opts.Expires = id.Expires
		}
	}

	if h.AnnounceConnections {
		opts.ConnectionID = newConnectionID()
	}
	o := owner{ip: h.clientIP(r), subject: opts.Subject}
	if status, msg := h.acquireStream(o); status != 0 {
		w.Header().Set("Retry-After", "5")
		h.fail(w, r, status, msg)
		return
	}

	if e := engineFor(w, r); e != nil && h.serveHijacked(w, r, e, opts, raw, o) {
		return
	}
	defer h.releaseStream(o)

	sub, err := h.Hub.SubscribeWith(opts)
	if err != nil {
		h.subscribeFailed(w, r, err)
		return
	}
	defer sub.Close()
	if opts.ConnectionID != "" {
		h.conns.add(&connection{ID: opts.ConnectionID, Subject: opts.Subject, Topics: raw, Remote: r.RemoteAddr, Since: time.Now()})
		defer h.conns.remove(opts.ConnectionID)
	}
	setStreamHeaders(w.Header())
	w.WriteHeader(http.StatusOK)

	log := h.logger()
	started := time.Now()
	log.LogAttrs(r.Context(), slog.LevelDebug, "stream opened",
		slog.String("remote", r.RemoteAddr), slog.Any("topics", raw))
	defer func() {
		log.LogAttrs(r.Context(), slog.LevelDebug, "stream closed",
			slog.String("remote", r.RemoteAddr), slog.Duration("duration", time.Since(started)))
	}()

	out := h.newStreamOutput(w, r, raw)
	if err := out.write(h.opening(sub, opts.ConnectionID)...); err != nil {
		out.cutIfStalled(err)
		return
	}
	if err := sub.Replay(func(frames [][]byte) error { return out.write(frames...) }); err != nil {
		if errors.Is(err, herald.ErrSlowSubscriber) {
			log.LogAttrs(r.Context(), slog.LevelWarn, "slow stream dropped",
				slog.String("remote", r.RemoteAddr), slog.Any("topics", raw))
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
					slog.String("remote", r.RemoteAddr), slog.Any("topics", raw))
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

// engineFor returns the shared engine if r's stream can be served by it:
// HTTP/1.1 over a plain socket that ConnContext recorded, answered through
// net/http's own ResponseWriter or a wrapper that offers Hijack itself. TLS
// and HTTP/2 streams are encrypted or multiplexed by net/http, and a
// wrapper that hides Hijack, or one that set Content-Encoding, may be
// transforming the body: all of those stay on the ordinary path.
func engineFor(w http.ResponseWriter, r *http.Request) *engine {
	if r.TLS != nil || r.ProtoMajor != 1 || r.ProtoMinor != 1 {
		return nil
	}
	if _, ok := w.(http.Hijacker); !ok || w.Header().Get("Content-Encoding") != "" {
		return nil
	}
	c, _ := r.Context().Value(connContextKey{}).(net.Conn)
	if c == nil {
		return nil
	}
	if _, ok := netpoll.RawConn(c); !ok {
		return nil
	}
	return sharedEngine()
}

// setStreamHeaders sets the headers of a stream response.
func setStreamHeaders(hdr http.Header) {
	hdr.Set("Content-Type", "text/event-stream")
	hdr.Set("Cache-Control", "no-cache")
	hdr.Set("X-Accel-Buffering", "no")
}

// parseSelectors reads the topic selectors of a stream request, without
// duplicates, within MaxSelectors.
func (h *Handler) parseSelectors(r *http.Request) ([]herald.Selector, []string, error) {
	query, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, nil, fmt.Errorf("malformed query string: %v", err)
	}
	raw := slices.Compact(slices.Sorted(slices.Values(query["topic"])))
	if len(raw) == 0 {
		return nil, nil, errors.New(`missing "topic" query parameter`)
	}
	if max := h.maxSelectors(); len(raw) > max {
		return nil, nil, fmt.Errorf("too many topic selectors: %d, at most %d", len(raw), max)
	}
	selectors := make([]herald.Selector, len(raw))
	for i, s := range raw {
		if selectors[i], err = herald.ParseSelector(s); err != nil {
			return nil, nil, err
		}
	}
	return selectors, raw, nil
}

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
var errWriteStalled = fmt.Errorf("%w (%w)", errWriteTimeout, os.ErrDeadlineExceeded)

// cutIfStalled cuts the stream if err says the client stopped reading:
// a clean end would only block behind what it did not take. After a
// write was given up on (errWriteStalled) the handler must not return
// normally either, since the helper goroutine may still be writing.
func (o *streamOutput) cutIfStalled(err error) {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		o.h.logger().LogAttrs(o.r.Context(), slog.LevelWarn, "slow stream dropped",
			slog.String("remote", o.r.RemoteAddr), slog.Any("topics", o.topics), slog.String("error", errWriteTimeout.Error()))
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
