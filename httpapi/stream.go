package httpapi

import (
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/herald-sse/herald"
)

// openingComment is written at once so that proxies and clients see the
// response headers without waiting for the first event.
var openingComment = []byte(":\n")

// serveStream subscribes to the selectors in the query and writes events
// until the client goes away, the hub closes, or the client is too slow.
func (h *Handler) serveStream(w http.ResponseWriter, r *http.Request) {
	raw := r.URL.Query()["topic"]
	if len(raw) == 0 {
		h.fail(w, r, http.StatusBadRequest, `missing "topic" query parameter`)
		return
	}
	selectors := make([]herald.Selector, 0, len(raw))
	for _, s := range raw {
		sel, err := herald.ParseSelector(s)
		if err != nil {
			h.fail(w, r, http.StatusBadRequest, err.Error())
			return
		}
		selectors = append(selectors, sel)
	}

	if !h.acquireStream() {
		w.Header().Set("Retry-After", "5")
		h.fail(w, r, http.StatusServiceUnavailable, "too many connections")
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

	hdr := w.Header()
	hdr.Set("Content-Type", "text/event-stream")
	hdr.Set("Cache-Control", "no-cache")
	hdr.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)

	// ResponseController reaches Flush and the write deadline through
	// middleware wrappers that hide http.Flusher.
	rc := http.NewResponseController(w)
	if err := h.write(w, rc, openingComment); err != nil {
		return
	}
	for {
		select {
		case <-r.Context().Done():
			return
		case <-sub.Ready():
			if err := h.writeQueued(w, rc, sub); err != nil {
				h.logger().LogAttrs(r.Context(), slog.LevelInfo, "stream write failed",
					slog.String("remote", r.RemoteAddr), slog.String("error", err.Error()))
				return
			}
		case <-sub.Done():
			if errors.Is(sub.Err(), herald.ErrSlowSubscriber) {
				h.logger().LogAttrs(r.Context(), slog.LevelWarn, "slow stream dropped",
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

// writeQueued writes everything queued for sub in one write.
func (h *Handler) writeQueued(w http.ResponseWriter, rc *http.ResponseController, sub *herald.Subscriber) error {
	bp, _ := h.bufs.Get().(*[]byte)
	if bp == nil {
		bp = new([]byte)
	}
	buf := sub.Drain((*bp)[:0])
	var err error
	if len(buf) > 0 {
		err = h.write(w, rc, buf)
	}
	// Do not pool the buffer of a rare huge burst: it would pin memory.
	if cap(buf) <= 64<<10 {
		*bp = buf[:0]
		h.bufs.Put(bp)
	}
	return err
}

// write writes p and flushes it under the per-write deadline.
func (h *Handler) write(w http.ResponseWriter, rc *http.ResponseController, p []byte) error {
	if d := h.writeTimeout(); d > 0 {
		if err := rc.SetWriteDeadline(time.Now().Add(d)); err != nil && !errors.Is(err, http.ErrNotSupported) {
			return err
		}
	}
	if _, err := w.Write(p); err != nil {
		return err
	}
	return rc.Flush()
}
