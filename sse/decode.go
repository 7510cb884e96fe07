package sse

import (
	"bytes"
	"errors"
	"io"
	"math"
	"time"
	"unicode/utf8"
)

// ErrEventTooLarge is returned by Decoder.Next when a line or the data of an
// event exceeds Decoder.MaxEventSize. It is sticky: the stream can no longer
// be interpreted the way the server meant it, so every later call returns it
// too.
var ErrEventTooLarge = errors.New("sse: event too large")

// errBadRead guards against a Reader that breaks the io.Reader contract,
// which would otherwise corrupt the buffer indices.
var errBadRead = errors.New("sse: reader returned an invalid count")

// Message is one event dispatched by a Decoder, as an EventSource would see
// it. Its strings are copies, so it stays valid after later calls to Next.
type Message struct {
	// LastEventID is the last event ID at dispatch time. It is not
	// necessarily set by this event: ids persist until the stream changes
	// them, which is what lets a client resume after any event.
	LastEventID string
	// Type is the event type; "message" when the stream set none, as for
	// EventSource's onmessage.
	Type string
	// Data is the event's data lines joined with LF.
	Data string
}

// Decoder reads events from an event stream, following the WHATWG
// "Interpreting an event stream" algorithm, so callers see exactly what a
// browser would: including its tolerance of CR, LF and CRLF line ends, its
// stripping of one leading BOM and its UTF-8 decoding with U+FFFD for
// invalid bytes.
//
// A Decoder buffers its input, so it may hold bytes read from r beyond the
// last returned event; it never reads while a complete event is buffered.
// It is not safe for concurrent use.
type Decoder struct {
	// MaxEventSize bounds memory use against a hostile or broken server:
	// when positive, a line or an event's data longer than this many bytes
	// makes Next return ErrEventTooLarge. Zero means no bound, so any line
	// is delivered whole however long it is.
	MaxEventSize int

	r   io.Reader
	err error // first error from r, returned once the buffer runs dry

	// buf[pos:w] is unconsumed input and buf[pos:scan] is known to contain
	// no CR or LF, so a long line that arrives in many reads is scanned
	// once. lf caches the next LF at or after scan (it is stale when below
	// scan), and lfTo marks how far a failed LF search got, so streams that
	// end lines with CR alone do not rescan the buffer for LF on every line.
	buf       []byte
	pos, w    int
	scan      int
	lf, lfTo  int
	crPending bool // last line ended in CR: a following LF belongs to it
	started   bool // the first line, which may start with a BOM, is done

	data      []byte        // data buffer, each line followed by LF
	typ       []byte        // event type buffer
	typeStr   string        // last type dispatched, reused to avoid allocating
	idBuf     string        // last event ID buffer (set by id fields)
	lastID    string        // last event ID string (committed at dispatch)
	retry     time.Duration // reconnection time from the last valid retry field
	sizeError bool
}

// NewDecoder returns a Decoder reading the event stream from r, which
// should start at the beginning of the response body: a BOM is only
// recognised as the first bytes the decoder sees.
func NewDecoder(r io.Reader) *Decoder {
	return &Decoder{r: r, lf: -1}
}

// LastEventID returns the last event ID as a reconnecting client would send
// it in Last-Event-ID. It changes only when an event is dispatched (a blank
// line), so an id in an event that was cut off by the end of the stream does
// not count, while an id in an event without data does.
func (d *Decoder) LastEventID() string { return d.lastID }

// Retry returns the reconnection time set by the last valid retry field, or
// 0 if there was none. Unlike ids, a retry field takes effect as soon as its
// line is read, even if its event is never dispatched.
func (d *Decoder) Retry() time.Duration { return d.retry }

// Next returns the next dispatched event. It returns as soon as the bytes
// read so far complete an event, without waiting for more input; this
// matters for a stream whose lines end in CR alone, where the decoder cannot
// know whether an LF will follow.
//
// At the end of the stream Next returns io.EOF and drops any event not yet
// ended by a blank line, as a browser does. Other read errors are returned
// unchanged, after the events buffered before them. Errors are sticky: once
// the input has failed, what follows it can no longer be trusted to line up
// with event boundaries, so a caller that wants to carry on reconnects and
// starts a new Decoder, sending LastEventID as Last-Event-ID.
func (d *Decoder) Next() (Message, error) {
	if d.sizeError {
		return Message{}, ErrEventTooLarge
	}
	for {
		line, err := d.readLine()
		if err != nil {
			return Message{}, d.fail(err)
		}
		msg, ok, err := d.processLine(line)
		if err != nil {
			return Message{}, d.fail(err)
		}
		if ok {
			return msg, nil
		}
	}
}

func (d *Decoder) fail(err error) error {
	if err == ErrEventTooLarge {
		d.sizeError = true
		d.data = d.data[:0]
	}
	return err
}

// readLine returns the next complete line without its line end. The slice
// aliases the buffer and is valid until the next call.
func (d *Decoder) readLine() ([]byte, error) {
	for {
		if d.crPending && d.pos < d.w {
			d.crPending = false
			if d.buf[d.pos] == '\n' {
				d.pos++
				d.scan = max(d.scan, d.pos)
			}
		}
		if i := d.findEOL(); i >= 0 {
			line := d.buf[d.pos:i]
			d.crPending = d.buf[i] == '\r'
			d.pos = i + 1
			d.scan = d.pos
			if d.MaxEventSize > 0 && len(line) > d.MaxEventSize {
				return nil, ErrEventTooLarge
			}
			return line, nil
		}
		if d.MaxEventSize > 0 && d.w-d.pos > d.MaxEventSize {
			return nil, ErrEventTooLarge
		}
		if d.err != nil {
			return nil, d.err
		}
		d.fill()
	}
}

// findEOL returns the index of the first CR or LF at or after d.scan, or -1
// after marking the whole buffer as scanned.
func (d *Decoder) findEOL() int {
	if d.lf < d.scan {
		from := max(d.scan, d.lfTo)
		if i := bytes.IndexByte(d.buf[from:d.w], '\n'); i >= 0 {
			d.lf = from + i
		} else {
			d.lf = -1
			d.lfTo = d.w
		}
	}
	limit := d.w
	if d.lf >= 0 {
		limit = d.lf
	}
	if i := bytes.IndexByte(d.buf[d.scan:limit], '\r'); i >= 0 {
		return d.scan + i
	}
	if d.lf >= 0 {
		return d.lf
	}
	d.scan = d.w
	return -1
}

const (
	minBufSize = 4096
	minRead    = 512
)

// fill reads more input, first moving the unconsumed partial line to the
// front of the buffer and growing the buffer when that line leaves too
// little room, so lines of any length fit.
func (d *Decoder) fill() {
	if d.pos > 0 {
		off := d.pos
		copy(d.buf, d.buf[off:d.w])
		d.w -= off
		d.scan -= off
		d.lf -= off
		d.lfTo = max(d.lfTo-off, 0)
		d.pos = 0
	}
	if len(d.buf)-d.w < minRead {
		nb := make([]byte, max(2*len(d.buf), minBufSize))
		copy(nb, d.buf[:d.w])
		d.buf = nb
	}
	// Like bufio, give up on a reader that keeps returning nothing.
	for range 100 {
		n, err := d.r.Read(d.buf[d.w:])
		if n < 0 || n > len(d.buf)-d.w {
			d.err = errBadRead
			return
		}
		d.w += n
		if err != nil {
			d.err = err
			return
		}
		if n > 0 {
			return
		}
	}
	d.err = io.ErrNoProgress
}

var bom = []byte("\xEF\xBB\xBF")

// processLine applies one line to the decoder state and reports whether it
// dispatched an event.
func (d *Decoder) processLine(line []byte) (Message, bool, error) {
	if !d.started {
		// The UTF-8 decode step strips one BOM, and only at the start.
		d.started = true
		line = bytes.TrimPrefix(line, bom)
	}
	if len(line) == 0 {
		return d.dispatch()
	}
	if line[0] == ':' {
		return Message{}, false, nil
	}
	name, value := line, []byte(nil)
	if i := bytes.IndexByte(line, ':'); i >= 0 {
		name, value = line[:i], line[i+1:]
		if len(value) > 0 && value[0] == ' ' {
			value = value[1:]
		}
	}
	switch string(name) {
	case "data":
		d.data = appendUTF8(d.data, value)
		if d.MaxEventSize > 0 && len(d.data) > d.MaxEventSize {
			return Message{}, false, ErrEventTooLarge
		}
		d.data = append(d.data, '\n')
	case "event":
		d.typ = appendUTF8(d.typ[:0], value)
	case "id":
		if bytes.IndexByte(value, 0) < 0 && string(value) != d.idBuf {
			if utf8.Valid(value) {
				d.idBuf = string(value)
			} else {
				d.idBuf = string(appendUTF8(nil, value))
			}
		}
	case "retry":
		if r, ok := parseRetry(value); ok {
			d.retry = r
		}
	}
	return Message{}, false, nil
}

// dispatch ends the current event at a blank line.
func (d *Decoder) dispatch() (Message, bool, error) {
	d.lastID = d.idBuf
	if len(d.data) == 0 {
		// An event without data is not dispatched, but it still commits
		// the id above and forgets its type.
		d.typ = d.typ[:0]
		return Message{}, false, nil
	}
	m := Message{
		LastEventID: d.lastID,
		Type:        "message",
		Data:        string(d.data[:len(d.data)-1]),
	}
	if len(d.typ) > 0 {
		if string(d.typ) != d.typeStr {
			d.typeStr = string(d.typ)
		}
		m.Type = d.typeStr
	}
	d.data = d.data[:0]
	d.typ = d.typ[:0]
	return m, true, nil
}

// maxRetryMillis is the largest whole number of milliseconds a
// time.Duration holds; larger retry values are clamped to it rather than
// overflowing into a negative delay.
const maxRetryMillis = math.MaxInt64 / int64(time.Millisecond)

// parseRetry accepts only ASCII digits, as the spec does: signs, spaces,
// fractions and the empty value make the field ignored.
func parseRetry(v []byte) (time.Duration, bool) {
	if len(v) == 0 {
		return 0, false
	}
	var n int64
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, false
		}
		if n <= (maxRetryMillis-int64(c-'0'))/10 {
			n = n*10 + int64(c-'0')
		} else {
			n = maxRetryMillis
		}
	}
	return time.Duration(n) * time.Millisecond, true
}
