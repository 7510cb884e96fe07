package httpapi

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"time"

	"github.com/herald-sse/herald"
	"github.com/herald-sse/herald/internal/netpoll"
)

// openingComment is written at once so that proxies and clients see the
// response headers without waiting for the first event.
var openingComment = []byte(":\n")

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

	if !h.acquireStream() {
		w.Header().Set("Retry-After", "5")
		h.fail(w, r, http.StatusServiceUnavailable, "too many connections")
		return
	}

	if e := engineFor(w, r); e != nil && h.serveHijacked(w, r, e, selectors, raw) {
		return
	}
	defer h.releaseStream()

	sub, err := h.Hub.Subscribe(selectors...)
	if err != nil {
		w.Header().Set("Retry-After", "5")
		h.fail(w, r, http.StatusServiceUnavailable, "hub is shutting down")
		return
	}
	defer sub.Close()
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

	// ResponseController reaches Flush and the write deadline through
	// middleware wrappers that hide http.Flusher.
	rc := http.NewResponseController(w)
	if err := h.writeFrames(w, rc, openingComment); err != nil {
		return
	}
	for {
		select {
		case <-r.Context().Done():
			return
		case <-sub.Ready():
			if err := h.writeQueued(w, rc, sub); err != nil {
				if errors.Is(err, os.ErrDeadlineExceeded) {
					log.LogAttrs(r.Context(), slog.LevelWarn, "slow stream dropped",
						slog.String("remote", r.RemoteAddr), slog.Any("topics", raw), slog.String("error", errWriteTimeout.Error()))
					panic(http.ErrAbortHandler)
				}
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
			// Shutdown: send what is already queued, then end cleanly so
			// the client reconnects (to this hub's successor).
			_ = h.writeQueued(w, rc, sub)
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

// writeQueued writes everything queued for sub, with one flush.
func (h *Handler) writeQueued(w http.ResponseWriter, rc *http.ResponseController, sub *herald.Subscriber) error {
	fp, _ := h.frameSlices.Get().(*[][]byte)
	if fp == nil {
		fp = new([][]byte)
	}
	frames := sub.Drain((*fp)[:0])
	err := h.writeFrames(w, rc, frames...)
	clear(frames) // drop references to shared frames before pooling
	if cap(frames) <= 1024 {
		*fp = frames[:0]
		h.frameSlices.Put(fp)
	}
	return err
}

// writeFrames writes frames and flushes once, renewing the write deadline
// for every maxWriteChunk bytes. net/http's buffers coalesce small frames,
// so a batch of queued events leaves in as few writes as its size allows.
func (h *Handler) writeFrames(w http.ResponseWriter, rc *http.ResponseController, frames ...[]byte) error {
	timeout := h.writeTimeout()
	sinceDeadline := maxWriteChunk
	for _, f := range frames {
		for len(f) > 0 {
			if sinceDeadline >= maxWriteChunk {
				if timeout > 0 {
					if err := rc.SetWriteDeadline(time.Now().Add(timeout)); err != nil && !errors.Is(err, http.ErrNotSupported) {
						return err
					}
				}
				sinceDeadline = 0
			}
			n := min(len(f), maxWriteChunk-sinceDeadline)
			if _, err := w.Write(f[:n]); err != nil {
				return err
			}
			f = f[n:]
			sinceDeadline += n
		}
	}
	return rc.Flush()
}
