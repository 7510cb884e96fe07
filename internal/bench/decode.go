package bench

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
)

// sink receives what a decoder finds in an event stream. Slices passed to
// it are only valid during the call.
type sink interface {
	// data is called for each data field; first is true for the first
	// one of an event.
	data(value []byte, first bool)
	// field is called for the other fields (event, id, retry and unknown
	// names), with the name as sent.
	field(name, value []byte)
	// dispatch is called at each blank line. hasData says whether the
	// event had a data field, which is when an EventSource dispatches it.
	dispatch(hasData bool)
}

// Decoder phases.
const (
	phHeaders   uint8 = iota // reading the status line and headers
	phChunkSize              // reading a chunk-size line
	phChunkExt               // skipping a chunk extension to LF
	phChunkLF                // chunk-size line ended in CR: LF must follow
	phChunkData              // inside chunk data (remaining bytes left)
	phChunkCR                // chunk data done: CR (or LF) must follow
	phChunkEnd               // CR after chunk data: LF must follow
	phTrailers               // after the last chunk: trailer lines to a blank one
	phLength                 // Content-Length body: remaining bytes left
	phClose                  // body delimited by the end of the connection
	phDone                   // the response ended
)

// Limits that keep a broken or hostile server from growing a stream's
// buffers without bound.
const (
	maxHeaderBytes = 64 << 10
	maxLineBytes   = 1 << 20
	// keepLineCap is the largest partial-line buffer kept between lines;
	// larger ones are dropped so an occasional long line costs memory
	// only while it lasts.
	keepLineCap = 512
)

// Decoding errors. They are values so that failing costs no allocation and
// results can count them by message.
var (
	errHeaderTooLarge = errors.New("response headers over 64 KiB")
	errLineTooLong    = errors.New("event-stream line over 1 MiB")
	errBadStatusLine  = errors.New("malformed HTTP status line")
	errBadChunk       = errors.New("malformed chunked encoding")
	errBadLength      = errors.New("malformed Content-Length")
	errNotEventStream = errors.New("response Content-Type is not text/event-stream")
	errTruncated      = errors.New("connection closed in the middle of the response")
	errEnded          = errors.New("server ended the stream")
	errUpgrade        = errors.New("server switched protocols")
)

// statusError is a response other than 200 OK.
type statusError struct{ code int }

func (e statusError) Error() string { return fmt.Sprintf("HTTP status %d", e.code) }

// decoder incrementally decodes one HTTP/1.x response carrying an event
// stream: status line and headers, then a chunked, Content-Length or
// close-delimited body, then event-stream lines by the WHATWG rules (lines
// end with CR, LF or CRLF, even when the CR and the LF arrive in different
// reads; one leading BOM is ignored). Input may be split anywhere. It holds
// no buffer except while headers or a line span several inputs.
type decoder struct {
	phase     uint8
	crPending bool // the last line ended in CR; an LF right after belongs to it
	started   bool // the first body line (which may start with a BOM) is done
	hasData   bool // the current event has a data field
	sizeDigit bool // the current chunk-size line has a digit
	lineStart bool // phTrailers: at the start of a trailer line
	status    int
	remaining int64  // bytes left in the chunk or the Content-Length body
	hdr       []byte // phHeaders: header bytes so far
	line      []byte // the start of a line that continues in later input
}

// feed decodes p. After an error the decoder must not be fed again.
func (d *decoder) feed(p []byte, s sink) error {
	for len(p) > 0 {
		switch d.phase {
		case phHeaders:
			rest, err := d.headers(p)
			if err != nil {
				return err
			}
			p = rest
		case phChunkSize, phChunkExt, phChunkLF, phChunkCR, phChunkEnd, phTrailers:
			n, err := d.chunkFraming(p)
			if err != nil {
				return err
			}
			p = p[n:]
		case phChunkData, phLength:
			n := len(p)
			if int64(n) > d.remaining {
				n = int(d.remaining)
			}
			if err := d.body(p[:n], s); err != nil {
				return err
			}
			p = p[n:]
			d.remaining -= int64(n)
			if d.remaining == 0 {
				if d.phase == phLength {
					d.phase = phDone
				} else {
					d.phase = phChunkCR
				}
			}
		case phClose:
			if err := d.body(p, s); err != nil {
				return err
			}
			p = nil
		case phDone:
			return errEnded
		}
	}
	if d.phase == phDone {
		return errEnded
	}
	return nil
}

// eof is called when the connection ends: it returns errEnded for a
// response that was complete, errTruncated otherwise. As in a browser, an
// event not ended by a blank line is dropped.
func (d *decoder) eof() error {
	switch d.phase {
	case phClose, phDone:
		return errEnded
	}
	return errTruncated
}

// headers consumes response headers from p and returns the body bytes
// after them.
func (d *decoder) headers(p []byte) ([]byte, error) {
	start := len(d.hdr)
	// Look for the blank line from a little before the new bytes, where
	// an end split across inputs may have begun.
	from := max(start-3, 0)
	d.hdr = append(d.hdr, p...)
	end, n := headerEnd(d.hdr[from:])
	if end < 0 {
		if len(d.hdr) > maxHeaderBytes {
			return nil, errHeaderTooLarge
		}
		return nil, nil
	}
	end += from
	used := end + n - start // bytes of p that belong to the headers
	if err := d.parseHeaders(d.hdr[:end]); err != nil {
		return nil, err
	}
	d.hdr = nil
	if d.status/100 == 1 {
		// An interim response: the real one follows.
		d.phase = phHeaders
	}
	return p[used:], nil
}

// headerEnd finds the blank line ending a header block, accepting bare LF
// line ends as well as CRLF. It returns the index where the blank line's
// terminator starts and the terminator's length, or -1.
func headerEnd(b []byte) (int, int) {
	for i := 0; i < len(b); i++ {
		if b[i] != '\n' {
			continue
		}
		switch {
		case i+1 < len(b) && b[i+1] == '\n':
			return i, 2
		case i+2 < len(b) && b[i+1] == '\r' && b[i+2] == '\n':
			return i, 3
		}
	}
	return -1, 0
}

// parseHeaders reads the status line and the headers the decoder needs.
func (d *decoder) parseHeaders(h []byte) error {
	line, rest, _ := bytes.Cut(h, []byte("\n"))
	line = bytes.TrimSuffix(line, []byte("\r"))
	if !bytes.HasPrefix(line, []byte("HTTP/1.")) || len(line) < 12 || line[8] != ' ' {
		return errBadStatusLine
	}
	code, err := strconv.Atoi(string(line[9:12]))
	if err != nil || (len(line) > 12 && line[12] != ' ') {
		return errBadStatusLine
	}
	d.status = code
	if code/100 == 1 {
		if code == 101 {
			return errUpgrade
		}
		return nil
	}
	if code != 200 {
		return statusError{code}
	}
	var chunked, eventStream, hasLength bool
	var length int64
	for len(rest) > 0 {
		line, rest, _ = bytes.Cut(rest, []byte("\n"))
		line = bytes.TrimSuffix(line, []byte("\r"))
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		value = bytes.TrimSpace(value)
		switch {
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			// chunked must be the last coding applied.
			codings := bytes.Split(value, []byte(","))
			chunked = bytes.EqualFold(bytes.TrimSpace(codings[len(codings)-1]), []byte("chunked"))
		case bytes.EqualFold(name, []byte("Content-Length")):
			n, err := strconv.ParseInt(string(value), 10, 64)
			if err != nil || n < 0 {
				return errBadLength
			}
			hasLength, length = true, n
		case bytes.EqualFold(name, []byte("Content-Type")):
			mt, _, _ := bytes.Cut(value, []byte(";"))
			eventStream = bytes.EqualFold(bytes.TrimSpace(mt), []byte("text/event-stream"))
		}
	}
	if !eventStream {
		return errNotEventStream
	}
	switch {
	case chunked:
		d.phase = phChunkSize
	case hasLength:
		d.phase, d.remaining = phLength, length
		if length == 0 {
			d.phase = phDone
		}
	default:
		d.phase = phClose
	}
	return nil
}

// chunkFraming consumes chunk framing bytes (everything but chunk data)
// from p and returns how many it used.
func (d *decoder) chunkFraming(p []byte) (int, error) {
	for i, c := range p {
		switch d.phase {
		case phChunkSize:
			switch {
			case c >= '0' && c <= '9', c >= 'a' && c <= 'f', c >= 'A' && c <= 'F':
				if d.remaining > (1<<59)-1 {
					return 0, errBadChunk
				}
				d.remaining = d.remaining<<4 | int64(unhex(c))
				d.sizeDigit = true
			case c == ';' || c == ' ' || c == '\t':
				d.phase = phChunkExt
			case c == '\r':
				d.phase = phChunkLF
			case c == '\n':
				if err := d.chunkSizeDone(); err != nil {
					return 0, err
				}
				if d.phase == phChunkData {
					return i + 1, nil
				}
			default:
				return 0, errBadChunk
			}
		case phChunkExt:
			if c == '\n' {
				if err := d.chunkSizeDone(); err != nil {
					return 0, err
				}
				if d.phase == phChunkData {
					return i + 1, nil
				}
			}
		case phChunkLF:
			if c != '\n' {
				return 0, errBadChunk
			}
			if err := d.chunkSizeDone(); err != nil {
				return 0, err
			}
			if d.phase == phChunkData {
				return i + 1, nil
			}
		case phChunkCR:
			switch c {
			case '\r':
				d.phase = phChunkEnd
			case '\n':
				d.phase = phChunkSize
			default:
				return 0, errBadChunk
			}
		case phChunkEnd:
			if c != '\n' {
				return 0, errBadChunk
			}
			d.phase = phChunkSize
		case phTrailers:
			switch c {
			case '\n':
				if d.lineStart {
					d.phase = phDone
					return i + 1, nil
				}
				d.lineStart = true
			case '\r':
			default:
				d.lineStart = false
			}
		default:
			return i, nil
		}
	}
	return len(p), nil
}

// chunkSizeDone acts on a complete chunk-size line.
func (d *decoder) chunkSizeDone() error {
	if !d.sizeDigit {
		return errBadChunk
	}
	d.sizeDigit = false
	if d.remaining == 0 {
		d.phase, d.lineStart = phTrailers, true
	} else {
		d.phase = phChunkData
	}
	return nil
}

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c >= 'a':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}

// body splits body bytes into event-stream lines.
func (d *decoder) body(p []byte, s sink) error {
	for len(p) > 0 {
		if d.crPending {
			d.crPending = false
			if p[0] == '\n' {
				p = p[1:]
				continue
			}
		}
		i := indexEOL(p)
		if i < 0 {
			if len(d.line)+len(p) > maxLineBytes {
				return errLineTooLong
			}
			if d.line == nil {
				d.line = make([]byte, 0, max(len(p), 128))
			}
			d.line = append(d.line, p...)
			return nil
		}
		line := p[:i]
		if len(d.line) > 0 {
			if len(d.line)+i > maxLineBytes {
				return errLineTooLong
			}
			d.line = append(d.line, line...)
			line = d.line
		}
		d.crPending = p[i] == '\r'
		p = p[i+1:]
		d.processLine(line, s)
		if cap(d.line) > keepLineCap {
			d.line = nil
		} else {
			d.line = d.line[:0]
		}
	}
	return nil
}

// indexEOL returns the index of the first CR or LF in p, or -1.
func indexEOL(p []byte) int {
	lf := bytes.IndexByte(p, '\n')
	head := p
	if lf >= 0 {
		head = p[:lf]
	}
	if cr := bytes.IndexByte(head, '\r'); cr >= 0 {
		return cr
	}
	return lf
}

var bom = []byte("\xEF\xBB\xBF")

// processLine interprets one event-stream line.
func (d *decoder) processLine(line []byte, s sink) {
	if !d.started {
		d.started = true
		line = bytes.TrimPrefix(line, bom)
	}
	if len(line) == 0 {
		hasData := d.hasData
		d.hasData = false
		s.dispatch(hasData)
		return
	}
	if line[0] == ':' {
		return // comment
	}
	name, value := line, line[len(line):]
	if i := bytes.IndexByte(line, ':'); i >= 0 {
		name, value = line[:i], line[i+1:]
		if len(value) > 0 && value[0] == ' ' {
			value = value[1:]
		}
	}
	if string(name) == "data" {
		s.data(value, !d.hasData)
		d.hasData = true
		return
	}
	s.field(name, value)
}
