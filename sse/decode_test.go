package sse

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

// chunkReader returns its chunks one per Read, so a test controls exactly
// where reads split the stream.
type chunkReader struct {
	chunks [][]byte
}

func (r *chunkReader) Read(p []byte) (int, error) {
	for len(r.chunks) > 0 && len(r.chunks[0]) == 0 {
		r.chunks = r.chunks[1:]
	}
	if len(r.chunks) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.chunks[0])
	r.chunks[0] = r.chunks[0][n:]
	return n, nil
}

// randomChunks splits b at random points, favouring small pieces so that
// line ends, BOMs and field names get cut often.
func randomChunks(b []byte, rng *rand.Rand) [][]byte {
	var chunks [][]byte
	for len(b) > 0 {
		n := 1 + rng.IntN(8)
		if rng.IntN(4) == 0 {
			n = 1 + rng.IntN(4096)
		}
		n = min(n, len(b))
		chunks = append(chunks, b[:n])
		b = b[n:]
	}
	return chunks
}

type decoded struct {
	msgs    []Message
	retries []time.Duration // Retry() after each message
	lastID  string          // LastEventID() at the end
	retry   time.Duration   // Retry() at the end
	err     error           // the error that ended decoding
}

// decodeAll runs a Decoder to the end of r, checking on the way that
// LastEventID() agrees with each message.
func decodeAll(t testing.TB, r io.Reader, maxSize int) decoded {
	t.Helper()
	d := NewDecoder(r)
	d.MaxEventSize = maxSize
	var res decoded
	for {
		m, err := d.Next()
		if err != nil {
			res.err = err
			break
		}
		if got := d.LastEventID(); got != m.LastEventID {
			t.Errorf("LastEventID() = %q, message says %q", got, m.LastEventID)
		}
		res.msgs = append(res.msgs, m)
		res.retries = append(res.retries, d.Retry())
	}
	res.lastID = d.LastEventID()
	res.retry = d.Retry()
	return res
}

func msg(id, typ, data string) Message {
	return Message{LastEventID: id, Type: typ, Data: data}
}

type parserRow struct {
	name    string
	chunks  []string // the input, delivered one chunk per Read in mode "given"
	want    []Message
	lastID  string          // LastEventID() at the end of the stream
	retries []time.Duration // Retry() after each message, checked if non-nil
	retry   time.Duration   // Retry() at the end of the stream
	more    func(t *testing.T)
}

var bigLine = strings.Repeat("0123456789abcdef", (1<<20)/16+100) // over 1 MiB

var parserRows = []parserRow{
	{name: "P1", chunks: []string{"data: a\n\n"}, want: []Message{msg("", "message", "a")}},
	{name: "P2", chunks: []string{"data: a\rdata: b\r\r"}, want: []Message{msg("", "message", "a\nb")},
		more: testNextDoesNotWaitAfterCR},
	{name: "P3", chunks: []string{"data: a\r\n\r\n"}, want: []Message{msg("", "message", "a")}},
	{name: "P4", chunks: []string{"id: x\r\ndata: a\rdata: b\r\n\r\n"},
		want: []Message{msg("x", "message", "a\nb")}, lastID: "x"},
	{name: "P5", chunks: []string{"data: A\r", "\ndata: B\r\n\r", "\n"},
		want: []Message{msg("", "message", "A\nB")}},
	{name: "P6", chunks: []string{"\uFEFFdata: x\n\n\uFEFFdata: z\n\ndata: y\n\n"},
		want: []Message{msg("", "message", "x"), msg("", "message", "y")}},
	{name: "P7", chunks: []string{"\uFEFF\uFEFFdata: x\n\n"}},
	{name: "P8", chunks: []string{"data: a\ndata: b\n\n"}, want: []Message{msg("", "message", "a\nb")}},
	{name: "P9", chunks: []string{"data:\n\n"}, want: []Message{msg("", "message", "")}},
	{name: "P10", chunks: []string{"data\ndata\n\n"}, want: []Message{msg("", "message", "\n")}},
	{name: "P11", chunks: []string{"data:  sp\n\n"}, want: []Message{msg("", "message", " sp")}},
	{name: "P12", chunks: []string{"data:\tx\n\n"}, want: []Message{msg("", "message", "\tx")}},
	{name: "P13", chunks: []string{"data: a: b:c\n\n"}, want: []Message{msg("", "message", "a: b:c")}},
	{name: "P14", chunks: []string{": hello\n:data: no\ndata: a\n:\r:: x\r\ndata: b\n: id: 7\n\n:\n\n: retry: 5\n\n"},
		want: []Message{msg("", "message", "a\nb")}},
	{name: "P15", chunks: []string{"foo: bar\nDATA: x\nData: y\n data: q\ndata: z\n\n"},
		want: []Message{msg("", "message", "z")}},
	{name: "P16", chunks: []string{"data: 1\n\ndata: partial"}, want: []Message{msg("", "message", "1")}},
	{name: "P17", chunks: []string{"id: q\ndata: 1\n\nid: z\ndata: x"},
		want: []Message{msg("q", "message", "1")}, lastID: "q"},
	{name: "P18", chunks: []string{"\n\n\r\n\rdata: x\n\n\n\r\n\r\n\r"}, want: []Message{msg("", "message", "x")}},
	{name: "P19", chunks: []string{"event: foo\n\ndata: x\n\n"}, want: []Message{msg("", "message", "x")}},
	{name: "P20", chunks: []string{"id: k\n\ndata: 1\n\n"}, want: []Message{msg("k", "message", "1")}, lastID: "k"},
	{name: "P21", chunks: []string{"id: 1\ndata: 1\n\ndata: 2\n\n"},
		want: []Message{msg("1", "message", "1"), msg("1", "message", "2")}, lastID: "1"},
	{name: "P22", chunks: []string{"id: 1\ndata: 1\n\nid\ndata: 2\n\n"},
		want: []Message{msg("1", "message", "1"), msg("", "message", "2")}, lastID: ""},
	{name: "P23", chunks: []string{"id: a\ndata: 1\n\nid: b\x00c\ndata: 2\n\n"},
		want: []Message{msg("a", "message", "1"), msg("a", "message", "2")}, lastID: "a"},
	{name: "P24", chunks: []string{"data: a\x00b\n\n"}, want: []Message{msg("", "message", "a\x00b")}},
	{name: "P25", chunks: []string{
		"retry: 100\ndata: a\n\n",
		"retry: 1x\nretry: +5\nretry:\nretry: 1 \nretry:  7\nretry: -1\nretry: 1.5\nretry: ١\ndata: b\n\n",
		"retry: 02000\ndata: c\n\n",
		"retry: 99999999999999999999999999\ndata: d\n\n",
		"retry: 0\ndata: e\n\n",
	},
		want: []Message{msg("", "message", "a"), msg("", "message", "b"), msg("", "message", "c"),
			msg("", "message", "d"), msg("", "message", "e")},
		retries: []time.Duration{100 * time.Millisecond, 100 * time.Millisecond, 2 * time.Second,
			time.Duration(math.MaxInt64/int64(time.Millisecond)) * time.Millisecond, 0},
	},
	{name: "P26", chunks: []string{"event: \ndata: d\n\nevent: foo\nevent:\ndata: e\n\n"},
		want: []Message{msg("", "message", "d"), msg("", "message", "e")}},
	{name: "P27", chunks: []string{
		"data: héllo wörld ✓ 😀 \U0010FFFD\nevent: ünï\nid: ïd\n\n",
		// Invalid bytes become U+FFFD, one per maximal subpart, as the
		// UTF-8 decode algorithm does whatever charset the server names.
		"data: \xffa\xe2\x82\xf0\x90\x80b\xed\xa0\x80\xc0\xaf\n\n",
		"event: \xfe\nid: \xe2\x82\ndata: c\n\n",
	},
		want: []Message{
			msg("ïd", "ünï", "héllo wörld ✓ 😀 \U0010FFFD"),
			msg("ïd", "message", "\uFFFDa\uFFFD\uFFFDb\uFFFD\uFFFD\uFFFD\uFFFD\uFFFD"),
			msg("\uFFFD", "\uFFFD", "c"),
		},
		lastID: "\uFFFD"},
	{name: "P28", chunks: []string{"da", "ta: hel", "lo\n\n"}, want: []Message{msg("", "message", "hello")}},
	{name: "P29", chunks: []string{"data: " + bigLine + "\n\n", "data: after\n\n"},
		want: []Message{msg("", "message", bigLine), msg("", "message", "after")},
		more: testMaxEventSize},
}

func TestParser(t *testing.T) {
	for _, row := range parserRows {
		t.Run(row.name, func(t *testing.T) {
			all := []byte(strings.Join(row.chunks, ""))
			check := func(t *testing.T, r io.Reader) {
				t.Helper()
				got := decodeAll(t, r, 0)
				if got.err != io.EOF {
					t.Fatalf("ended with %v, want io.EOF", got.err)
				}
				if !slices.Equal(got.msgs, row.want) {
					t.Errorf("messages:\n got %s\nwant %s", short(got.msgs), short(row.want))
				}
				if got.lastID != row.lastID {
					t.Errorf("LastEventID() = %q, want %q", got.lastID, row.lastID)
				}
				if row.retries != nil && !slices.Equal(got.retries, row.retries) {
					t.Errorf("Retry() after each message = %v, want %v", got.retries, row.retries)
				}
				if row.retries == nil && got.retry != row.retry {
					t.Errorf("Retry() = %v, want %v", got.retry, row.retry)
				}
			}
			given := make([][]byte, len(row.chunks))
			for i, c := range row.chunks {
				given[i] = []byte(c)
			}
			t.Run("given", func(t *testing.T) { check(t, &chunkReader{chunks: given}) })
			t.Run("whole", func(t *testing.T) { check(t, bytes.NewReader(all)) })
			t.Run("onebyte", func(t *testing.T) { check(t, iotest.OneByteReader(bytes.NewReader(all))) })
			t.Run("dataerr", func(t *testing.T) { check(t, iotest.DataErrReader(bytes.NewReader(all))) })
			t.Run("half", func(t *testing.T) { check(t, iotest.HalfReader(bytes.NewReader(all))) })
			for seed := range uint64(20) {
				t.Run(fmt.Sprintf("random%d", seed), func(t *testing.T) {
					rng := rand.New(rand.NewPCG(seed, 29))
					check(t, &chunkReader{chunks: randomChunks(all, rng)})
				})
			}
			t.Run("reference", func(t *testing.T) {
				ref := refParse(all)
				if !slices.Equal(ref.msgs, row.want) || ref.lastID != row.lastID {
					t.Errorf("the reference parser disagrees with the row: %s, last id %q", short(ref.msgs), ref.lastID)
				}
			})
			if row.more != nil {
				t.Run("more", row.more)
			}
		})
	}
}

// short prints messages without flooding the log with P29's megabyte.
func short(msgs []Message) string {
	var b strings.Builder
	b.WriteString("[")
	for i, m := range msgs {
		if i > 0 {
			b.WriteString(", ")
		}
		data := m.Data
		if len(data) > 64 {
			data = fmt.Sprintf("%s...(%d bytes)", data[:64], len(data))
		}
		fmt.Fprintf(&b, "{id %q type %q data %q}", m.LastEventID, m.Type, data)
	}
	b.WriteString("]")
	return b.String()
}

// testNextDoesNotWaitAfterCR checks P2's "dispatched at the second CR
// without waiting for more bytes": the writer never closes the pipe, so a
// decoder that peeks for an LF after the CR would hang.
func testNextDoesNotWaitAfterCR(t *testing.T) {
	pr, pw := io.Pipe()
	defer pw.Close()
	go func() {
		pw.Write([]byte("data: a\rdata: b\r\r"))
	}()
	type result struct {
		m   Message
		err error
	}
	done := make(chan result, 1)
	d := NewDecoder(pr)
	go func() {
		m, err := d.Next()
		done <- result{m, err}
	}()
	select {
	case r := <-done:
		if r.err != nil || r.m != msg("", "message", "a\nb") {
			t.Errorf("Next() = %+v, %v; want data a\\nb", r.m, r.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Next blocked waiting for bytes after a CR that ended the event")
	}
	// The LF that may still follow belongs to the CR, not a new blank line,
	// so the decoder must still recognise it after having returned.
	go func() {
		pw.Write([]byte("\ndata: c\n\n"))
		pw.Close()
	}()
	m, err := d.Next()
	if err != nil || m != msg("", "message", "c") {
		t.Fatalf("next Next() = %+v, %v; want data c", m, err)
	}
	if _, err := d.Next(); err != io.EOF {
		t.Fatalf("at the end Next() error = %v, want io.EOF", err)
	}
}

func testMaxEventSize(t *testing.T) {
	line := "data: " + bigLine + "\n\n"
	t.Run("long line", func(t *testing.T) {
		for _, r := range []io.Reader{strings.NewReader(line), iotest.HalfReader(strings.NewReader(line))} {
			d := NewDecoder(r)
			d.MaxEventSize = 64 << 10
			if _, err := d.Next(); err != ErrEventTooLarge {
				t.Fatalf("Next() error = %v, want ErrEventTooLarge", err)
			}
			if _, err := d.Next(); err != ErrEventTooLarge {
				t.Fatalf("second Next() error = %v, want ErrEventTooLarge again", err)
			}
		}
	})
	t.Run("data over many lines", func(t *testing.T) {
		in := strings.Repeat("data: "+strings.Repeat("x", 99)+"\n", 20) + "\n"
		got := decodeAll(t, strings.NewReader(in), 20*100-2)
		if got.err != ErrEventTooLarge || len(got.msgs) != 0 {
			t.Fatalf("got %d messages, error %v; want ErrEventTooLarge", len(got.msgs), got.err)
		}
		// 20 lines of 99 bytes joined by 19 LFs is exactly the limit.
		got = decodeAll(t, strings.NewReader(in), 20*100-1)
		if got.err != io.EOF || len(got.msgs) != 1 || len(got.msgs[0].Data) != 20*100-1 {
			t.Fatalf("at the limit: got %d messages, error %v", len(got.msgs), got.err)
		}
	})
	t.Run("under the limit", func(t *testing.T) {
		got := decodeAll(t, strings.NewReader(line), len(bigLine)+len("data: "))
		if got.err != io.EOF || len(got.msgs) != 1 || got.msgs[0].Data != bigLine {
			t.Fatalf("got %d messages, error %v", len(got.msgs), got.err)
		}
	})
}

func TestNextAfterCRThenLF(t *testing.T) {
	pr, pw := io.Pipe()
	d := NewDecoder(pr)
	go func() {
		pw.Write([]byte("data: a\rdata: b\r\r"))
		pw.Write([]byte("\ndata: c\r\n\r\n"))
		pw.Close()
	}()
	var got []Message
	for {
		m, err := d.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, m)
	}
	want := []Message{msg("", "message", "a\nb"), msg("", "message", "c")}
	if !slices.Equal(got, want) {
		t.Fatalf("got %s, want %s", short(got), short(want))
	}
}

func TestReadErrorReturnedAsIs(t *testing.T) {
	boom := errors.New("boom")
	r := io.MultiReader(strings.NewReader("data: a\n\ndata: b\n"), iotest.ErrReader(boom))
	got := decodeAll(t, r, 0)
	if got.err != boom {
		t.Fatalf("error = %v, want the reader's own error", got.err)
	}
	if !slices.Equal(got.msgs, []Message{msg("", "message", "a")}) {
		t.Fatalf("messages = %s", short(got.msgs))
	}
}

func TestReaderWithoutProgress(t *testing.T) {
	d := NewDecoder(emptyReader{})
	if _, err := d.Next(); err != io.ErrNoProgress {
		t.Fatalf("error = %v, want io.ErrNoProgress", err)
	}
}

type emptyReader struct{}

func (emptyReader) Read([]byte) (int, error) { return 0, nil }

func TestMessagesDoNotAliasBuffer(t *testing.T) {
	in := "event: t1\nid: i1\ndata: first\n\nevent: t2\nid: i2\ndata: second\n\n"
	d := NewDecoder(iotest.OneByteReader(strings.NewReader(in)))
	m1, err := d.Next()
	if err != nil {
		t.Fatal(err)
	}
	m2, err := d.Next()
	if err != nil {
		t.Fatal(err)
	}
	if m1 != msg("i1", "t1", "first") || m2 != msg("i2", "t2", "second") {
		t.Fatalf("got %+v and %+v", m1, m2)
	}
}
