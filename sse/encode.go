package sse

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ErrInvalidID is returned for an event ID that a client could not store:
// a CR or LF would end the id line early and let the rest of the value be
// read as further fields, and the spec makes clients ignore any id that
// contains NUL, so such an id would silently not be remembered.
var ErrInvalidID = errors.New("sse: invalid event id")

// ErrInvalidType is returned for an event type containing CR or LF, which
// would end the event line early and let the remainder inject fields.
var ErrInvalidType = errors.New("sse: invalid event type")

// Event is one message to write to an event stream.
//
// The zero value other than Data is the common case: an unnamed event that
// clients receive as type "message" and that leaves their last event ID
// alone.
type Event struct {
	// ID is written as "id: <ID>" when non-empty. Clients send the last one
	// they saw back in the Last-Event-ID header when they reconnect, so it
	// should identify a position the server can resume from.
	ID string
	// ClearID, when ID is empty, writes a bare "id:" line. That resets the
	// client's last event ID, so its next reconnect carries no
	// Last-Event-ID; because that is rarely wanted, an empty ID is never
	// written by accident.
	ClearID bool
	// Type is written as "event: <Type>" when non-empty; clients dispatch
	// the event under this name instead of "message".
	Type string
	// Data is always written, even when empty, because a client dispatches
	// nothing for an event without data. It is split on CRLF, CR and LF
	// into one data line per piece; clients join the pieces with LF.
	Data string
	// Retry, when at least one millisecond, tells the client how long to
	// wait before reconnecting. The wire format carries whole
	// milliseconds, so sub-millisecond parts are dropped.
	Retry time.Duration
}

// ValidateID reports whether id can be sent as an event ID. The returned
// error wraps ErrInvalidID and says which byte is at fault, so a caller can
// log it without echoing the possibly hostile value.
func ValidateID(id string) error {
	for i := 0; i < len(id); i++ {
		switch id[i] {
		case '\r', '\n', 0:
			return fmt.Errorf("%w: %s at byte %d", ErrInvalidID, byteName(id[i]), i)
		}
	}
	return nil
}

// ValidateType reports whether typ can be sent as an event type. NUL is
// allowed here, unlike in ids, because clients keep it in the type. The
// returned error wraps ErrInvalidType.
func ValidateType(typ string) error {
	for i := 0; i < len(typ); i++ {
		switch typ[i] {
		case '\r', '\n':
			return fmt.Errorf("%w: %s at byte %d", ErrInvalidType, byteName(typ[i]), i)
		}
	}
	return nil
}

func byteName(c byte) string {
	switch c {
	case '\r':
		return "CR"
	case '\n':
		return "LF"
	default:
		return "NUL"
	}
}

// AppendEvent appends the wire encoding of e to dst and returns the
// extended buffer. Appending to a caller-owned buffer lets a server encode
// every event without allocating once the buffer has grown.
//
// Fields are written in the order id, event, retry, data, followed by the
// blank line that makes the client dispatch the event. An invalid e.ID or
// e.Type is reported (see ValidateID and ValidateType) with dst returned
// unchanged, rather than being escaped or dropped, because either would
// silently change what the client sees.
//
// The bytes of ID, Type and Data are written as they are; clients decode
// them as UTF-8 and replace invalid sequences with U+FFFD.
func AppendEvent(dst []byte, e *Event) ([]byte, error) {
	if err := ValidateID(e.ID); err != nil {
		return dst, err
	}
	if err := ValidateType(e.Type); err != nil {
		return dst, err
	}
	if e.ID != "" {
		dst = append(dst, "id: "...)
		dst = append(dst, e.ID...)
		dst = append(dst, '\n')
	} else if e.ClearID {
		dst = append(dst, "id:\n"...)
	}
	if e.Type != "" {
		dst = append(dst, "event: "...)
		dst = append(dst, e.Type...)
		dst = append(dst, '\n')
	}
	if e.Retry >= time.Millisecond {
		dst = append(dst, "retry: "...)
		dst = strconv.AppendInt(dst, int64(e.Retry/time.Millisecond), 10)
		dst = append(dst, '\n')
	}
	dst = appendLines(dst, "data: ", e.Data)
	return append(dst, '\n'), nil
}

// AppendRetry appends a retry field telling the client to wait d before
// reconnecting, in whole milliseconds (E7). Like a comment it needs no
// blank line: the client applies it when it reads the line. A d under one
// millisecond appends nothing.
func AppendRetry(dst []byte, d time.Duration) []byte {
	if d < time.Millisecond {
		return dst
	}
	dst = append(dst, "retry: "...)
	dst = strconv.AppendInt(dst, int64(d/time.Millisecond), 10)
	return append(dst, '\n')
}

// AppendComment appends text as comment lines, which clients ignore. Its use
// is as a heartbeat: proxies and load balancers close connections that stay
// idle, and a comment every ~15 seconds keeps the stream busy without
// dispatching anything. Each line of text becomes ": <line>"; an empty text
// becomes a lone ":". No blank line follows, so a comment can sit anywhere,
// even between the fields of an event.
func AppendComment(dst []byte, text string) []byte {
	if text == "" {
		return append(dst, ":\n"...)
	}
	return appendLines(dst, ": ", text)
}

// appendLines writes prefix+piece+"\n" for every piece of s split on CRLF,
// CR and LF. Splitting on LF alone would leave a bare CR in the output,
// which the client treats as a line end, letting payload text become fields.
//
// The next LF is remembered between pieces so that a payload made of many
// CR-separated pieces is still scanned in linear time.
func appendLines(dst []byte, prefix, s string) []byte {
	lf := strings.IndexByte(s, '\n')
	if lf < 0 {
		lf = len(s)
	}
	start := 0
	for {
		if lf < start {
			lf = strings.IndexByte(s[start:], '\n')
			if lf < 0 {
				lf = len(s)
			} else {
				lf += start
			}
		}
		end := lf
		if cr := strings.IndexByte(s[start:lf], '\r'); cr >= 0 {
			end = start + cr
		}
		dst = append(dst, prefix...)
		dst = append(dst, s[start:end]...)
		dst = append(dst, '\n')
		if end == len(s) {
			return dst
		}
		start = end + 1
		if s[end] == '\r' && start < len(s) && s[start] == '\n' {
			start++
		}
	}
}
