//go:build linux

package bench

import (
	"errors"
	"fmt"
	"math"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/herald-sse/herald/internal/netpoll"
)

// The engine opens streams with non-blocking sockets of its own and reads
// them from a few poller goroutines (shards), each owning a share of the
// connections and one read buffer. A stream costs a socket and a conn
// (about 120 bytes), plus a line buffer only while a line spans reads:
// no goroutine, no runtime poll descriptor, no per-read allocation.
//
// The sockets are not net.Conns: the runtime's poller never sees them, so
// readiness is processed once (by our epoll set), and reads are plain
// read(2) calls on the descriptor.

// supported reports whether this platform can run the engine.
const supported = netpoll.Supported

// ipBindAddressNoPort is IP_BIND_ADDRESS_NO_PORT: bind the source address
// now but choose the port at connect, by the full 4-tuple, so a source
// address is not limited to one connection per ephemeral port overall.
const ipBindAddressNoPort = 24

// shardWakeKey is the poller key of a shard's wake-up pipe.
const shardWakeKey = math.MaxUint64 - 1

// readBufSize is how much one read(2) takes at most.
const readBufSize = 64 << 10

// minSeqEvery is how often a busy shard recomputes its minimum sequence.
const minSeqEvery = time.Millisecond

// tickEvery is how often shards wake up without socket events, to
// refresh their minimum sequence after the last events of a burst;
// every timeoutTicks ticks they also time out connects.
const (
	tickEvery    = 5 * time.Millisecond
	timeoutTicks = 10
)

// conn states.
const (
	stIdle       uint8 = iota // not started
	stConnecting              // connect in progress
	stWriting                 // sending the request
	stHeaders                 // waiting for the response headers
	stStreaming               // reading events
	stFailed                  // never connected
	stClosed                  // connected, then ended
)

// conn is one stream. Only its shard's goroutine touches it.
type conn struct {
	fd     int32
	idx    int32 // position in the shard's conns, and poller key
	reqOff int32 // request bytes sent
	state  uint8
	evOurs bool   // the current event's data is one of our payloads
	start  int64  // connect start, ns since the engine's epoch
	evSeq  uint64 // the current event's sequence number
	evTS   int64  // the current event's send time, unix ns
	dec    decoder
}

// engine runs this process's streams.
type engine struct {
	cfg      engineConfig
	epoch    time.Time
	tag      [runTagLen]byte
	shards   []*shard
	stopping atomic.Bool
	changed  chan struct{} // a shard's minimum sequence rose
	tickStop chan struct{}
	tickDone chan struct{}
	stopOnce sync.Once
	final    stats
}

// shard is one poller goroutine and the connections it owns.
type shard struct {
	eng       *engine
	idx       int
	poller    *netpoll.Poller
	wakeR     int
	wakeW     int
	conns     []conn
	buf       []byte
	next      int // next conn to start
	inflight  int
	maxFlight int
	first     int                // the run-wide number of conns[0]
	dsts      []syscall.Sockaddr // per target, for connect (which writes to them)
	src4      syscall.SockaddrInet4
	src6      syscall.SockaddrInet6
	woken     bool
	ticks     int
	dirty     bool  // sequence numbers changed since the last updateMin
	cur       *conn // the conn being decoded, for the sink methods
	now       int64 // unix ns of the last read
	curIdx    int   // the index of cur
	lastMin   time.Time
	minSeq    atomic.Uint64
	done      chan struct{}
	// seqs holds each conn's highest sequence number received while it
	// streams, and MaxUint64 otherwise: a compact array, so the minimum
	// over live streams is a quick scan. closedSum adds up the last
	// sequence numbers of the streams that ended.
	seqs      []uint64
	closedSum uint64

	// Guarded by mu, which the shard holds while it handles a batch of
	// socket events, so readers see whole batches.
	mu       sync.Mutex
	locked   bool // the shard goroutine holds mu
	st       stats
	lat      Histogram
	connHist Histogram
}

// fdLimit returns the number of file descriptors this process may open.
func fdLimit() (uint64, bool) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, false
	}
	return lim.Cur, true
}

// startEngine opens the poller shards and starts connecting.
func startEngine(cfg engineConfig) (*engine, error) {
	if len(cfg.Targets) == 0 {
		return nil, errors.New("bench: no target address")
	}
	for _, t := range cfg.Targets {
		if !t.Addr.IsValid() {
			return nil, errors.New("bench: no target address")
		}
	}
	if lim, ok := fdLimit(); ok && uint64(cfg.Streams)+64 > lim {
		return nil, fmt.Errorf("bench: %d streams need more file descriptors than this process may open (ulimit -n %d); use fewer streams per process", cfg.Streams, lim)
	}
	n := cfg.Shards
	if n <= 0 {
		n = runtime.GOMAXPROCS(0)
	}
	n = max(min(n, cfg.Streams), 1)
	e := &engine{
		cfg:      cfg,
		epoch:    time.Now(),
		tag:      runTag(cfg.RunID),
		changed:  make(chan struct{}, 1),
		tickStop: make(chan struct{}),
		tickDone: make(chan struct{}),
	}
	concurrency := max(cfg.ConnectConcurrency, 1)
	first := cfg.First
	for i := range n {
		count := cfg.Streams / n
		if i < cfg.Streams%n {
			count++
		}
		s, err := newShard(e, i, first, count, max(concurrency/n, 1))
		if err != nil {
			for _, s := range e.shards {
				s.release()
			}
			return nil, err
		}
		e.shards = append(e.shards, s)
		first += count
	}
	for _, s := range e.shards {
		go s.run()
	}
	go e.tick()
	return e, nil
}

func newShard(e *engine, idx, first, count, maxFlight int) (*shard, error) {
	p, err := netpoll.New()
	if err != nil {
		return nil, err
	}
	var pipe [2]int
	if err := syscall.Pipe2(pipe[:], syscall.O_NONBLOCK|syscall.O_CLOEXEC); err != nil {
		p.Close()
		_ = p.Wait(nil)
		return nil, fmt.Errorf("bench: pipe2: %w", err)
	}
	s := &shard{
		eng: e, idx: idx, poller: p, wakeR: pipe[0], wakeW: pipe[1],
		conns: make([]conn, count), seqs: make([]uint64, count), buf: make([]byte, readBufSize),
		maxFlight: maxFlight, first: first, done: make(chan struct{}),
		st: newStats(),
	}
	for i := range s.seqs {
		s.seqs[i] = math.MaxUint64
	}
	s.minSeq.Store(math.MaxUint64)
	if err := p.Add(s.wakeR, shardWakeKey); err != nil {
		s.release()
		return nil, err
	}
	for _, t := range e.cfg.Targets {
		if a := t.Addr; a.Addr().Is4() {
			s.dsts = append(s.dsts, &syscall.SockaddrInet4{Port: int(a.Port()), Addr: a.Addr().As4()})
		} else {
			s.dsts = append(s.dsts, &syscall.SockaddrInet6{Port: int(a.Port()), Addr: a.Addr().As16()})
		}
	}
	return s, nil
}

// release frees a shard that never ran.
func (s *shard) release() {
	s.poller.Close()
	_ = s.poller.Wait(nil)
	syscall.Close(s.wakeR)
	syscall.Close(s.wakeW)
}

// tick wakes every shard periodically.
func (e *engine) tick() {
	defer close(e.tickDone)
	t := time.NewTicker(tickEvery)
	defer t.Stop()
	for {
		select {
		case <-e.tickStop:
			return
		case <-t.C:
			for _, s := range e.shards {
				s.wake()
			}
		}
	}
}

func (s *shard) wake() {
	_, _ = syscall.Write(s.wakeW, []byte{1})
}

// snapshot returns the current counters of every shard, with the latency
// and connect histograms when hists is set.
func (e *engine) snapshot(hists bool) stats {
	total := newStats()
	for _, s := range e.shards {
		s.mu.Lock()
		st := s.st
		st.MinSeq = s.minSeq.Load()
		st.ConnectDone = st.Attempted == int64(len(s.conns)) && st.Connected+st.Failed == st.Attempted
		if hists {
			st.Latency, st.ConnectTime = &s.lat, &s.connHist
		}
		total.merge(&st)
		s.mu.Unlock()
	}
	if !hists {
		total.Latency, total.ConnectTime = nil, nil
	}
	return total
}

// minSeq returns the smallest last sequence number of a live stream.
func (e *engine) minSeq() uint64 {
	m := uint64(math.MaxUint64)
	for _, s := range e.shards {
		m = min(m, s.minSeq.Load())
	}
	return m
}

// stop closes every stream and returns the final counters with
// histograms. It may be called more than once.
func (e *engine) stop() stats {
	e.stopOnce.Do(func() {
		e.stopping.Store(true)
		close(e.tickStop)
		<-e.tickDone
		for _, s := range e.shards {
			s.wake()
		}
		for _, s := range e.shards {
			<-s.done
		}
		e.final = e.snapshot(true)
	})
	return e.final
}

func (s *shard) mono() int64 { return int64(time.Since(s.eng.epoch)) }

// target returns the index of the target of conns[i].
func (s *shard) target(i int) int { return target(s.first+i, len(s.dsts)) }

// reason names the cause of a stream's failure or end in the counts: with
// several targets, prefixed by the stream's target address.
func (s *shard) reason(c *conn, err error) string {
	if len(s.dsts) <= 1 {
		return err.Error()
	}
	return s.eng.cfg.Targets[s.target(int(c.idx))].Addr.String() + ": " + err.Error()
}

// run is the shard goroutine.
func (s *shard) run() {
	defer close(s.done)
	for {
		s.startConnects()
		err := s.poller.Wait(s.handle)
		if err != nil {
			if s.locked {
				s.locked = false
				s.mu.Unlock()
			}
			break
		}
		tick := s.woken
		if tick {
			s.woken = false
			if s.ticks++; s.ticks%timeoutTicks == 0 {
				s.lock()
				s.timeouts()
			}
		}
		if s.locked {
			s.locked = false
			s.mu.Unlock()
		}
		if s.eng.stopping.Load() {
			s.shutdown()
			s.poller.Close()
			continue // Wait now returns ErrClosed and releases the set
		}
		if s.dirty && (tick || time.Since(s.lastMin) >= minSeqEvery) {
			s.updateMin()
		}
	}
	syscall.Close(s.wakeR)
	syscall.Close(s.wakeW)
}

func (s *shard) lock() {
	if !s.locked {
		s.mu.Lock()
		s.locked = true
	}
}

// startConnects starts connects until the in-flight limit.
func (s *shard) startConnects() {
	if s.next >= len(s.conns) || s.inflight >= s.maxFlight || s.eng.stopping.Load() {
		return
	}
	s.lock()
	for s.next < len(s.conns) && s.inflight < s.maxFlight {
		i := s.next
		s.next++
		s.connect(&s.conns[i], i)
	}
	s.locked = false
	s.mu.Unlock()
}

// connect starts a non-blocking connect for c, whose poller key is i.
func (s *shard) connect(c *conn, i int) {
	s.st.Attempted++
	c.idx = int32(i)
	c.start = s.mono()
	c.fd = -1
	c.state = stConnecting
	s.inflight++
	t := s.target(i)
	family := syscall.AF_INET
	if s.eng.cfg.Targets[t].Addr.Addr().Is6() {
		family = syscall.AF_INET6
	}
	fd, err := syscall.Socket(family, syscall.SOCK_STREAM|syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		s.fail(c, sysErr("socket", err))
		return
	}
	c.fd = int32(fd)
	if src := s.eng.cfg.Sources; len(src) > 0 {
		a := src[(s.idx+i*len(s.eng.shards))%len(src)]
		_ = syscall.SetsockoptInt(fd, syscall.IPPROTO_IP, ipBindAddressNoPort, 1)
		var sa syscall.Sockaddr
		if a.Is4() {
			s.src4.Addr = a.As4()
			sa = &s.src4
		} else {
			s.src6.Addr = a.As16()
			sa = &s.src6
		}
		if err := syscall.Bind(fd, sa); err != nil {
			s.fail(c, sysErr("bind", err))
			return
		}
	}
	if err := syscall.Connect(fd, s.dsts[t]); err != nil && err != syscall.EINPROGRESS {
		s.fail(c, sysErr("connect", err))
		return
	}
	if err := s.poller.Add(fd, uint64(i)); err != nil {
		s.fail(c, err)
	}
}

// sysErr names a failed system call the way results count failures.
func sysErr(call string, err error) error {
	if errno, ok := err.(syscall.Errno); ok {
		return errnoError{call, errno}
	}
	return fmt.Errorf("%s: %w", call, err)
}

type errnoError struct {
	call  string
	errno syscall.Errno
}

func (e errnoError) Error() string { return e.call + ": " + e.errno.Error() }

var errConnectTimeout = errors.New("timed out waiting for response headers")

// fail ends a stream that never connected.
func (s *shard) fail(c *conn, err error) {
	if c.fd >= 0 {
		syscall.Close(int(c.fd))
		c.fd = -1
	}
	c.state = stFailed
	c.dec = decoder{}
	s.inflight--
	s.st.Failed++
	s.st.FailReasons = addCount(s.st.FailReasons, s.reason(c, err))
}

// closeConn ends a connected stream.
func (s *shard) closeConn(c *conn, err error) {
	i := int(c.idx)
	s.closedSum += s.seqs[i]
	s.seqs[i] = math.MaxUint64
	s.dirty = true
	syscall.Close(int(c.fd))
	c.fd = -1
	c.state = stClosed
	c.dec = decoder{}
	s.st.Closed++
	s.st.CloseReasons = addCount(s.st.CloseReasons, s.reason(c, err))
}

func addCount(m map[string]int64, k string) map[string]int64 {
	if m == nil {
		m = make(map[string]int64)
	}
	m[k]++
	return m
}

// handle reacts to the events of one socket.
func (s *shard) handle(key uint64, ev netpoll.Events) {
	if key == shardWakeKey {
		var b [64]byte
		for {
			n, err := syscall.Read(s.wakeR, b[:])
			if n <= 0 || err != nil {
				break
			}
		}
		s.woken = true
		return
	}
	c := &s.conns[key]
	switch c.state {
	case stConnecting:
		if ev&(netpoll.Writable|netpoll.Hangup) == 0 {
			return
		}
		s.lock()
		errno, err := syscall.GetsockoptInt(int(c.fd), syscall.SOL_SOCKET, syscall.SO_ERROR)
		if err == nil && errno != 0 {
			err = syscall.Errno(errno)
		}
		if err != nil {
			s.fail(c, sysErr("connect", err))
			return
		}
		c.state = stWriting
		fallthrough
	case stWriting:
		s.lock()
		if !s.writeRequest(c) {
			return
		}
		fallthrough
	case stHeaders, stStreaming:
		if ev&(netpoll.Readable|netpoll.Hangup) != 0 {
			s.lock()
			s.read(c, ev&netpoll.Hangup != 0)
		}
	}
}

// writeRequest sends what is left of the request and reports whether it
// is all sent.
func (s *shard) writeRequest(c *conn) bool {
	req := s.eng.cfg.Targets[s.target(int(c.idx))].Request
	for int(c.reqOff) < len(req) {
		n, err := syscall.Write(int(c.fd), req[c.reqOff:])
		switch {
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN:
			return false // the poller reports Writable
		case err != nil:
			s.fail(c, sysErr("write", err))
			return false
		}
		c.reqOff += int32(n)
	}
	c.state = stHeaders
	return true
}

// read reads what c has received and decodes it. After a short read the
// socket is drained, so the next edge will report new bytes; on hangup it
// reads on to the end.
func (s *shard) read(c *conn, hangup bool) {
	for {
		n, err := syscall.Read(int(c.fd), s.buf)
		switch {
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN:
			return
		case err != nil:
			s.end(c, sysErr("read", err))
			return
		case n == 0:
			s.end(c, c.dec.eof())
			return
		}
		s.now = time.Now().UnixNano()
		s.st.Bytes += int64(n)
		s.cur, s.curIdx = c, int(c.idx)
		err = c.dec.feed(s.buf[:n], s)
		if c.state == stHeaders && c.dec.phase != phHeaders {
			s.connected(c)
		}
		if err != nil {
			s.end(c, err)
			return
		}
		if n < len(s.buf) && !hangup {
			return
		}
	}
}

// connected records a stream whose response headers arrived.
func (s *shard) connected(c *conn) {
	s.seqs[int(c.idx)] = 0
	s.dirty = true
	c.state = stStreaming
	s.inflight--
	s.st.Connected++
	s.connHist.Record(s.mono() - c.start)
}

// end closes c: a failure before its headers, an end after.
func (s *shard) end(c *conn, err error) {
	if c.state == stStreaming {
		s.closeConn(c, err)
	} else {
		s.fail(c, err)
	}
}

// timeouts fails connects that took too long.
func (s *shard) timeouts() {
	if s.inflight == 0 {
		return
	}
	limit := s.eng.cfg.ConnectTimeout
	if limit <= 0 {
		return
	}
	now := s.mono()
	for i := range s.next {
		c := &s.conns[i]
		if c.state >= stConnecting && c.state <= stHeaders && time.Duration(now-c.start) > limit {
			s.fail(c, errConnectTimeout)
		}
	}
}

// updateMin recomputes the shard's smallest sequence number of a live
// stream, and the sum of last sequence numbers, and tells the engine when
// the minimum rose.
func (s *shard) updateMin() {
	s.lastMin = time.Now()
	s.dirty = false
	m := uint64(math.MaxUint64)
	sum := s.closedSum
	for _, v := range s.seqs {
		if v != math.MaxUint64 {
			m = min(m, v)
			sum += v
		}
	}
	s.mu.Lock()
	s.st.SeqSum = sum
	s.mu.Unlock()
	if s.minSeq.Swap(m) != m {
		select {
		case s.eng.changed <- struct{}{}:
		default:
		}
	}
}

// shutdown closes every socket and records final counters.
func (s *shard) shutdown() {
	s.updateMin()
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range s.conns {
		c := &s.conns[i]
		if c.fd >= 0 && c.state >= stConnecting && c.state <= stStreaming {
			syscall.Close(int(c.fd))
			c.fd = -1
		}
	}
}

// The sink methods see the events of s.cur.

func (s *shard) data(v []byte, first bool) {
	c := s.cur
	if first {
		c.evSeq, c.evTS, c.evOurs = parsePayload(v, &s.eng.tag)
	} else {
		c.evOurs = false // ours have one data line
	}
}

func (s *shard) field(name, value []byte) {}

func (s *shard) dispatch(hasData bool) {
	c := s.cur
	ours := c.evOurs
	c.evOurs = false
	if !hasData {
		return
	}
	s.st.Deliveries++
	if !ours {
		s.st.Foreign++
		return
	}
	s.lat.Record(s.now - c.evTS)
	last := &s.seqs[s.curIdx]
	if *last == math.MaxUint64 {
		return // still reading its headers: cannot happen, as headers come first
	}
	if c.evSeq <= *last {
		s.st.Dups++
		return
	}
	s.st.Gaps += int64(c.evSeq - *last - 1)
	*last = c.evSeq
	s.dirty = true
}
