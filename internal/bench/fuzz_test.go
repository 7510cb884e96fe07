package bench

import (
	"reflect"
	"testing"
	"unicode/utf8"
)

// FuzzDecoder checks the incremental decoder against package sse's
// decoder on arbitrary event-stream bodies, sent chunked (with chunk
// boundaries chosen by the fuzzer) and close-delimited, and checks that
// how the input is split into reads never matters, for whole arbitrary
// responses too. The seed corpus is in testdata/fuzz/FuzzDecoder.
func FuzzDecoder(f *testing.F) {
	for _, b := range bodies {
		f.Add([]byte(b), uint64(len(b)))
	}
	f.Fuzz(func(t *testing.T, body []byte, seed uint64) {
		if len(body) > 4096 {
			return // splitting at every byte is quadratic
		}
		// sse replaces invalid UTF-8 as a browser does; the bench does
		// not look inside data, so compare only valid input.
		valid := utf8.Valid(body)
		var want []event
		if valid {
			want = reference(t, body)
		}
		sizes := []int{1 + int(seed%7), 1 + int(seed>>3%31), 1 + int(seed>>8%200)}
		for _, resp := range [][]byte{
			append([]byte(chunkedHead), chunk(body, sizes...)...),
			append([]byte(closeHead), body...),
		} {
			got := checkSplits(t, resp, seed)
			if got.err != errEnded {
				t.Fatalf("%q: end %v, want a clean end", resp, got.err)
			}
			if valid && !reflect.DeepEqual(got.events, want) && len(got.events)+len(want) > 0 {
				t.Fatalf("%q:\n got %q\nwant %q", resp, got.events, want)
			}
		}
		// The body as a whole response: headers, framing and all.
		checkSplits(t, body, seed)
	})
}
