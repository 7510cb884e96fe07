package sse

import (
	"bytes"
	"io"
	"strconv"
	"strings"
	"testing"
)

// jsonData is a typical ~100-byte JSON payload.
const jsonData = `{"id":1234567,"user":"alice","action":"update","path":"/docs/readme.md","ts":"2025-01-02T03:04:05Z"}`

func BenchmarkAppendEvent(b *testing.B) {
	e := &Event{ID: "1234567", Type: "update", Data: jsonData}
	buf, _ := AppendEvent(nil, e)
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		buf, _ = AppendEvent(buf[:0], e)
	}
}

func BenchmarkAppendEventMultiline(b *testing.B) {
	var s strings.Builder
	for i := range 10 {
		s.WriteString(jsonData[:60])
		s.WriteString([]string{"\n", "\r\n", "\r"}[i%3])
	}
	e := &Event{ID: "1234567", Type: "update", Data: s.String()}
	buf, _ := AppendEvent(nil, e)
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		buf, _ = AppendEvent(buf[:0], e)
	}
}

func BenchmarkDecoder(b *testing.B) {
	typical := func() []byte {
		var buf []byte
		for i := range 1000 {
			buf, _ = AppendEvent(buf, &Event{ID: strconv.Itoa(i), Type: "update", Data: jsonData})
		}
		return buf
	}
	long := func() []byte {
		var buf []byte
		for range 16 {
			buf, _ = AppendEvent(buf, &Event{Data: strings.Repeat(jsonData, 640)}) // 64 KiB lines
		}
		return buf
	}
	for _, bc := range []struct {
		name   string
		stream []byte
	}{
		{"typical", typical()},
		{"crlf", bytes.ReplaceAll(typical(), []byte("\n"), []byte("\r\n"))},
		{"cr", bytes.ReplaceAll(typical(), []byte("\n"), []byte("\r"))},
		{"64KiB-lines", long()},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.SetBytes(int64(len(bc.stream)))
			b.ReportAllocs()
			for b.Loop() {
				d := NewDecoder(bytes.NewReader(bc.stream))
				for {
					if _, err := d.Next(); err != nil {
						if err != io.EOF {
							b.Fatal(err)
						}
						break
					}
				}
			}
		})
	}
}
