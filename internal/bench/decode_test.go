package bench

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/herald-sse/herald/sse"
)

// event is a dispatched event as an EventSource sees it.
type event struct{ ID, Type, Data string }

// collector is a sink that applies the WHATWG rules to what the decoder
// reports, so tests can compare it with package sse's decoder.
type collector struct {
	events       []event
	buf          []byte
	typ, id, got string
	sawData      bool
	firstWrong   int // data calls whose first flag was wrong
}

func (c *collector) data(v []byte, first bool) {
	if first == c.sawData {
		c.firstWrong++
	}
	c.sawData = true
	c.buf = append(c.buf, v...)
	c.buf = append(c.buf, '\n')
}

func (c *collector) field(name, v []byte) {
	switch string(name) {
	case "event":
		c.typ = string(v)
	case "id":
		if bytes.IndexByte(v, 0) < 0 {
			c.id = string(v)
		}
	}
}

func (c *collector) dispatch(hasData bool) {
	if hasData != c.sawData {
		c.firstWrong++
	}
	c.sawData = false
	c.got = c.id
	if hasData {
		typ := c.typ
		if typ == "" {
			typ = "message"
		}
		c.events = append(c.events, event{ID: c.got, Type: typ, Data: string(c.buf[:len(c.buf)-1])})
	}
	c.buf, c.typ = c.buf[:0], ""
}

// outcome is what decoding a whole input gave.
type outcome struct {
	events []event
	err    error // from feed, or from eof when feeding succeeded
}

func (o outcome) String() string {
	return fmt.Sprintf("%d events %q, err %v", len(o.events), o.events, o.err)
}

func (o outcome) equal(p outcome) bool {
	return reflect.DeepEqual(o.events, p.events) && errors.Is(o.err, p.err) && fmt.Sprint(o.err) == fmt.Sprint(p.err)
}

// decodeParts feeds parts to a fresh decoder, then the end of input.
func decodeParts(t testing.TB, parts [][]byte) outcome {
	var d decoder
	c := &collector{}
	var err error
	for _, p := range parts {
		if err = d.feed(p, c); err != nil {
			break
		}
	}
	if err == nil {
		err = d.eof()
	}
	if c.firstWrong != 0 {
		t.Errorf("first data flags or hasData wrong %d times", c.firstWrong)
	}
	return outcome{c.events, err}
}

func whole(b []byte) [][]byte { return [][]byte{b} }

func bytewise(b []byte) [][]byte {
	parts := make([][]byte, len(b))
	for i := range b {
		parts[i] = b[i : i+1]
	}
	return parts
}

func randomParts(b []byte, r *rand.Rand) [][]byte {
	var parts [][]byte
	for len(b) > 0 {
		n := min(1+r.IntN(12), len(b))
		if r.IntN(8) == 0 {
			n = 0 // empty reads must be harmless
		}
		parts = append(parts, b[:n])
		b = b[n:]
	}
	return parts
}

// checkSplits decodes b whole, in two parts at every byte boundary, byte
// by byte and in random pieces, and requires the same outcome each time.
func checkSplits(t testing.TB, b []byte, seed uint64) outcome {
	t.Helper()
	want := decodeParts(t, whole(b))
	check := func(how string, parts [][]byte) {
		t.Helper()
		if got := decodeParts(t, parts); !got.equal(want) {
			t.Fatalf("fed %s: %v\nwhole: %v", how, got, want)
		}
	}
	for i := range b {
		check(fmt.Sprintf("split at %d", i), [][]byte{b[:i], b[i:]})
	}
	check("byte by byte", bytewise(b))
	r := rand.New(rand.NewPCG(seed, 1))
	for i := range 5 {
		check(fmt.Sprintf("in random pieces (%d)", i), randomParts(b, r))
	}
	return want
}

// reference decodes an event-stream body with package sse.
func reference(t testing.TB, body []byte) []event {
	var evs []event
	d := sse.NewDecoder(bytes.NewReader(body))
	for {
		m, err := d.Next()
		if err == io.EOF {
			return evs
		}
		if err != nil {
			t.Fatalf("sse decoder: %v", err)
		}
		evs = append(evs, event{m.LastEventID, m.Type, m.Data})
	}
}

// chunk encodes body with chunk boundaries at the given sizes (cycled).
func chunk(body []byte, sizes ...int) []byte {
	var b bytes.Buffer
	for i := 0; len(body) > 0; i++ {
		n := min(sizes[i%len(sizes)], len(body))
		fmt.Fprintf(&b, "%x\r\n", n)
		b.Write(body[:n])
		b.WriteString("\r\n")
		body = body[n:]
	}
	b.WriteString("0\r\n\r\n")
	return b.Bytes()
}

const (
	chunkedHead = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
	closeHead   = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\nConnection: close\r\n\r\n"
)

// bodies covers the line and field rules.
var bodies = []string{
	":\n\nid: 1\ndata: hello\n\n",
	"data: crlf\r\n\r\ndata: cr\r\rdata: lf\n\n",
	"data: a\r\ndata: b\rdata: c\n\n",              // mixed line ends in one event
	"data:no space\n\ndata:  two spaces\n\n",       // one space stripped, not two
	"data\n\ndata:\n\n",                            // empty data both ways
	": comment\n:\ndata: x\n: inside\ndata: y\n\n", // comments anywhere
	"event: e1\ndata: typed\n\ndata: untyped\n\n",
	"id: 7\n\ndata: keeps id\n\nid\ndata: cleared\n\n",
	"id: a\x00b\ndata: nul id ignored\n\n",
	"event: lost\n\ndata: typeless again\n\n",
	"\xEF\xBB\xBFdata: after BOM\n\n",
	"data: one\n\ndata: unterminated", // the last event is dropped
	"retry: 100\nunknown: field\ndata: z\n\n",
	"data: \xc3\xbcn\xc3\xafc\xc3\xb8d\xc3\xa9\n\n",
	"\n\n\ndata: blank lines first\n\n",
	"data: ends in cr\r",
}

func TestDecoderMatchesSSEPackage(t *testing.T) {
	for i, body := range bodies {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			want := reference(t, []byte(body))
			for _, resp := range []string{
				closeHead + body,
				chunkedHead + string(chunk([]byte(body), 3, 1, 7)),
				chunkedHead + string(chunk([]byte(body), 1000)),
				fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: %d\r\n\r\n%s", len(body), body),
			} {
				got := checkSplits(t, []byte(resp), uint64(i))
				if !reflect.DeepEqual(got.events, want) {
					t.Errorf("%q:\n got %q\nwant %q", resp, got.events, want)
				}
				if got.err != errEnded {
					t.Errorf("%q: end %v, want a clean end", resp, got.err)
				}
			}
		})
	}
}

// A stream recorded from herald serve (chunked, cut off by the client),
// with an event of several data lines, an empty one, a JSON one and
// non-ASCII text.
func TestDecoderRecordedHeraldStream(t *testing.T) {
	rec, err := os.ReadFile("testdata/herald_stream.txt")
	if err != nil {
		t.Fatal(err)
	}
	got := checkSplits(t, rec, 1)
	want := []event{
		{"Bb4fe733-5d5", "message", "hello"},
		{"custom-1", "multi", "line1\nline2\nline3\nline4"},
		{"Bb4fe733-5d6", "message", ""},
		{"Bb4fe733-5d7", "message", " leading space"},
		{"Bb4fe733-5d8", "message", `{"json":[1,2]}`},
		{"Bb4fe733-5d9", "message", "ünïcødé ✓"},
	}
	if !reflect.DeepEqual(got.events, want) {
		t.Errorf("got %q\nwant %q", got.events, want)
	}
	if got.err != errTruncated {
		t.Errorf("end: %v, want %v (the recording stops mid-stream)", got.err, errTruncated)
	}
}

func TestDecoderFraming(t *testing.T) {
	body := "data: x\n\n"
	for _, tc := range []struct {
		name, resp string
		events     int
		err        error
	}{
		{"interim 100 first", "HTTP/1.1 100 Continue\r\n\r\n" + closeHead + body, 1, errEnded},
		{"bare LF headers", "HTTP/1.0 200 OK\nContent-Type: TEXT/EVENT-STREAM\n\n" + body, 1, errEnded},
		{"chunk extension and trailer", chunkedHead + "9;ext=1\r\n" + body + "\r\n0\r\nTrailer: x\r\n\r\n", 1, errEnded},
		{"chunk LF only", chunkedHead + "9\n" + body + "\n0\n\n", 1, errEnded},
		{"upper-case hex", chunkedHead + "0000A\r\n" + body + "\n\r\n0\r\n\r\n", 1, errEnded},
		{"gzip, chunked", "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: gzip, chunked\r\n\r\n9\r\n" + body + "\r\n", 1, errTruncated},
		{"cut in chunk", chunkedHead + "20\r\n" + body, 1, errTruncated},
		{"cut in headers", "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n", 0, errTruncated},
		{"bad chunk size", chunkedHead + "zz\r\n", 0, errBadChunk},
		{"missing chunk CRLF", chunkedHead + "9\r\n" + body + "X", 1, errBadChunk},
		{"empty chunk size", chunkedHead + "\r\n", 0, errBadChunk},
		{"not an event stream", "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n", 0, errNotEventStream},
		{"no content type", "HTTP/1.1 200 OK\r\n\r\n" + body, 0, errNotEventStream},
		{"status 503", "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n\r\n{}", 0, statusError{503}},
		{"status 204", "HTTP/1.1 204 No Content\r\n\r\n", 0, statusError{204}},
		{"not HTTP", "SSH-2.0-OpenSSH\r\n\r\n", 0, errBadStatusLine},
		{"switching protocols", "HTTP/1.1 101 Switching Protocols\r\n\r\n", 0, errUpgrade},
		{"empty length body", "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: 0\r\n\r\n", 0, errEnded},
		{"bytes after length", "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: 9\r\n\r\n" + body + "extra", 1, errEnded},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := checkSplits(t, []byte(tc.resp), 2)
			if len(got.events) != tc.events || got.err != tc.err {
				t.Errorf("%v; want %d events and %v", got, tc.events, tc.err)
			}
		})
	}
}

func TestDecoderLimits(t *testing.T) {
	var d decoder
	c := &collector{}
	huge := strings.Repeat("x", 32<<10)
	err := d.feed([]byte("HTTP/1.1 200 OK\r\n"), c)
	for i := 0; err == nil && i < 3; i++ {
		err = d.feed([]byte("X-Long: "+huge+"\r\n"), c)
	}
	if err != errHeaderTooLarge {
		t.Errorf("huge headers: %v", err)
	}

	d = decoder{}
	err = d.feed([]byte(closeHead+"data: "), c)
	for i := 0; err == nil && i < 40; i++ {
		err = d.feed([]byte(huge), c)
	}
	if err != errLineTooLong {
		t.Errorf("huge line: %v", err)
	}

	// A line buffer that grew for a long line is not kept afterwards.
	d = decoder{}
	if err := d.feed([]byte(closeHead+"data: "+huge), c); err != nil {
		t.Fatal(err)
	}
	if err := d.feed([]byte("\n\n"), c); err != nil {
		t.Fatal(err)
	}
	if d.line != nil {
		t.Errorf("kept a %d-byte line buffer", cap(d.line))
	}
	if n := len(c.events); n != 1 || len(c.events[0].Data) != len(huge) {
		t.Errorf("long event: %d events", n)
	}
}
