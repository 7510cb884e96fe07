package sse

import (
	"math"
	"strconv"
	"strings"
	"time"
)

// This file holds a deliberately naive second implementation of the spec,
// written straight from the WHATWG text, to check the streaming Decoder
// against: decode the whole input first, then walk its lines.

// whatwgDecode is the WHATWG Encoding standard's "UTF-8 decode": strip one
// leading BOM, then run the UTF-8 decoder state machine with replacement.
func whatwgDecode(b []byte) string {
	if len(b) >= 3 && b[0] == 0xEF && b[1] == 0xBB && b[2] == 0xBF {
		b = b[3:]
	}
	return whatwgDecodeNoBOM(b)
}

func whatwgDecodeNoBOM(b []byte) string {
	var out strings.Builder
	var cp rune
	needed, seen := 0, 0
	lower, upper := byte(0x80), byte(0xBF)
	for i := 0; i < len(b); i++ {
		c := b[i]
		if needed == 0 {
			switch {
			case c <= 0x7F:
				out.WriteByte(c)
			case c >= 0xC2 && c <= 0xDF:
				needed, cp = 1, rune(c&0x1F)
			case c >= 0xE0 && c <= 0xEF:
				if c == 0xE0 {
					lower = 0xA0
				}
				if c == 0xED {
					upper = 0x9F
				}
				needed, cp = 2, rune(c&0xF)
			case c >= 0xF0 && c <= 0xF4:
				if c == 0xF0 {
					lower = 0x90
				}
				if c == 0xF4 {
					upper = 0x8F
				}
				needed, cp = 3, rune(c&0x7)
			default:
				out.WriteRune(0xFFFD)
			}
			continue
		}
		if c < lower || c > upper {
			cp, needed, seen = 0, 0, 0
			lower, upper = 0x80, 0xBF
			out.WriteRune(0xFFFD)
			i-- // restore the byte to the queue
			continue
		}
		lower, upper = 0x80, 0xBF
		cp = cp<<6 | rune(c&0x3F)
		seen++
		if seen == needed {
			out.WriteRune(cp)
			cp, needed, seen = 0, 0, 0
		}
	}
	if needed != 0 {
		out.WriteRune(0xFFFD)
	}
	return out.String()
}

type refResult struct {
	msgs   []Message
	lastID string
	retry  time.Duration
}

// refParse interprets a complete event stream per the WHATWG algorithm.
func refParse(input []byte) refResult {
	var r refResult
	s := whatwgDecode(input)
	var data, typ, idBuf string
	for {
		i := strings.IndexAny(s, "\r\n")
		if i < 0 {
			break // an unterminated last line is discarded with the stream
		}
		line := s[:i]
		if s[i] == '\r' && i+1 < len(s) && s[i+1] == '\n' {
			s = s[i+2:]
		} else {
			s = s[i+1:]
		}
		if line == "" {
			r.lastID = idBuf
			if data == "" {
				typ = ""
				continue
			}
			data = strings.TrimSuffix(data, "\n")
			t := typ
			if t == "" {
				t = "message"
			}
			r.msgs = append(r.msgs, Message{LastEventID: r.lastID, Type: t, Data: data})
			data, typ = "", ""
			continue
		}
		if strings.HasPrefix(line, ":") {
			continue
		}
		name, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch name {
		case "event":
			typ = value
		case "data":
			data += value + "\n"
		case "id":
			if !strings.ContainsRune(value, 0) {
				idBuf = value
			}
		case "retry":
			if value != "" && strings.Trim(value, "0123456789") == "" {
				n, err := strconv.ParseInt(value, 10, 64)
				max := int64(math.MaxInt64 / int64(time.Millisecond))
				if err != nil || n > max {
					n = max
				}
				r.retry = time.Duration(n) * time.Millisecond
			}
		}
	}
	return r
}

// normalizeNewlines is what a round trip does to a payload: every CRLF, CR
// and LF arrives as LF.
func normalizeNewlines(s string) string {
	s = strings.ReplaceAll(s, "\r\n", "\n")
	return strings.ReplaceAll(s, "\r", "\n")
}
