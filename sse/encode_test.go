package sse

import (
	"bytes"
	"errors"
	"io"
	"math"
	"slices"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

// payloadMatrix is the set of payloads from docs/sse-wire.md that every Go
// SSE library tested there mishandles somewhere.
var payloadMatrix = []string{
	"a\nb",
	"a\r\nb",
	"a\rb",
	"trail\n",
	"\nlead",
	" space",
	"x\revent: evil\rdata: injected",
	"",
}

type encCase struct {
	ev   Event
	want string // the exact encoding, unless err is set
	err  error  // the error AppendEvent must return
}

type encoderRow struct {
	name  string
	cases []encCase
	more  func(t *testing.T)
}

var encoderRows = []encoderRow{
	{name: "E1", cases: []encCase{
		{ev: Event{Data: "d"}, want: "data: d\n\n"},
		{ev: Event{ID: "7", Type: "update", Data: "d", Retry: time.Second},
			want: "id: 7\nevent: update\nretry: 1000\ndata: d\n\n"},
	}},
	{name: "E2", cases: []encCase{
		{ev: Event{Data: "x\revent: evil\rdata: y"}, want: "data: x\ndata: event: evil\ndata: data: y\n\n"},
		{ev: Event{Data: "a\r\nb\nc\rd\r\r\n\n"}, want: "data: a\ndata: b\ndata: c\ndata: d\ndata: \ndata: \ndata: \n\n"},
		{ev: Event{Data: "\r\n"}, want: "data: \ndata: \n\n"},
		{ev: Event{Data: "\n\r"}, want: "data: \ndata: \ndata: \n\n"},
	}, more: func(t *testing.T) {
		m := roundTrip(t, &Event{Data: "x\revent: evil\rdata: y"})
		if m != msg("", "message", "x\nevent: evil\ndata: y") {
			t.Errorf("injection attempt decoded as %+v", m)
		}
	}},
	{name: "E3", cases: []encCase{
		{ev: Event{}, want: "data: \n\n"},
		{ev: Event{Type: "ping"}, want: "event: ping\ndata: \n\n"},
		{ev: Event{Data: "trail\n"}, want: "data: trail\ndata: \n\n"},
	}},
	{name: "E4", cases: []encCase{
		{ev: Event{Data: " space"}, want: "data:  space\n\n"},
		{ev: Event{ID: " i", Type: " t", Data: "  two\n three"}, want: "id:  i\nevent:  t\ndata:   two\ndata:  three\n\n"},
		{ev: Event{Data: ":colon"}, want: "data: :colon\n\n"},
	}},
	{name: "E5", cases: []encCase{
		{ev: Event{ID: "a\nb", Data: "x"}, err: ErrInvalidID},
		{ev: Event{ID: "a\rb", Data: "x"}, err: ErrInvalidID},
		{ev: Event{ID: "a\x00b", Data: "x"}, err: ErrInvalidID},
		{ev: Event{ID: "\n", ClearID: true}, err: ErrInvalidID},
		{ev: Event{Type: "a\nb", Data: "x"}, err: ErrInvalidType},
		{ev: Event{Type: "a\rb", Data: "x"}, err: ErrInvalidType},
		{ev: Event{ID: "ok", Type: "bad\r"}, err: ErrInvalidType},
		{ev: Event{Type: "a\x00b", Data: "x"}, want: "event: a\x00b\ndata: x\n\n"},
	}, more: func(t *testing.T) {
		for _, id := range []string{"\r", "x\n", "\x00"} {
			if err := ValidateID(id); !errors.Is(err, ErrInvalidID) {
				t.Errorf("ValidateID(%q) = %v", id, err)
			}
		}
		for _, typ := range []string{"\r", "x\n"} {
			if err := ValidateType(typ); !errors.Is(err, ErrInvalidType) {
				t.Errorf("ValidateType(%q) = %v", typ, err)
			}
		}
		if err := ValidateID("ok-1_2.3~é"); err != nil {
			t.Errorf("ValidateID of a valid id: %v", err)
		}
		if err := ValidateType("ok\x00"); err != nil {
			t.Errorf("ValidateType allows NUL: %v", err)
		}
		if err := ValidateID("abc\ndef"); err == nil || !strings.Contains(err.Error(), "LF at byte 3") {
			t.Errorf("error lacks detail: %v", err)
		}
	}},
	{name: "E6", cases: []encCase{
		{ev: Event{ClearID: true, Data: "x"}, want: "id:\ndata: x\n\n"},
		{ev: Event{ID: "5", ClearID: true, Data: "x"}, want: "id: 5\ndata: x\n\n"},
		{ev: Event{ID: "", Data: "x"}, want: "data: x\n\n"},
	}, more: func(t *testing.T) {
		b, _ := AppendEvent(nil, &Event{ID: "5", Data: "a"})
		b, _ = AppendEvent(b, &Event{Data: "b"})
		b, _ = AppendEvent(b, &Event{ClearID: true, Data: "c"})
		got := decodeAll(t, bytes.NewReader(b), 0)
		want := []Message{msg("5", "message", "a"), msg("5", "message", "b"), msg("", "message", "c")}
		if !slices.Equal(got.msgs, want) || got.lastID != "" {
			t.Errorf("got %s, last id %q", short(got.msgs), got.lastID)
		}
	}},
	{name: "E7", cases: []encCase{
		{ev: Event{Retry: 3 * time.Second, Data: "x"}, want: "retry: 3000\ndata: x\n\n"},
		{ev: Event{Retry: 1500 * time.Microsecond, Data: "x"}, want: "retry: 1\ndata: x\n\n"},
		{ev: Event{Retry: time.Millisecond - 1, Data: "x"}, want: "data: x\n\n"},
		{ev: Event{Retry: -time.Second, Data: "x"}, want: "data: x\n\n"},
		{ev: Event{Retry: math.MaxInt64, Data: "x"}, want: "retry: 9223372036854\ndata: x\n\n"},
	}},
	{name: "E8", more: func(t *testing.T) {
		for _, c := range []struct{ text, want string }{
			{"", ":\n"},
			{"keepalive", ": keepalive\n"},
			{"a\r\nb\rc\nd", ": a\n: b\n: c\n: d\n"},
			{"x\n", ": x\n: \n"},
		} {
			if got := string(AppendComment([]byte("pre"), c.text)); got != "pre"+c.want {
				t.Errorf("AppendComment(%q) = %q, want %q", c.text, got, "pre"+c.want)
			}
		}
		// Comments go anywhere, even between the fields of one event.
		b := AppendComment(nil, "hello")
		b = append(b, "id: 1\n"...)
		b = AppendComment(b, "data: not data\r\nid: 9")
		b, _ = AppendEvent(b, &Event{Data: "real"})
		b = AppendComment(b, "")
		got := decodeAll(t, bytes.NewReader(b), 0)
		if !slices.Equal(got.msgs, []Message{msg("1", "message", "real")}) {
			t.Errorf("comments changed the stream: %s", short(got.msgs))
		}
	}},
	{name: "E9", cases: []encCase{
		{ev: Event{Data: "\uFEFFx"}, want: "data: \uFEFFx\n\n"},
		{ev: Event{ID: "\uFEFF", Type: "\uFEFF", Data: "héllo ✓ 😀"}, want: "id: \uFEFF\nevent: \uFEFF\ndata: héllo ✓ 😀\n\n"},
	}},
	{name: "E10", cases: func() []encCase {
		var cs []encCase
		for _, p := range payloadMatrix {
			cs = append(cs, encCase{ev: Event{ID: "r", Type: "t", Data: p}})
		}
		return cs
	}()},
}

// roundTrip encodes e on its own and decodes it, in one piece and one byte
// per read, requiring exactly one message.
func roundTrip(t *testing.T, e *Event) Message {
	t.Helper()
	b, err := AppendEvent(nil, e)
	if err != nil {
		t.Fatalf("AppendEvent: %v", err)
	}
	var first Message
	for i, r := range []io.Reader{bytes.NewReader(b), iotest.OneByteReader(bytes.NewReader(b))} {
		got := decodeAll(t, r, 0)
		if got.err != io.EOF || len(got.msgs) != 1 {
			t.Fatalf("decoding %q: %d messages, error %v", b, len(got.msgs), got.err)
		}
		if i == 0 {
			first = got.msgs[0]
		} else if got.msgs[0] != first {
			t.Fatalf("decoding one byte at a time gave %+v, in one piece %+v", got.msgs[0], first)
		}
		if want := e.Retry / time.Millisecond * time.Millisecond; e.Retry >= time.Millisecond && got.retry != want {
			t.Errorf("Retry() = %v, want %v", got.retry, want)
		}
	}
	return first
}

// expectedMessage is what a client must see for e sent on its own.
func expectedMessage(e *Event) Message {
	typ := e.Type
	if typ == "" {
		typ = "message"
	}
	return Message{
		LastEventID: whatwgDecodeNoBOM([]byte(e.ID)),
		Type:        whatwgDecodeNoBOM([]byte(typ)),
		Data:        whatwgDecodeNoBOM([]byte(normalizeNewlines(e.Data))),
	}
}

func TestEncoder(t *testing.T) {
	for _, row := range encoderRows {
		t.Run(row.name, func(t *testing.T) {
			for _, c := range row.cases {
				prefix := []byte("prefix")
				got, err := AppendEvent(prefix, &c.ev)
				if c.err != nil {
					if !errors.Is(err, c.err) {
						t.Errorf("AppendEvent(%+v) error = %v, want %v", c.ev, err, c.err)
					}
					if string(got) != "prefix" {
						t.Errorf("AppendEvent(%+v) changed dst on error: %q", c.ev, got)
					}
					continue
				}
				if err != nil {
					t.Errorf("AppendEvent(%+v) error = %v", c.ev, err)
					continue
				}
				enc, ok := bytes.CutPrefix(got, prefix)
				if !ok {
					t.Fatalf("AppendEvent(%+v) lost the existing contents of dst", c.ev)
				}
				if c.want != "" && string(enc) != c.want {
					t.Errorf("AppendEvent(%+v) =\n %q, want\n %q", c.ev, enc, c.want)
				}
				checkWellFormed(t, enc)
				if m, want := roundTrip(t, &c.ev), expectedMessage(&c.ev); m != want {
					t.Errorf("round trip of %+v gave %+v, want %+v", c.ev, m, want)
				}
			}
			if row.more != nil {
				row.more(t)
			}
		})
	}
}

// checkWellFormed checks the invariants every encoding shares: LF line ends
// only (E1), lower-case known fields with a space after the colon (E4),
// exactly one blank line at the end (E1), no BOM (E9).
func checkWellFormed(t *testing.T, enc []byte) {
	t.Helper()
	if bytes.HasPrefix(enc, []byte("\uFEFF")) {
		t.Errorf("%q starts with a BOM", enc)
	}
	if bytes.IndexByte(enc, '\r') >= 0 {
		t.Errorf("%q contains CR", enc)
	}
	body, ok := bytes.CutSuffix(enc, []byte("\n\n"))
	if !ok {
		t.Fatalf("%q does not end with a blank line", enc)
	}
	for line := range strings.SplitSeq(string(body), "\n") {
		if line == "id:" {
			continue
		}
		name, _, ok := strings.Cut(line, ": ")
		if !ok || !slices.Contains([]string{"id", "event", "retry", "data"}, name) {
			t.Errorf("bad line %q in %q", line, enc)
		}
	}
}

func TestPayloadMatrixRoundTrip(t *testing.T) {
	var stream []byte
	var want []Message
	for _, p := range payloadMatrix {
		for _, e := range []Event{{Data: p}, {ID: "42", Type: "update", Data: p, Retry: 5 * time.Second}} {
			m := roundTrip(t, &e)
			if m.Data != normalizeNewlines(p) || m != expectedMessage(&e) {
				t.Errorf("payload %q came back as %+v", p, m)
			}
			var err error
			stream, err = AppendEvent(stream, &e)
			if err != nil {
				t.Fatal(err)
			}
			stream = AppendComment(stream, p)
			lastID := "42"
			if len(want) == 0 && e.ID == "" {
				lastID = ""
			}
			want = append(want, Message{LastEventID: lastID, Type: expectedMessage(&e).Type, Data: normalizeNewlines(p)})
		}
	}
	// The whole matrix in one stream, with comments between the events.
	got := decodeAll(t, iotest.OneByteReader(bytes.NewReader(stream)), 0)
	if got.err != io.EOF || !slices.Equal(got.msgs, want) {
		t.Errorf("matrix as one stream: %s, %v\nwant %s", short(got.msgs), got.err, short(want))
	}
}

func TestAppendZeroAllocs(t *testing.T) {
	e := &Event{ID: "1234", Type: "update", Data: "line one\r\nline two\rline three\n", Retry: 3 * time.Second}
	buf := make([]byte, 0, 1024)
	if n := testing.AllocsPerRun(100, func() {
		var err error
		buf, err = AppendEvent(buf[:0], e)
		if err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("AppendEvent allocates %v times per call", n)
	}
	if n := testing.AllocsPerRun(100, func() {
		buf = AppendComment(buf[:0], "keep\nalive")
	}); n != 0 {
		t.Errorf("AppendComment allocates %v times per call", n)
	}
}

func TestAppendRetry(t *testing.T) {
	for d, want := range map[time.Duration]string{
		3 * time.Second:         "retry: 3000\n",
		1500 * time.Microsecond: "retry: 1\n",
		time.Microsecond:        "",
	} {
		if got := string(AppendRetry(nil, d)); got != want {
			t.Errorf("AppendRetry(%v) = %q, want %q", d, got, want)
		}
	}
	// A client applies it without an event.
	dec := NewDecoder(strings.NewReader(string(AppendRetry(nil, 2*time.Second)) + "data: x\n\n"))
	if _, err := dec.Next(); err != nil || dec.Retry() != 2*time.Second {
		t.Fatalf("decoder retry = %v, %v", dec.Retry(), err)
	}
}
