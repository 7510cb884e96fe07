// Package engine serves HTTP/1.1 event streams whose connections were
// taken over (hijacked) from net/http after the request was parsed and
// authorised. One poller goroutine watches every such socket for hang-ups
// and for room to write; a few writer goroutines write whatever
// subscribers have queued, without ever waiting on a socket. An idle
// stream therefore costs no goroutine and no net/http buffer: only its
// socket, its subscription and a small [Stream].
//
// The engine decides how bytes reach a socket, nothing else: what a
// stream carries (selectors, identity, resume point), its connection
// slot and its logging belong to the caller, which learns of a stream's
// end through its [Owner]. See docs/architecture.md.
package engine

import (
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/herald-sse/herald/internal/netpoll"
)

// ErrUnsupported is returned by New where the platform has no poller;
// streams are then served some other way.
var ErrUnsupported = netpoll.ErrUnsupported

// Queue is what a stream sends: a subscriber's queue, drained by the
// engine. *herald.Subscriber implements it.
type Queue interface {
	// Replay writes, through fn, the events missed before the queue;
	// it runs once, before the stream goes live.
	Replay(fn func(frames [][]byte) error) error
	// Drain moves the queued frames to the end of frames; the frames
	// are shared and never modified.
	Drain(frames [][]byte) [][]byte
	// Removed reports whether the hub removed the queue, and why.
	Removed() (bool, error)
}

// Config says how one stream is served.
type Config struct {
	// Header is the response's header; the engine writes the status
	// line, adds Date, chunked framing and Connection: close.
	Header http.Header
	// Opening is written right after the header, before any replay.
	Opening [][]byte
	// WriteTimeout is how long the client may take to accept
	// ProgressBytes; a client slower than that is cut. Zero or negative:
	// no deadline.
	WriteTimeout time.Duration
	// Owner is told how the stream ends. Required.
	Owner Owner
}

// Owner is what the caller that handed a stream to the engine keeps of
// it: the engine asks it for the stream's last frame and tells it of the
// stream's end. An interface rather than two funcs, so that one value the
// caller keeps anyway serves for both, at no allocation per stream.
type Owner interface {
	// Farewell returns the frame that ends a stream the hub removed for
	// why (an expired token, say), sent after every queued event and
	// before the response's end. Nil: none.
	Farewell(why error) []byte
	// Ended is called exactly once, when the stream is over and its
	// connection closed. It runs on one of the engine's goroutines, with
	// the stream locked (or on Serve's caller, for a stream that never
	// went live). It may close the queue (which takes the hub's lock:
	// see locksordering.txt) and log, but must not wait for anything
	// that waits for the engine (another stream's end, a write), and
	// should be quick: the poller is one goroutine for every stream.
	Ended(End)
}

// End is how a stream ended.
type End struct {
	Reason Reason
	// Err is the error behind Reason, if any: the failed write's, the
	// queue's removal reason, or what stopped the replay.
	Err error
	// Duration is how long the stream was open.
	Duration time.Duration
}

// Reason says why a stream ended.
type Reason int

const (
	// Gone: the client closed or reset the connection.
	Gone Reason = iota
	// Failed: a write failed, or the socket could not be handed to the
	// poller.
	Failed
	// Slow: the queue overflowed or the client missed the write
	// deadline; the connection was reset, not ended cleanly.
	Slow
	// Removed: the hub removed the queue (it closed, the token expired,
	// the node resynced); what was queued was sent and the response
	// ended cleanly.
	Removed
	// UnexpectedInput: the client sent bytes after its request.
	UnexpectedInput
	// ReplayStopped: the stream never went live; Err says why (history
	// lost, the queue removed meanwhile, or a failed write).
	ReplayStopped
)

// ProgressBytes is how much a client must take within one WriteTimeout:
// the deadline is renewed after each such amount, so a client that reads
// slowly but steadily is not cut off in the middle of a large batch.
const ProgressBytes = 64 << 10

// Engine is one poller and its writers, shared by any number of streams.
type Engine struct {
	log     *slog.Logger
	poller  *netpoll.Poller
	writers []*writer

	nextWriter atomic.Uint32 // spreads streams over writers

	mu      sync.Mutex
	streams map[uint64]*Stream
	nextKey uint64
}

// New starts an engine: a poller goroutine and one writer per CPU, which
// run for the life of the process. log receives what concerns the
// engine as a whole (its poller failing); a stream's end is reported to
// its Owner.
func New(log *slog.Logger) (*Engine, error) {
	if !netpoll.Supported {
		return nil, ErrUnsupported
	}
	p, err := netpoll.New()
	if err != nil {
		return nil, err
	}
	e := &Engine{log: log, poller: p, streams: make(map[uint64]*Stream)}
	// One writer per CPU: writes are system calls, so more writers than
	// CPUs only add switching.
	for range max(1, runtime.GOMAXPROCS(0)) {
		w := &writer{wake: make(chan struct{}, 1), buf: make([]byte, chunkHeaderRoom+maxChunkPayload+len(chunkTrailer))}
		e.writers = append(e.writers, w)
		go w.run()
	}
	go e.poll()
	return e, nil
}

// CanServe reports whether c is a plain socket the engine can take over;
// TLS connections, and wrappers that hide the socket, are not.
func CanServe(c net.Conn) bool {
	_, ok := netpoll.RawConn(c)
	return ok
}

// poll reacts to socket events: a hang-up (or stray input) is confirmed
// by reading, and room to write resumes a stream that was waiting for it.
func (e *Engine) poll() {
	discard := make([]byte, 512) // only to see whether anything came
	for {
		err := e.poller.Wait(func(key uint64, ev netpoll.Events) {
			e.mu.Lock()
			s := e.streams[key]
			e.mu.Unlock()
			if s == nil {
				return // closed since the event was reported
			}
			if ev&(netpoll.Readable|netpoll.Hangup) != 0 {
				s.readClosed(discard)
			}
			if ev&netpoll.Writable != 0 && s.waitingForRoom.Load() {
				s.writer.schedule(s)
			}
		})
		if err != nil {
			// Only a broken epoll set gets here; nothing can watch the
			// sockets any more, so say so loudly.
			e.log.Error("herald: stream engine poller failed", "error", err)
			return
		}
	}
}

// add registers s for the poller's events and returns its key. Keys are
// never reused, so a late event for a closed stream finds nothing.
func (e *Engine) add(s *Stream) uint64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.nextKey++
	e.streams[e.nextKey] = s
	return e.nextKey
}

func (e *Engine) forget(key uint64) {
	e.mu.Lock()
	delete(e.streams, key)
	e.mu.Unlock()
}

// writer is one writer goroutine and the streams waiting for it.
type writer struct {
	mu    sync.Mutex
	ready []*Stream // guarded by mu
	spare []*Stream // guarded by mu
	wake  chan struct{}

	// Owned by the goroutine, reused for every stream it flushes.
	buf     []byte      // one chunk being written
	drained [][]byte    // frames drained from one queue
	cur     frameCursor // position in drained
}

// schedule puts s in line for a flush. It runs under the hub's locks (it
// is the subscriber's wake function): it only appends.
func (w *writer) schedule(s *Stream) {
	w.mu.Lock()
	if s.scheduled {
		w.mu.Unlock()
		return
	}
	s.scheduled = true
	w.ready = append(w.ready, s)
	first := len(w.ready) == 1
	w.mu.Unlock()
	if first {
		select {
		case w.wake <- struct{}{}:
		default:
		}
	}
}

func (w *writer) run() {
	for range w.wake {
		for {
			w.mu.Lock()
			batch := w.ready
			w.ready, w.spare = w.spare[:0], nil
			for _, s := range batch {
				s.scheduled = false // a wake from now on schedules it again
			}
			w.mu.Unlock()
			if len(batch) == 0 {
				break
			}
			for i, s := range batch {
				s.flush(w)
				batch[i] = nil
			}
			w.mu.Lock()
			w.spare = batch[:0]
			w.mu.Unlock()
		}
	}
}
