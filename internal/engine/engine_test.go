package engine

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/herald-sse/herald"
	"github.com/herald-sse/herald/internal/netpoll"
)

// fakeQueue is a queue the test fills and removes by hand.
type fakeQueue struct {
	mu      sync.Mutex
	replay  [][]byte
	queued  [][]byte
	removed bool
	why     error
	wake    func()
}

func (q *fakeQueue) Replay(fn func([][]byte) error) error {
	if len(q.replay) == 0 {
		return nil
	}
	return fn(q.replay)
}

func (q *fakeQueue) Drain(frames [][]byte) [][]byte {
	q.mu.Lock()
	defer q.mu.Unlock()
	frames = append(frames, q.queued...)
	q.queued = nil
	return frames
}

func (q *fakeQueue) Removed() (bool, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.removed, q.why
}

func (q *fakeQueue) push(f string) {
	q.mu.Lock()
	q.queued = append(q.queued, []byte(f))
	q.mu.Unlock()
	q.wake()
}

func (q *fakeQueue) remove(why error) {
	q.mu.Lock()
	q.removed, q.why = true, why
	q.mu.Unlock()
	q.wake()
}

// recordingOwner counts the ends it is told of.
type recordingOwner struct {
	ends chan End
}

func (o *recordingOwner) Farewell(why error) []byte {
	if errors.Is(why, herald.ErrSubscriptionExpired) {
		return []byte("event: bye\ndata: expired\n\n")
	}
	return nil
}

func (o *recordingOwner) Ended(e End) { o.ends <- e }

// servedPair hands the server side of a TCP connection to a new stream
// and returns the client side.
func servedPair(t *testing.T, e *Engine, q *fakeQueue, o Owner) *bufio.Reader {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	server, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	s := e.NewStream()
	q.wake = s.Wake
	hdr := http.Header{"Content-Type": {"text/event-stream"}}
	e.Serve(s, server, q, Config{Header: hdr, Opening: [][]byte{[]byte(":\n")}, WriteTimeout: 5 * time.Second, Owner: o})
	return bufio.NewReader(client)
}

func newTestEngine(t *testing.T) *Engine {
	t.Helper()
	if !netpoll.Supported {
		t.Skip("no poller on this platform")
	}
	e, err := New(slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// The engine alone, without any HTTP handler: a chunked response with
// the opening, the replay, live events, the farewell and the terminating
// chunk, and one report of the end.
func TestServeWritesOneChunkedResponseAndReportsItsEnd(t *testing.T) {
	e := newTestEngine(t)
	q := &fakeQueue{replay: [][]byte{[]byte("id: 1\ndata: old\n\n")}}
	o := &recordingOwner{ends: make(chan End, 2)}
	br := servedPair(t, e, q, o)

	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" || !resp.Close {
		t.Fatalf("head: %d %v close=%v", resp.StatusCode, resp.Header, resp.Close)
	}
	q.push("data: live\n\n")
	q.remove(herald.ErrSubscriptionExpired)
	body, err := io.ReadAll(resp.Body) // ends only at the terminating chunk
	if err != nil {
		t.Fatalf("body not ended cleanly: %v (read %q)", err, body)
	}
	want := ":\nid: 1\ndata: old\n\ndata: live\n\nevent: bye\ndata: expired\n\n"
	if string(body) != want {
		t.Fatalf("body %q, want %q", body, want)
	}
	end := <-o.ends
	if end.Reason != Removed || !errors.Is(end.Err, herald.ErrSubscriptionExpired) {
		t.Fatalf("end %+v, want Removed with the removal reason", end)
	}
	select {
	case extra := <-o.ends:
		t.Fatalf("a second end reported: %+v", extra)
	default:
	}
}

// Bytes from the client after its request end the stream, reported as
// such, and a slow queue is cut, not ended.
func TestServeReportsInputAndSlowness(t *testing.T) {
	e := newTestEngine(t)
	for _, tc := range []struct {
		name string
		act  func(q *fakeQueue, client *bufio.Reader, conn net.Conn)
		want Reason
	}{
		{"input", nil, UnexpectedInput},
		{"slow", func(q *fakeQueue, _ *bufio.Reader, _ net.Conn) { q.remove(herald.ErrSlowSubscriber) }, Slow},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			client, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer client.Close()
			server, err := ln.Accept()
			if err != nil {
				t.Fatal(err)
			}
			q := &fakeQueue{}
			o := &recordingOwner{ends: make(chan End, 2)}
			s := e.NewStream()
			q.wake = s.Wake
			e.Serve(s, server, q, Config{Header: http.Header{}, Opening: [][]byte{[]byte(":\n")}, Owner: o})
			br := bufio.NewReader(client)
			if _, err := http.ReadResponse(br, nil); err != nil {
				t.Fatal(err)
			}
			if tc.act == nil {
				client.Write([]byte("GET / HTTP/1.1\r\n\r\n"))
			} else {
				tc.act(q, br, client)
			}
			if end := <-o.ends; end.Reason != tc.want {
				t.Fatalf("end %+v, want reason %v", end, tc.want)
			}
		})
	}
}

// gather never makes a chunk larger than maxChunkPayload, never an empty
// one, and loses no byte across chunk boundaries.
func TestGatherSplitsFramesIntoBoundedChunks(t *testing.T) {
	var frames [][]byte
	var want bytes.Buffer
	for i, n := range []int{10, maxChunkPayload - 5, 3 * maxChunkPayload, 1, 7} {
		f := bytes.Repeat([]byte{byte('a' + i)}, n)
		frames = append(frames, f)
		want.Write(f)
	}
	buf := make([]byte, chunkHeaderRoom+maxChunkPayload+len(chunkTrailer))
	cur := frameCursor{frames: frames}
	var got bytes.Buffer
	for len(cur.frames) > 0 {
		chunk := gather(buf, &cur)
		r := bufio.NewReader(bytes.NewReader(chunk))
		line, err := r.ReadString('\n')
		if err != nil || !strings.HasSuffix(line, "\r\n") {
			t.Fatalf("chunk without a size line: %q", chunk[:min(len(chunk), 16)])
		}
		var size int
		if _, err := fmtSscanHex(strings.TrimSuffix(line, "\r\n"), &size); err != nil || size == 0 || size > maxChunkPayload {
			t.Fatalf("chunk size %q: %v", line, err)
		}
		payload := chunk[len(line) : len(line)+size]
		if string(chunk[len(line)+size:]) != "\r\n" {
			t.Fatalf("chunk of %d bytes not closed by CRLF", size)
		}
		got.Write(payload)
	}
	if !bytes.Equal(got.Bytes(), want.Bytes()) {
		t.Fatalf("gathered %d bytes, want %d, or they differ", got.Len(), want.Len())
	}
}

func fmtSscanHex(s string, v *int) (int, error) {
	n := 0
	for _, c := range s {
		d := strings.IndexRune("0123456789abcdef", c)
		if d < 0 {
			return 0, errors.New("not hex")
		}
		n = n*16 + d
	}
	*v = n
	return 1, nil
}
