package sse

import "unicode/utf8"

// appendUTF8 appends b to dst, replacing each invalid UTF-8 sequence with
// U+FFFD the way the WHATWG "UTF-8 decode" algorithm does, because that is
// what an EventSource does to the stream whatever charset the server claims.
//
// Replacement works per maximal subpart (a truncated but otherwise well-formed
// prefix such as F0 90 80 becomes a single U+FFFD), which is where Go's own
// decoder differs: it would produce one U+FFFD per byte. Decoding each line
// on its own gives the same result as decoding the whole stream because CR,
// LF, ':' and ' ' are ASCII and can never be part of a multi-byte sequence.
func appendUTF8(dst, b []byte) []byte {
	if utf8.Valid(b) {
		return append(dst, b...)
	}
	for len(b) > 0 {
		if b[0] < utf8.RuneSelf {
			i := 1
			for i < len(b) && b[i] < utf8.RuneSelf {
				i++
			}
			dst = append(dst, b[:i]...)
			b = b[i:]
			continue
		}
		r, size := utf8.DecodeRune(b)
		if r != utf8.RuneError || size > 1 {
			dst = append(dst, b[:size]...)
			b = b[size:]
			continue
		}
		dst = append(dst, "\uFFFD"...)
		b = b[maximalSubpart(b):]
	}
	return dst
}

// maximalSubpart returns the length of the invalid sequence at the start of
// b: the lead byte plus the continuation bytes that could still have
// completed a valid character.
func maximalSubpart(b []byte) int {
	c := b[0]
	need := 0
	lo, hi := byte(0x80), byte(0xBF)
	switch {
	case c >= 0xC2 && c <= 0xDF:
		need = 1
	case c >= 0xE0 && c <= 0xEF:
		need = 2
		if c == 0xE0 {
			lo = 0xA0
		} else if c == 0xED {
			hi = 0x9F // surrogates are not characters
		}
	case c >= 0xF0 && c <= 0xF4:
		need = 3
		if c == 0xF0 {
			lo = 0x90
		} else if c == 0xF4 {
			hi = 0x8F // nothing above U+10FFFF
		}
	default:
		return 1
	}
	n := 1
	for n <= need && n < len(b) && b[n] >= lo && b[n] <= hi {
		lo, hi = 0x80, 0xBF
		n++
	}
	return n
}
