package sse_test

import (
	"fmt"
	"io"
	"log"
	"strings"
	"time"

	"github.com/herald-sse/herald/sse"
)

func ExampleAppendEvent() {
	// A server keeps one buffer per connection and reuses it, so encoding
	// does not allocate.
	var buf []byte
	buf, err := sse.AppendEvent(buf[:0], &sse.Event{
		ID:    "42",
		Type:  "price",
		Data:  "{\"eur\":1}\r\nsecond line",
		Retry: 5 * time.Second,
	})
	if err != nil {
		log.Fatal(err)
	}
	buf = sse.AppendComment(buf, "keep-alive")
	fmt.Print(string(buf))

	_, err = sse.AppendEvent(buf[:0], &sse.Event{ID: "evil\nretry: 1"})
	fmt.Println(err)
	// Output:
	// id: 42
	// event: price
	// retry: 5000
	// data: {"eur":1}
	// data: second line
	//
	// : keep-alive
	// sse: invalid event id: LF at byte 4
}

func ExampleDecoder() {
	stream := "retry: 3000\n" +
		": a comment\n" +
		"id: 1\n" +
		"event: greeting\n" +
		"data: hello\r\n" +
		"data: world\n" +
		"\n" +
		"data: no type, same id\n" +
		"\n" +
		"id: 2\n" +
		"data: cut off by the end of the stream"
	d := sse.NewDecoder(strings.NewReader(stream))
	for {
		m, err := d.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("id=%s type=%s data=%q\n", m.LastEventID, m.Type, m.Data)
	}
	fmt.Println("reconnect after", d.Retry(), "with Last-Event-ID", d.LastEventID())
	// Output:
	// id=1 type=greeting data="hello\nworld"
	// id=1 type=message data="no type, same id"
	// reconnect after 3s with Last-Event-ID 1
}
