package httpapi

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync"

	"github.com/herald-sse/herald"
	"github.com/herald-sse/herald/internal/engine"
)

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

// The engine is shared by every Handler in the process, like Go's own
// network poller: a fixed set of goroutines however many handlers and
// streams. Its own messages (a failing poller) go to the logger of the
// handler that first needed it.
var (
	engineOnce   sync.Once
	sharedEngine *engine.Engine
)

// engineFor returns the shared engine if r's stream can be served by it:
// HTTP/1.1 over a plain socket that ConnContext recorded, answered through
// net/http's own ResponseWriter or a wrapper that offers Hijack itself. TLS
// and HTTP/2 streams are encrypted or multiplexed by net/http, and a
// wrapper that hides Hijack, or one that set Content-Encoding, may be
// transforming the body: all of those stay on the ordinary path.
func (h *Handler) engineFor(w http.ResponseWriter, r *http.Request) *engine.Engine {
	if r.TLS != nil || r.ProtoMajor != 1 || r.ProtoMinor != 1 {
		return nil
	}
	if _, ok := w.(http.Hijacker); !ok || w.Header().Get("Content-Encoding") != "" {
		return nil
	}
	if c, _ := r.Context().Value(connContextKey{}).(net.Conn); c == nil || !engine.CanServe(c) {
		return nil
	}
	engineOnce.Do(func() {
		e, err := engine.New(h.logger())
		if err != nil {
			if !errors.Is(err, engine.ErrUnsupported) {
				h.logger().Warn("herald: stream engine unavailable; serving streams with a goroutine each", "error", err)
			}
			return
		}
		sharedEngine = e
	})
	return sharedEngine
}

// engineTransport serves a stream from the shared engine: the connection
// is taken over (hijacked) and its socket handed to the engine's poller
// and writers. When the connection cannot be taken over it leaves the
// stream to fallback, having written nothing.
type engineTransport struct {
	e        *engine.Engine
	fallback transport
}

func (t engineTransport) serve(h *Handler, w http.ResponseWriter, r *http.Request, st *streamSpec) {
	s := t.e.NewStream()
	st.opts.Wake = s.Wake
	sub, ok := h.subscribeStream(w, r, st)
	if !ok {
		h.releaseStream(st.owner)
		return
	}
	conn, _, err := w.(http.Hijacker).Hijack()
	if err != nil {
		sub.Close()
		h.conns.remove(st.opts.ConnectionID)
		st.opts.Wake = nil
		t.fallback.serve(h, w, r, st)
		return
	}
	setStreamHeaders(w.Header())
	h.logger().LogAttrs(r.Context(), slog.LevelDebug, "stream opened",
		slog.String("remote", r.RemoteAddr), slog.Any("topics", st.topics))
	t.e.Serve(s, conn, sub, engine.Config{
		Header:       w.Header(),
		Opening:      h.opening(sub, st.opts.ConnectionID),
		WriteTimeout: h.writeTimeout(),
		Owner:        &engineStream{h: h, sub: sub, remote: r.RemoteAddr, owner: st.owner, connID: st.opts.ConnectionID},
	})
}

// engineStream is what the handler keeps of a stream the engine serves,
// until the engine reports its end.
type engineStream struct {
	h      *Handler
	sub    *herald.Subscriber
	remote string
	owner  owner  // whose connection slot the stream holds
	connID string // announced connection ID, if any
}

// Farewell is the last event of a stream the hub removed: the expired
// event when its token expired, nothing otherwise.
func (es *engineStream) Farewell(why error) []byte {
	if errors.Is(why, herald.ErrSubscriptionExpired) {
		return es.h.expiredFrame()
	}
	return nil
}

// Ended frees what the stream held and logs how it ended.
func (es *engineStream) Ended(end engine.End) {
	h := es.h
	es.sub.Close()
	h.conns.remove(es.connID)
	h.releaseStream(es.owner)

	log, ctx := h.logger(), context.Background()
	switch end.Reason {
	case engine.Slow:
		log.LogAttrs(ctx, slog.LevelWarn, "slow stream dropped",
			slog.String("remote", es.remote), slog.Any("topics", selectorNames(es.sub.Selectors())), slog.String("error", end.Err.Error()))
	case engine.Failed:
		log.LogAttrs(ctx, slog.LevelInfo, "stream write failed",
			slog.String("remote", es.remote), slog.String("error", end.Err.Error()))
	case engine.UnexpectedInput:
		log.LogAttrs(ctx, slog.LevelInfo, "stream ended",
			slog.String("remote", es.remote), slog.String("error", end.Err.Error()))
	case engine.ReplayStopped:
		if errors.Is(end.Err, herald.ErrHistoryLost) {
			log.LogAttrs(ctx, slog.LevelInfo, "replay overtaken by retention", slog.String("remote", es.remote))
		}
	}
	log.LogAttrs(ctx, slog.LevelDebug, "stream closed",
		slog.String("remote", es.remote), slog.Duration("duration", end.Duration))
}

func selectorNames(sels []herald.Selector) []string {
	names := make([]string, len(sels))
	for i, sel := range sels {
		names[i] = sel.String()
	}
	return names
}
