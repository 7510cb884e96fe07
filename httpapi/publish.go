package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"mime"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/herald-sse/herald"
)

// maxRetryMillis keeps a retry value representable as a time.Duration and
// sane for a client: about 24 days.
const maxRetryMillis = math.MaxInt32

// servePublish publishes the event (or batch) in the request body.
func (h *Handler) servePublish(w http.ResponseWriter, r *http.Request) {
	mediaType, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || (mediaType != "application/json" && mediaType != "application/x-www-form-urlencoded") {
		h.fail(w, r, http.StatusUnsupportedMediaType,
			"Content-Type must be application/json or application/x-www-form-urlencoded")
		return
	}

	var id *herald.Identity
	switch {
	case h.PublishAuth != nil:
		// Before reading the body: an unauthenticated publisher costs
		// nothing more.
		var ok bool
		if id, ok = h.authenticate(w, r, h.PublishAuth, false); !ok {
			return
		}
	case !h.OpenPublish:
		h.discardBody(w, r)
		h.failWithReason(w, r, http.StatusForbidden, errNoPublishChoice, "publishing_disabled")
		return
	}

	maxBody := h.maxBodyBytes()
	if r.ContentLength > maxBody {
		// Refused before reading: the connection closes (see ServeHTTP)
		// instead of taking in bytes that would be thrown away.
		h.fail(w, r, http.StatusRequestEntityTooLarge, fmt.Sprintf("body larger than %d bytes", maxBody))
		return
	}
	// The body's bytes are reserved before any is read, so concurrent
	// publishes cannot together hold more than MaxPublishMemory.
	size := maxBody
	if r.ContentLength >= 0 {
		size = r.ContentLength
	}
	limit := h.maxPublishMemory()
	reserved, ok := h.publishMem.acquire(r.Context(), size*PublishMemoryFactor, limit, h.publishMemoryWait())
	if !ok {
		h.discardBody(w, r)
		w.Header().Set("Retry-After", "1")
		h.failWithReason(w, r, http.StatusServiceUnavailable,
			"too many publish bodies being processed at once (see --max-publish-memory): retry", "overloaded")
		return
	}
	defer h.publishMem.release(reserved, limit)

	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Now().Add(h.bodyReadTimeout()))
	body, err := readBody(http.MaxBytesReader(w, r.Body, maxBody), r.ContentLength)
	if err != nil {
		var tooBig *http.MaxBytesError
		switch {
		case errors.As(err, &tooBig):
			h.fail(w, r, http.StatusRequestEntityTooLarge,
				fmt.Sprintf("body larger than %d bytes", tooBig.Limit))
		case errors.Is(err, os.ErrDeadlineExceeded):
			h.fail(w, r, http.StatusRequestTimeout,
				fmt.Sprintf("body not received within %v", h.bodyReadTimeout()))
		default:
			h.fail(w, r, http.StatusBadRequest, "body could not be read")
		}
		return
	}
	_ = rc.SetReadDeadline(time.Time{})
	w.Header().Del("Connection") // body read whole: the connection can be kept
	if !utf8.Valid(body) {
		// encoding/json would silently turn invalid bytes into U+FFFD and
		// publish something else than was sent.
		h.fail(w, r, http.StatusBadRequest, "body is not valid UTF-8")
		return
	}

	var events []herald.Event
	batch := false
	if mediaType == "application/json" {
		events, batch, err = decodeJSONEvents(body)
	} else {
		var e herald.Event
		e, err = decodeFormEvent(body)
		events = []herald.Event{e}
	}
	if err != nil {
		h.fail(w, r, http.StatusBadRequest, err.Error())
		return
	}

	if h.PublishAuth != nil {
		if msg, ok := authorizePublish(id, events); !ok {
			h.forbid(w, r, msg)
			return
		}
	}
	if h.PublishRate > 0 {
		key := "ip " + h.clientIP(r).String()
		if id != nil {
			key = "sub " + id.Subject
		}
		wait, ok := h.publishers.take(key, len(events), h.PublishRate, h.publishBurst(), time.Now())
		switch {
		case !ok:
			h.fail(w, r, http.StatusTooManyRequests, fmt.Sprintf("a batch of %d events is more than the %d a publisher may send at once", len(events), h.publishBurst()))
			return
		case wait > 0:
			w.Header().Set("Retry-After", retryAfter(wait))
			h.fail(w, r, http.StatusTooManyRequests, "publish rate limit exceeded")
			return
		}
	}

	ids, err := h.Hub.PublishContext(r.Context(), events...)
	switch {
	case errors.Is(err, herald.ErrInvalidEvent):
		h.fail(w, r, http.StatusBadRequest, err.Error())
		return
	case errors.Is(err, herald.ErrDuplicateID):
		h.fail(w, r, http.StatusConflict, err.Error())
		return
	case errors.Is(err, herald.ErrBrokerUnavailable):
		// Not acknowledged: the publisher retries (with its own IDs,
		// a retry of a publish that did land is refused as a
		// duplicate instead of doubling it).
		w.Header().Set("Retry-After", "1")
		h.fail(w, r, http.StatusServiceUnavailable, "events not published: "+err.Error())
		return
	case errors.Is(err, herald.ErrHubClosed):
		w.Header().Set("Retry-After", "5")
		h.fail(w, r, http.StatusServiceUnavailable, "hub is shutting down")
		return
	case err != nil:
		// The history could not store the events (a full or failing
		// disk): not acknowledged, so the publisher retries. Live
		// subscribers may have received them already.
		w.Header().Set("Retry-After", "5")
		h.fail(w, r, http.StatusServiceUnavailable, "events not stored: "+err.Error())
		return
	}
	if batch {
		writeJSON(w, http.StatusOK, map[string][]string{"ids": ids})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"id": ids[0]})
}

// errNoPublishChoice explains why a Handler with neither PublishAuth nor
// OpenPublish refuses to publish: secure by default, like herald serve.
const errNoPublishChoice = "publishing is not enabled: the server must set an authenticator (Handler.PublishAuth; herald serve: a key) or open publishing explicitly (Handler.OpenPublish; herald serve --open-publish)"

// discardBody reads and drops the body of a publish refused before it
// was read, so that a publisher still sending it reads the answer: a
// connection closed with unread bytes is reset by the kernel, which can
// destroy the answer on its way. It holds no memory (bytes are dropped as
// they come), reads at most MaxBodyBytes (beyond, net/http closes the
// connection after the answer, as for any body too large) and stops at
// the body read timeout. Once it read the whole body, the connection can
// be kept.
func (h *Handler) discardBody(w http.ResponseWriter, r *http.Request) {
	if !bodyUnread(r) || r.ContentLength > h.maxBodyBytes() {
		return
	}
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Now().Add(h.bodyReadTimeout()))
	_, err := io.Copy(io.Discard, http.MaxBytesReader(w, r.Body, h.maxBodyBytes()))
	_ = rc.SetReadDeadline(time.Time{})
	if err == nil {
		w.Header().Del("Connection")
	}
}

// readBody reads a body of n bytes (-1: unknown) into a buffer of its
// size, rather than letting io.ReadAll grow (and copy) one.
func readBody(r io.Reader, n int64) ([]byte, error) {
	if n < 0 {
		return io.ReadAll(r)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return nil, err
	}
	return body, nil
}

// jsonEvent is one event of a JSON publish body.
type jsonEvent struct {
	Topic   string          `json:"topic"`
	Topics  []string        `json:"topics"`
	Data    json.RawMessage `json:"data"`
	Event   string          `json:"event"`
	ID      string          `json:"id"`
	Retry   *int64          `json:"retry"`
	Private bool            `json:"private"`
	To      *jsonRecipients `json:"to"`
}

// jsonRecipients restricts an event to users (token subjects) or
// connections.
type jsonRecipients struct {
	Users       []string `json:"users"`
	Connections []string `json:"connections"`
}

// decodeJSONEvents reads one event object, or an array of them (a batch).
func decodeJSONEvents(body []byte) (events []herald.Event, batch bool, err error) {
	trimmed := bytes.TrimLeft(body, " \t\r\n")
	if len(trimmed) == 0 {
		return nil, false, errors.New("empty body: expected a JSON object or array")
	}
	batch = trimmed[0] == '['
	if !batch && trimmed[0] != '{' {
		return nil, false, errors.New("body must be a JSON object or an array of objects")
	}

	var in []jsonEvent
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if batch {
		err = dec.Decode(&in)
	} else {
		in = make([]jsonEvent, 1)
		err = dec.Decode(&in[0])
	}
	if err != nil {
		return nil, batch, jsonError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, batch, errors.New("malformed JSON: unexpected data after the body")
	}
	if batch && len(in) == 0 {
		return nil, batch, errors.New("empty batch")
	}

	events = make([]herald.Event, len(in))
	for i := range in {
		events[i], err = in[i].event()
		if err != nil {
			if batch {
				err = fmt.Errorf("event %d: %w", i, err)
			}
			return nil, batch, err
		}
	}
	return events, batch, nil
}

func (j *jsonEvent) event() (herald.Event, error) {
	e := herald.Event{ID: j.ID, Type: j.Event, Private: j.Private}
	if j.To != nil {
		e.ToUsers, e.ToConnections = j.To.Users, j.To.Connections
		if !e.Targeted() {
			return e, errors.New(`"to" names no user and no connection`)
		}
	}
	e.Topics = topicList(j.Topic, j.Topics)
	if len(e.Topics) == 0 {
		return e, errors.New(`missing "topic" (or "topics")`)
	}
	switch {
	case len(j.Data) == 0 || string(j.Data) == "null":
		// Absent and null both mean no payload: an event with empty data.
	case j.Data[0] == '"':
		if err := json.Unmarshal(j.Data, &e.Data); err != nil {
			return e, jsonError(err)
		}
	default:
		var compact bytes.Buffer
		if err := json.Compact(&compact, j.Data); err != nil {
			return e, jsonError(err)
		}
		e.Data = compact.String()
	}
	if j.Retry != nil {
		retry, err := retryDuration(*j.Retry)
		if err != nil {
			return e, err
		}
		e.Retry = retry
	}
	return e, nil
}

// topicList merges "topic" and "topics", dropping duplicates so the hub
// sees each topic once. A list longer than herald.MaxEventTopics is left
// as is: the hub rejects it anyway, so deduplicating it would be wasted work.
func topicList(one string, many []string) []string {
	out := make([]string, 0, 1+len(many))
	if one != "" {
		out = append(out, one)
	}
	out = append(out, many...)
	if len(out) > herald.MaxEventTopics {
		return out
	}
	seen := make(map[string]bool, len(out))
	return slices.DeleteFunc(out, func(t string) bool {
		dup := seen[t]
		seen[t] = true
		return dup
	})
}

func retryDuration(ms int64) (time.Duration, error) {
	if ms < 0 || ms > maxRetryMillis {
		return 0, fmt.Errorf(`"retry" must be between 0 and %d milliseconds`, maxRetryMillis)
	}
	return time.Duration(ms) * time.Millisecond, nil
}

// jsonError rewords encoding/json errors so they name the problem in the
// request rather than Go types.
func jsonError(err error) error {
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syntax):
		return fmt.Errorf("malformed JSON at byte %d: %v", syntax.Offset, syntax)
	case errors.As(err, &typ):
		if typ.Field != "" {
			return fmt.Errorf("field %q: expected %s, got JSON %s", typ.Field, typ.Type.Kind(), typ.Value)
		}
		return fmt.Errorf("expected a JSON object, got JSON %s", typ.Value)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return errors.New("malformed JSON: body ends too early")
	}
	return fmt.Errorf("malformed JSON: %v", err)
}

// formFields are the fields a form publish may carry; only topic repeats.
var formFields = map[string]bool{"topic": true, "data": true, "event": true, "id": true, "retry": true, "private": true}

// formBools are the values a form's boolean field may have: "on" is what
// an HTML checkbox sends, empty what an unchecked one with a hidden
// default might.
var formBools = map[string]bool{"on": true, "true": true, "1": true, "off": false, "false": false, "0": false, "": false}

// decodeFormEvent reads an application/x-www-form-urlencoded publish, so
// that `curl -d topic=news -d data=hello` works.
func decodeFormEvent(body []byte) (herald.Event, error) {
	var e herald.Event
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return e, fmt.Errorf("malformed form body: %v", err)
	}
	for name, values := range form {
		if !formFields[name] {
			return e, fmt.Errorf("unknown field %q", name)
		}
		if name != "topic" && len(values) > 1 {
			return e, fmt.Errorf("field %q given %d times", name, len(values))
		}
	}
	e.Topics = topicList("", form["topic"])
	if len(e.Topics) == 0 {
		return e, errors.New(`missing "topic"`)
	}
	e.Data = form.Get("data")
	e.Type = form.Get("event")
	e.ID = form.Get("id")
	if v, ok := form["private"]; ok {
		private, ok := formBools[strings.ToLower(v[0])]
		if !ok {
			return e, errors.New(`"private" must be on, true or 1 (or off, false, 0, empty)`)
		}
		e.Private = private
	}
	if v, ok := form["retry"]; ok {
		ms, err := strconv.ParseInt(v[0], 10, 64)
		if err != nil {
			return e, errors.New(`"retry" must be a whole number of milliseconds`)
		}
		if e.Retry, err = retryDuration(ms); err != nil {
			return e, err
		}
	}
	return e, nil
}
