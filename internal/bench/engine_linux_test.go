//go:build linux

package bench

import (
	"math"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func newTestShard(run uint32) (*shard, *conn) {
	s := &shard{eng: &engine{tag: runTag(run)}, conns: make([]conn, 1), seqs: []uint64{0}}
	c := &s.conns[0]
	c.state = stStreaming
	s.cur, s.curIdx = c, 0
	return s, c
}

// The bench's own sink parses payloads and counts without allocating,
// whether the input arrives whole or splits events across reads.
func TestDecodePayloadsWithoutAllocating(t *testing.T) {
	tag := runTag(42)
	var body []byte
	for seq := uint64(1); seq <= 100; seq++ {
		body = append(body, "id: abcdefgh-12\ndata: "...)
		body = appendPayload(body, &tag, seq, 1000, DefaultSize)
		body = append(body, "\n\n"...)
	}
	s, c := newTestShard(42)
	if err := c.dec.feed([]byte(chunkedHead), s); err != nil {
		t.Fatal(err)
	}
	framed := chunk(body, 4000)
	framed = framed[:len(framed)-len("0\r\n\r\n")]
	feed := func() {
		for p := framed; len(p) > 0; {
			n := min(1000, len(p)) // events split across reads
			if err := c.dec.feed(p[:n], s); err != nil {
				t.Fatal(err)
			}
			p = p[n:]
		}
	}
	feed() // sequence 1..100
	if s.st.Deliveries != 100 || s.st.Gaps != 0 || s.st.Foreign != 0 || s.lat.Count() != 100 {
		t.Fatalf("after one pass: %+v", s.st)
	}
	allocs := testing.AllocsPerRun(20, feed)
	if allocs != 0 {
		t.Errorf("%.1f allocations per 100 events", allocs)
	}
	if s.st.Dups != 2100 { // AllocsPerRun runs once more to warm up
		t.Errorf("replayed sequence numbers: %d duplicates, want 2100", s.st.Dups)
	}
}

func TestSinkCountsGapsDuplicatesAndForeignEvents(t *testing.T) {
	s, c := newTestShard(7)
	other := runTag(8)
	tag := runTag(7)
	in := []byte(closeHead)
	for _, seq := range []uint64{1, 2, 5, 4, 5, 6} {
		in = append(in, "data: "...)
		in = appendPayload(in, &tag, seq, 1, 0)
		in = append(in, "\n\n"...)
	}
	in = append(in, "data: "...)
	in = appendPayload(in, &other, 7, 1, 0) // another run's
	in = append(in, "\n\ndata: plain\n\n"...)
	in = append(in, "data: "...)
	in = appendPayload(in, &tag, 9, 1, 0)
	in = append(in, "\ndata: second line\n\n"...) // not ours: two lines
	in = append(in, ":\n\n"...)                   // a heartbeat is no event
	if err := c.dec.feed(in, s); err != nil {
		t.Fatal(err)
	}
	st := s.st
	if st.Deliveries != 9 || st.Foreign != 3 || st.Gaps != 2 || st.Dups != 2 || s.seqs[0] != 6 || s.lat.Count() != 6 {
		t.Errorf("deliveries %d foreign %d gaps %d dups %d last %d latencies %d; want 9 3 2 2 6 6",
			st.Deliveries, st.Foreign, st.Gaps, st.Dups, s.seqs[0], s.lat.Count())
	}
}

// waitEngine polls until every stream connected or failed.
func waitEngine(t *testing.T, e *engine) stats {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st := e.snapshot(false)
		if st.ConnectDone {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("connects not done: %+v", st)
		}
		time.Sleep(5 * time.Millisecond) // polling a condition, not waiting for time
	}
}

func TestEngineConnectFailures(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := netip.MustParseAddrPort(ln.Addr().String())
	ln.Close()
	e, err := startEngine(engineConfig{Targets: oneTarget(closed), Streams: 10, ConnectConcurrency: 4, Shards: 2})
	if err != nil {
		t.Fatal(err)
	}
	st := waitEngine(t, e)
	if st.Failed != 10 || st.FailReasons["connect: connection refused"] != 10 {
		t.Errorf("closed port: %+v", st)
	}
	e.stop()

	// A server that accepts but never answers: the connects time out.
	ln, err = net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	e, err = startEngine(engineConfig{
		Targets: oneTarget(netip.MustParseAddrPort(ln.Addr().String())),
		Streams: 6, ConnectConcurrency: 6, ConnectTimeout: 100 * time.Millisecond,
		Sources: []netip.Addr{netip.MustParseAddr("127.0.0.9")},
	})
	if err != nil {
		t.Fatal(err)
	}
	st = waitEngine(t, e)
	if st.Failed != 6 || st.FailReasons[errConnectTimeout.Error()] != 6 {
		t.Errorf("silent server: %+v", st)
	}
	final := e.stop()
	if final.Attempted != 6 || final.MinSeq != math.MaxUint64 {
		t.Errorf("final %+v", final)
	}

	if _, err := startEngine(engineConfig{Targets: oneTarget(closed), Streams: 1 << 30}); err == nil || !strings.Contains(err.Error(), "file descriptors") {
		t.Errorf("more streams than descriptors: %v", err)
	}
}

func oneTarget(a netip.AddrPort) []engineTarget {
	return []engineTarget{{Addr: a, Request: []byte("GET / HTTP/1.1\r\n\r\n")}}
}

// With several targets, stream First+k of the run opens target
// (First+k) mod n, and failures are counted per target address.
func TestEngineSpreadsStreamsOverTargets(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := netip.MustParseAddrPort(ln.Addr().String())
	ln.Close()
	silent, err := net.Listen("tcp", "127.0.0.1:0") // accepts, never answers
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	quiet := netip.MustParseAddrPort(silent.Addr().String())
	targets := append(oneTarget(closed), oneTarget(quiet)...)
	// The run's streams 1 to 9: 2, 4, 6 and 8 to the closed port, the
	// odd ones to the silent server.
	e, err := startEngine(engineConfig{Targets: targets, First: 1, Streams: 9, ConnectConcurrency: 9,
		ConnectTimeout: 100 * time.Millisecond, Shards: 2})
	if err != nil {
		t.Fatal(err)
	}
	st := waitEngine(t, e)
	e.stop()
	refused, timedOut := closed.String()+": connect: connection refused", quiet.String()+": "+errConnectTimeout.Error()
	if st.Failed != 9 || st.FailReasons[refused] != 4 || st.FailReasons[timedOut] != 5 {
		t.Errorf("failures %v; want 4× %q and 5× %q", st.FailReasons, refused, timedOut)
	}
}
