package bench

import "strconv"

// The data of a published event is
//
//	hb<run>.<seq>.<unix-nanoseconds>.xxxx…
//
// where run is the run's 8 hex digit tag, so events of another run (or
// another publisher) on the same topic are not mistaken for ours, and the
// x padding brings the data up to the configured size. Every byte is safe
// unescaped in a form body, a JSON string and an event-stream data line.

const runTagLen = 8

// runTag formats a run id as the tag in payloads.
func runTag(run uint32) [runTagLen]byte {
	const hex = "0123456789abcdef"
	var t [runTagLen]byte
	for i := range t {
		t[runTagLen-1-i] = hex[run>>(4*i)&0xf]
	}
	return t
}

// appendPayload appends the data of event seq sent at ts (unix ns), padded
// with 'x' to at least size bytes.
func appendPayload(b []byte, tag *[runTagLen]byte, seq uint64, ts int64, size int) []byte {
	start := len(b)
	b = append(b, "hb"...)
	b = append(b, tag[:]...)
	b = append(b, '.')
	b = strconv.AppendUint(b, seq, 10)
	b = append(b, '.')
	b = strconv.AppendInt(b, ts, 10)
	b = append(b, '.')
	for len(b)-start < size {
		b = append(b, 'x')
	}
	return b
}

// parsePayload reads the sequence number and timestamp of a payload of
// this run. ok is false for any other data.
func parsePayload(v []byte, tag *[runTagLen]byte) (seq uint64, ts int64, ok bool) {
	if len(v) < 2+runTagLen+5 || v[0] != 'h' || v[1] != 'b' || string(v[2:2+runTagLen]) != string(tag[:]) || v[2+runTagLen] != '.' {
		return 0, 0, false
	}
	v = v[2+runTagLen+1:]
	seq, v, ok = parseDigits(v)
	if !ok || seq == 0 {
		return 0, 0, false
	}
	t, _, ok := parseDigits(v)
	if !ok || t > 1<<63-1 {
		return 0, 0, false
	}
	return seq, int64(t), true
}

// parseDigits parses decimal digits ending at a '.' and returns the rest
// after the dot.
func parseDigits(v []byte) (uint64, []byte, bool) {
	var n uint64
	for i, c := range v {
		if c == '.' {
			return n, v[i+1:], i > 0
		}
		if c < '0' || c > '9' || i >= 19 {
			return 0, nil, false
		}
		n = n*10 + uint64(c-'0')
	}
	return 0, nil, false
}
