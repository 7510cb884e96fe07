// Package httpapi serves a [herald.Hub] over HTTP: event streams, publishing
// and health checks.
package httpapi

import (
	"context"
	"encoding/json"
	"log/slog"
	"math"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/herald-sse/herald"
	"github.com/herald-sse/herald/sse"
)

// Defaults used when the corresponding [Handler] field is zero.
const (
	// DefaultMaxBodyBytes bounds a publish request body.
	DefaultMaxBodyBytes = 1 << 20
	// DefaultWriteTimeout is how long one write to a stream may block
	// before the client is considered stalled and dropped.
	DefaultWriteTimeout = 10 * time.Second
	// DefaultBodyReadTimeout bounds how long reading a publish body may
	// take, so a trickling publisher cannot hold a connection forever.
	DefaultBodyReadTimeout = 30 * time.Second
	// DefaultMaxSelectors bounds the topic selectors of one stream: each
	// costs an index entry in the hub, so a long query string must not
	// buy megabytes per connection.
	DefaultMaxSelectors = 256
	// DefaultRetry matches browsers' own default, for clients without one.
	DefaultRetry = 3 * time.Second
	// DefaultResetEvent names the event that says a resume was impossible.
	DefaultResetEvent = "herald.reset"
	// DefaultExpiredEvent names the last event of a stream whose token
	// expired.
	DefaultExpiredEvent = "herald.expired"
	// DefaultPublishMemoryBodies is MaxPublishMemory's default, in
	// bodies of MaxBodyBytes.
	DefaultPublishMemoryBodies = 64
	// DefaultPublishMemoryWait is how long a publish waits for room
	// under MaxPublishMemory before it gets 503.
	DefaultPublishMemoryWait = time.Second
	// PublishMemoryFactor is how many bytes of memory a publish reserves
	// under MaxPublishMemory per byte of body: the body, the JSON
	// decoder's growing copy of it, the event's data and its encoded
	// frame. A 1 MiB JSON publish allocates 8 bytes per body byte, 2 of
	// which (data and frame) the history keeps, within its own limits.
	PublishMemoryFactor = 6
)

// Handler is the HTTP API of a hub:
//
//	GET  /events?topic=SELECTOR[&topic=...]  event stream
//	POST /publish                             publish (JSON or form)
//	GET  /connections                         this node's streams, for publishers
//	GET  /cluster                             the cluster's nodes, for publishers
//	GET  /healthz                             liveness
//	GET  /readyz                              readiness: in sync, broker reachable
//	GET  /                                    Page, when set
//
// Set the fields before serving the first request.
type Handler struct {
	// Hub is where events are published and subscribed. Required.
	Hub *herald.Hub
	// MaxConnections caps concurrent streams; past it new streams get 503
	// with Retry-After. Zero means no cap.
	MaxConnections int
	// MaxConnectionsPerIP caps concurrent streams from one client address
	// (see TrustedProxies); past it new streams get 429 with Retry-After.
	// Zero means no cap.
	MaxConnectionsPerIP int
	// MaxConnectionsPerSubject caps concurrent streams of one
	// authenticated user (a token's sub); past it new streams get 429.
	// Zero means no cap.
	MaxConnectionsPerSubject int
	// TrustedProxies are the addresses of reverse proxies in front of the
	// hub. For a request from one of them, the client is the rightmost
	// address in X-Forwarded-For that is not itself a trusted proxy; from
	// anyone else, X-Forwarded-For is ignored (it is trivially forged).
	TrustedProxies []netip.Prefix
	// PublishRate limits each publisher (a token's subject; the client
	// address when publishing needs no token) to this many events per
	// second, with bursts of PublishBurst; beyond, 429 with Retry-After.
	// Zero means no limit.
	PublishRate float64
	// PublishBurst is the most events a publisher may send at once. Zero
	// means PublishRate rounded up (at least 1).
	PublishBurst int
	// MaxBodyBytes caps a publish body; larger bodies get 413. Zero means
	// DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// WriteTimeout is the deadline of each write to a stream; a client that
	// does not take the bytes in time is dropped. Zero means
	// DefaultWriteTimeout; negative disables the deadline.
	WriteTimeout time.Duration
	// BodyReadTimeout bounds reading a publish body; a publisher that
	// trickles it gets 408. Zero means DefaultBodyReadTimeout.
	BodyReadTimeout time.Duration
	// MaxSelectors caps the distinct topic selectors of one stream; more
	// get 400. Zero means DefaultMaxSelectors.
	MaxSelectors int
	// Retry is the reconnection delay sent at the start of every stream,
	// so every client waits the same after a disconnect. Zero means
	// DefaultRetry; negative sends none (clients keep their own default).
	Retry time.Duration
	// ResetEvent is the event type of the event a stream starts with when
	// the client asked to resume after an ID the hub cannot resume from
	// (unknown, expired, foreign). Its data is JSON: {"reason": ...,
	// "lastEventId": ..., "message": ...}. Empty means DefaultResetEvent.
	ResetEvent string
	// ExpiredEvent is the event type of the last event of a stream whose
	// token expired: a stream ends at its token's exp (the verifier's
	// clock-skew leeway accepts a token, it does not extend it), after
	// this event with data {"reason":"token_expired"}, so the application
	// can fetch a fresh token before its EventSource reconnects. Empty
	// means DefaultExpiredEvent.
	ExpiredEvent string
	// PublishAuth, if set, checks publishers: a publish needs a token
	// (401 without, with WWW-Authenticate) whose rights cover every topic
	// of every event (403 otherwise). GET /connections and GET /cluster
	// need a token with the publish right "*". Publishing needs an
	// explicit choice: without PublishAuth, and without OpenPublish,
	// POST /publish, GET /connections and GET /cluster get 403. It should
	// not take credentials from cookies: POST /publish accepts form
	// posts, which any site can make a browser send with its cookies.
	PublishAuth Authenticator
	// OpenPublish lets anyone publish (and read GET /connections and
	// GET /cluster) when PublishAuth is nil: for local development only.
	// It is ignored when PublishAuth is set.
	OpenPublish bool
	// MaxPublishMemory bounds the memory of the publish bodies being read
	// and decoded at once. Before reading a body, a publish reserves
	// PublishMemoryFactor times its Content-Length (MaxBodyBytes when the
	// length is unknown); past the bound it waits up to PublishMemoryWait,
	// then gets 503 with Retry-After. Zero means
	// DefaultPublishMemoryBodies times MaxBodyBytes.
	MaxPublishMemory int64
	// PublishMemoryWait is how long a publish may wait for
	// MaxPublishMemory to have room. Zero means DefaultPublishMemoryWait;
	// negative does not wait.
	PublishMemoryWait time.Duration
	// SubscribeAuth, if set, checks subscribers: a stream needs a token
	// whose subscribe rights cover every requested selector (403
	// otherwise), unless Anonymous. Nil lets anyone subscribe.
	SubscribeAuth Authenticator
	// Anonymous lets a stream without any token subscribe when
	// SubscribeAuth is set, to public events. Then any stream may ask for
	// any selector (what is public is open to all), and a token's rights
	// only decide which private events it sees. A token that is present
	// but invalid is still refused.
	Anonymous bool
	// AnnounceConnections gives each stream a connection ID, sent first
	// as a "herald.connected" event with data {"connection": ID}: events
	// published with that ID in ToConnections reach only that stream, and
	// GET /connections (publisher token needed when PublishAuth is set)
	// lists the open streams.
	AnnounceConnections bool
	// CORSOrigins lists the origins of other sites whose pages may use
	// the API from a browser: exact origins ("https://app.example.com")
	// and subdomain patterns ("https://*.example.com"), with credentials
	// (cookies), or "*": any other origin, without credentials (answered
	// "Access-Control-Allow-Origin: *", and a cookie it sends does not
	// authenticate). When set, a request from an origin not allowed is
	// refused with 403, and preflights (OPTIONS) are answered. Empty
	// means no CORS: only same-origin pages can read responses. Check
	// entries with ValidateOrigin.
	CORSOrigins []string
	// Page, if set, is served at "/" (the embedded web page, for example).
	Page http.Handler
	// Logger receives one record per rejected request and per dropped
	// stream. Nil means slog.Default().
	Logger *slog.Logger

	streams     atomic.Int64 // open streams, counted exactly for MaxConnections
	publishers  publishLimiters
	conns       connectionRegistry
	perMu       sync.Mutex
	perIP       map[netip.Addr]int // open streams per client, when MaxConnectionsPerIP is set
	perSubject  map[string]int     // open streams per token subject, when MaxConnectionsPerSubject is set
	frameSlices sync.Pool          // *[][]byte for draining queues, so idle streams hold none

	idleMu      sync.Mutex
	idleWaiters []chan struct{} // closed when streams drops to zero

	publishMem byteSemaphore // MaxPublishMemory, reserved by publishes being read and decoded
}

// ServeHTTP routes a request to the endpoint for its path.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if bodyUnread(r) {
		// Unless a handler reads the body (and then lifts this), net/http
		// would read and discard it before answering, with no deadline: a
		// client that never sends it would hold the connection (and a
		// stream slot) and never see the answer.
		w.Header().Set("Connection", "close")
	}
	if len(r.TransferEncoding) > 0 {
		// net/http drops a Content-Length sent with chunked encoding, so
		// the handler cannot tell such a request (a smuggling attempt
		// behind a proxy that reads the Content-Length) from a plain
		// chunked one: neither is served, and the connection closes.
		w.Header().Set("Connection", "close")
		h.fail(w, r, http.StatusBadRequest, "Transfer-Encoding is not accepted: send the body with a Content-Length")
		return
	}
	r, ok := h.applyCORS(w, r)
	if !ok {
		return
	}
	switch r.URL.Path {
	case "/events":
		if allowMethods(h, w, r, http.MethodGet) {
			h.serveStream(w, r)
		}
	case "/publish":
		if allowMethods(h, w, r, http.MethodPost) {
			h.servePublish(w, r)
		}
	case "/connections":
		if allowMethods(h, w, r, http.MethodGet) {
			h.serveConnections(w, r)
		}
	case "/healthz":
		if allowMethods(h, w, r, http.MethodGet, http.MethodHead) {
			writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
		}
	case "/readyz":
		if allowMethods(h, w, r, http.MethodGet, http.MethodHead) {
			h.serveReady(w, r)
		}
	case "/cluster":
		if allowMethods(h, w, r, http.MethodGet) {
			h.serveCluster(w, r)
		}
	case "/":
		if h.Page == nil {
			h.fail(w, r, http.StatusNotFound, "not found")
		} else if allowMethods(h, w, r, http.MethodGet, http.MethodHead) {
			h.Page.ServeHTTP(w, r)
		}
	default:
		h.fail(w, r, http.StatusNotFound, "not found")
	}
}

// ActiveStreams returns the number of streams being served.
func (h *Handler) ActiveStreams() int { return int(h.streams.Load()) }

// owner is who holds a connection slot: the client address and, when
// authenticated, the token's subject.
type owner struct {
	ip      netip.Addr
	subject string
}

// acquireStream takes a connection slot for a stream of o, or answers why
// not (the status and message of the refusal). A compare-and-swap loop
// rather than add-then-undo keeps the total exact: a transient overshoot
// would refuse a request that arrived while a slot was in fact free.
func (h *Handler) acquireStream(o owner) (status int, msg string) {
	if !take(&h.perMu, &h.perIP, o.ip, h.MaxConnectionsPerIP) {
		return http.StatusTooManyRequests, "too many streams from this address"
	}
	if o.subject != "" && !take(&h.perMu, &h.perSubject, o.subject, h.MaxConnectionsPerSubject) {
		give(&h.perMu, &h.perIP, o.ip, h.MaxConnectionsPerIP)
		return http.StatusTooManyRequests, "too many streams for this user"
	}
	for {
		n := h.streams.Load()
		if h.MaxConnections > 0 && n >= int64(h.MaxConnections) {
			h.releaseOwner(o)
			return http.StatusServiceUnavailable, "too many connections"
		}
		if h.streams.CompareAndSwap(n, n+1) {
			return 0, ""
		}
	}
}

// take counts one more stream for key unless it has limit already; a
// limit of 0 counts nothing.
func take[K comparable](mu *sync.Mutex, counts *map[K]int, key K, limit int) bool {
	if limit <= 0 {
		return true
	}
	mu.Lock()
	defer mu.Unlock()
	if (*counts)[key] >= limit {
		return false
	}
	if *counts == nil {
		*counts = make(map[K]int)
	}
	(*counts)[key]++
	return true
}

// give undoes take. The map is read under mu, like take's, since take
// may be making it.
func give[K comparable](mu *sync.Mutex, counts *map[K]int, key K, limit int) {
	if limit <= 0 {
		return
	}
	mu.Lock()
	defer mu.Unlock()
	if (*counts)[key]--; (*counts)[key] <= 0 {
		delete(*counts, key)
	}
}

func (h *Handler) releaseOwner(o owner) {
	give(&h.perMu, &h.perIP, o.ip, h.MaxConnectionsPerIP)
	if o.subject != "" {
		give(&h.perMu, &h.perSubject, o.subject, h.MaxConnectionsPerSubject)
	}
}

// releaseStream gives back the slot acquireStream took for o.
func (h *Handler) releaseStream(o owner) {
	h.releaseOwner(o)
	if h.streams.Add(-1) == 0 {
		h.idleMu.Lock()
		for _, c := range h.idleWaiters {
			close(c)
		}
		h.idleWaiters = nil
		h.idleMu.Unlock()
	}
}

// clientIP is the address of the client a request comes from: the peer,
// or, when the peer is a trusted proxy, the rightmost untrusted address
// of X-Forwarded-For.
func (h *Handler) clientIP(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	ip := ap.Addr().Unmap()
	if !h.trusted(ip) {
		return ip
	}
	hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		hop, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			return ip // a malformed hop: trust nothing further
		}
		if hop = hop.Unmap(); !h.trusted(hop) {
			return hop
		}
		ip = hop
	}
	return ip
}

func (h *Handler) trusted(ip netip.Addr) bool {
	for _, p := range h.TrustedProxies {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// WaitStreams waits until no stream is open, or ctx ends. After the hub is
// closed every stream sends what it has queued and ends, so a graceful
// shutdown is: stop accepting, close the hub, WaitStreams.
func (h *Handler) WaitStreams(ctx context.Context) error {
	for {
		h.idleMu.Lock()
		if h.streams.Load() == 0 {
			h.idleMu.Unlock()
			return nil
		}
		c := make(chan struct{})
		h.idleWaiters = append(h.idleWaiters, c)
		h.idleMu.Unlock()
		select {
		case <-c:
		case <-ctx.Done():
			h.idleMu.Lock()
			h.idleWaiters = slices.DeleteFunc(h.idleWaiters, func(w chan struct{}) bool { return w == c })
			h.idleMu.Unlock()
			return ctx.Err()
		}
	}
}

func (h *Handler) logger() *slog.Logger {
	if h.Logger != nil {
		return h.Logger
	}
	return slog.Default()
}

func (h *Handler) writeTimeout() time.Duration {
	if h.WriteTimeout == 0 {
		return DefaultWriteTimeout
	}
	return h.WriteTimeout
}

func (h *Handler) retry() time.Duration {
	if h.Retry == 0 {
		return DefaultRetry
	}
	return h.Retry
}

func (h *Handler) resetEvent() string {
	if h.ResetEvent != "" && sse.ValidateType(h.ResetEvent) == nil {
		return h.ResetEvent
	}
	return DefaultResetEvent
}

func (h *Handler) expiredEvent() string {
	if h.ExpiredEvent != "" && sse.ValidateType(h.ExpiredEvent) == nil {
		return h.ExpiredEvent
	}
	return DefaultExpiredEvent
}

func (h *Handler) publishBurst() int {
	if h.PublishBurst > 0 {
		return h.PublishBurst
	}
	return max(1, int(math.Ceil(h.PublishRate)))
}

func (h *Handler) bodyReadTimeout() time.Duration {
	if h.BodyReadTimeout > 0 {
		return h.BodyReadTimeout
	}
	return DefaultBodyReadTimeout
}

func (h *Handler) maxSelectors() int {
	if h.MaxSelectors > 0 {
		return h.MaxSelectors
	}
	return DefaultMaxSelectors
}

func (h *Handler) maxBodyBytes() int64 {
	if h.MaxBodyBytes > 0 {
		return h.MaxBodyBytes
	}
	return DefaultMaxBodyBytes
}

// allowMethods answers 405 with an Allow header unless r uses one of
// methods.
func allowMethods(h *Handler, w http.ResponseWriter, r *http.Request, methods ...string) bool {
	for _, m := range methods {
		if r.Method == m {
			return true
		}
	}
	w.Header().Set("Allow", strings.Join(methods, ", "))
	h.fail(w, r, http.StatusMethodNotAllowed, "method "+r.Method+" not allowed; use "+strings.Join(methods, " or "))
	return false
}

// fail answers a rejected request with a JSON error body and logs it: the
// one place a bad request is logged.
func (h *Handler) fail(w http.ResponseWriter, r *http.Request, status int, msg string) {
	h.logger().LogAttrs(r.Context(), slog.LevelWarn, "request rejected",
		slog.Int("status", status),
		slog.String("error", msg),
		slog.String("method", r.Method),
		slog.String("path", r.URL.Path),
		slog.String("remote", r.RemoteAddr),
	)
	writeJSON(w, status, errorBody{Error: msg})
}

// failWithReason is fail with a machine-readable reason in the body.
func (h *Handler) failWithReason(w http.ResponseWriter, r *http.Request, status int, msg, reason string) {
	h.logger().LogAttrs(r.Context(), slog.LevelWarn, "request rejected",
		slog.Int("status", status),
		slog.String("error", msg),
		slog.String("reason", reason),
		slog.String("method", r.Method),
		slog.String("path", r.URL.Path),
		slog.String("remote", r.RemoteAddr),
	)
	writeJSON(w, status, errorBody{Error: msg, Reason: reason})
}

// bodyUnread reports whether r may still have body bytes on the wire.
func bodyUnread(r *http.Request) bool {
	return r.Body != http.NoBody && (r.ContentLength != 0 || len(r.TransferEncoding) > 0)
}

type errorBody struct {
	Error  string `json:"error"`
	Reason string `json:"reason,omitempty"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		body = []byte(`{"error":"internal error"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
}

// NewServer returns an http.Server for h with timeouts that protect against
// slow clients without cutting long-lived streams: headers must arrive in
// time, but there is no absolute WriteTimeout or ReadTimeout (either would
// end every stream); streams use a deadline per write instead. It sets
// [ConnContext], so plain HTTP/1.1 streams are served by the shared engine.
//
// An HTTP/2 connection that nothing can be written to for the handler's
// WriteTimeout (DefaultWriteTimeout if h is not a *Handler) is closed:
// its client stopped reading every stream on it, and a stream's own
// deadline cannot free what waits behind a blocked socket.
//
// Streams served by the engine are not tracked by the server: after
// [http.Server.Shutdown], close the hub and wait with
// [Handler.WaitStreams] for them to end.
func NewServer(addr string, h http.Handler) *http.Server {
	connTimeout := DefaultWriteTimeout
	if hh, ok := h.(*Handler); ok {
		connTimeout = max(hh.writeTimeout(), 0)
	}
	return &http.Server{
		HTTP2:             &http.HTTP2Config{WriteByteTimeout: connTimeout},
		Addr:              addr,
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ConnContext:       ConnContext,
	}
}
