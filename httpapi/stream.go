package httpapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"time"

	"github.com/herald-sse/herald"
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

	var t transport = goroutineTransport{}
	if e := h.engineFor(w, r); e != nil {
		t = engineTransport{e: e, fallback: t}
	}
	t.serve(h, w, r, &streamSpec{opts: opts, topics: raw, owner: o})
}

// streamSpec is what a stream is, as the handler decided from its
// request: what to subscribe to, as whom, from where to resume, and whose
// connection slot it holds.
type streamSpec struct {
	opts   herald.SubscribeOptions
	topics []string // the selectors as requested
	owner  owner
}

// A transport moves a stream's bytes to its client: the handler decides
// what a stream is, the transport how it reaches the socket. serve is
// called with the stream's connection slot taken, and gives it back once
// the stream is over.
type transport interface {
	serve(h *Handler, w http.ResponseWriter, r *http.Request, st *streamSpec)
}

// subscribeStream subscribes st and, when it has a connection ID, lists
// it in GET /connections. If the hub refuses, it answers the request and
// reports false.
func (h *Handler) subscribeStream(w http.ResponseWriter, r *http.Request, st *streamSpec) (*herald.Subscriber, bool) {
	sub, err := h.Hub.SubscribeWith(st.opts)
	if err != nil {
		h.subscribeFailed(w, r, err)
		return nil, false
	}
	if id := st.opts.ConnectionID; id != "" {
		h.conns.add(&connection{ID: id, Subject: st.opts.Subject, Topics: st.topics, Remote: r.RemoteAddr, Since: time.Now()})
	}
	return sub, true
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
