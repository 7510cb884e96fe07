package sse

import (
	"bytes"
	"io"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// FuzzRoundTrip checks rule E10: whatever the payload, a client decodes
// exactly what was encoded, up to CRLF and CR becoming LF (and, for bytes
// that are not UTF-8, the U+FFFD every browser substitutes).
func FuzzRoundTrip(f *testing.F) {
	for _, p := range payloadMatrix {
		f.Add(p, "", "")
		f.Add(p, "42", "update")
	}
	f.Add("x", "a\nb", "t")
	f.Add("x", "i", "a\rb")
	f.Add("\uFEFFdata: x", "\uFEFF", " t")
	f.Add("\xff\xe2\x82\r\x00", "\xf0\x90\x80", "\x00")
	f.Fuzz(func(t *testing.T, data, id, typ string) {
		e := Event{ID: id, Type: typ, Data: data}
		idErr, typErr := ValidateID(id), ValidateType(typ)
		if (idErr != nil) != strings.ContainsAny(id, "\r\n\x00") {
			t.Fatalf("ValidateID(%q) = %v", id, idErr)
		}
		if (typErr != nil) != strings.ContainsAny(typ, "\r\n") {
			t.Fatalf("ValidateType(%q) = %v", typ, typErr)
		}
		b, err := AppendEvent([]byte("dst"), &e)
		if idErr != nil || typErr != nil {
			if err == nil || string(b) != "dst" {
				t.Fatalf("AppendEvent of an invalid event = %q, %v", b, err)
			}
			return
		}
		if err != nil {
			t.Fatalf("AppendEvent: %v", err)
		}
		enc := b[len("dst"):]
		checkWellFormed(t, enc)
		want := expectedMessage(&e)
		for _, r := range []io.Reader{bytes.NewReader(enc), &chunkReader{chunks: randomChunks(enc, rand.New(rand.NewPCG(uint64(len(data)), 1)))}} {
			got := decodeAll(t, r, 0)
			if got.err != io.EOF || len(got.msgs) != 1 {
				t.Fatalf("decoding %q: %s, error %v", enc, short(got.msgs), got.err)
			}
			if got.msgs[0] != want {
				t.Fatalf("round trip of %+v:\n got %+v\nwant %+v", e, got.msgs[0], want)
			}
		}
	})
}

// FuzzDecoder checks that the decoder never panics, that how the input is
// split into reads never changes the result, and that the result agrees with
// the naive whole-input reference parser in ref_test.go.
func FuzzDecoder(f *testing.F) {
	for _, row := range parserRows {
		if row.name != "P29" {
			f.Add([]byte(strings.Join(row.chunks, "")), uint(len(row.chunks)))
		}
	}
	f.Fuzz(func(t *testing.T, input []byte, split uint) {
		whole := decodeAll(t, bytes.NewReader(input), 0)
		if whole.err != io.EOF {
			t.Fatalf("decoding ended with %v", whole.err)
		}
		rng := rand.New(rand.NewPCG(uint64(split), uint64(len(input))))
		chunked := decodeAll(t, &chunkReader{chunks: randomChunks(input, rng)}, 0)
		if !slices.Equal(chunked.msgs, whole.msgs) || chunked.lastID != whole.lastID ||
			chunked.retry != whole.retry || chunked.err != whole.err {
			t.Fatalf("chunked decoding differs:\n got %s, last id %q, retry %v, %v\nwant %s, last id %q, retry %v",
				short(chunked.msgs), chunked.lastID, chunked.retry, chunked.err, short(whole.msgs), whole.lastID, whole.retry)
		}
		ref := refParse(input)
		if !slices.Equal(ref.msgs, whole.msgs) || ref.lastID != whole.lastID || ref.retry != whole.retry {
			t.Fatalf("reference parser differs:\n ref %s, last id %q, retry %v\n got %s, last id %q, retry %v",
				short(ref.msgs), ref.lastID, ref.retry, short(whole.msgs), whole.lastID, whole.retry)
		}
	})
}
