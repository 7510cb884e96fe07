package bench

import (
	"math"
	"net/netip"
	"time"
)

// engineConfig is what one process needs to run its share of the streams.
// It travels to worker processes as JSON.
type engineConfig struct {
	// Targets are the stream URLs' addresses and requests, which the
	// streams of a run take in turn.
	Targets []engineTarget `json:"targets"`
	// First is the run-wide number of this process's first stream: its
	// stream k (from 0) is the run's stream First+k, which opens
	// Targets[(First+k) % len(Targets)]. So the streams of all processes
	// together spread over the targets round robin.
	First int `json:"first,omitempty"`
	// Streams is how many streams this process opens.
	Streams int `json:"streams"`
	// Sources are the local addresses streams bind to, round robin; none
	// lets the kernel choose.
	Sources []netip.Addr `json:"sources,omitempty"`
	// ConnectConcurrency bounds connects in flight (from connect until
	// response headers) in this process.
	ConnectConcurrency int `json:"connect_concurrency"`
	// ConnectTimeout bounds one stream's time from connect until
	// response headers.
	ConnectTimeout time.Duration `json:"connect_timeout"`
	// RunID tags this run's payloads.
	RunID uint32 `json:"run_id"`
	// Shards is the number of poller goroutines; 0 means GOMAXPROCS.
	Shards int `json:"shards,omitempty"`
}

// engineTarget is one stream URL as the engine sees it.
type engineTarget struct {
	// Addr is the address streams connect to.
	Addr netip.AddrPort `json:"addr"`
	// Request is the HTTP request each stream sends.
	Request []byte `json:"request"`
}

// target returns the index in targets of the run's stream i.
func target(i, targets int) int {
	if targets <= 1 {
		return 0
	}
	return i % targets
}

// stats are the counters of a set of streams. They add up across shards
// and processes with merge.
type stats struct {
	Attempted int64 `json:"attempted"` // connects started
	Connected int64 `json:"connected"` // streams that got response headers
	Failed    int64 `json:"failed"`    // streams that never got them
	Closed    int64 `json:"closed"`    // connected streams that ended since
	// Deliveries counts dispatched events, ours or not.
	Deliveries int64 `json:"deliveries"`
	// Foreign counts delivered events without this run's payload.
	Foreign int64 `json:"foreign"`
	// Gaps counts sequence numbers a stream skipped; Dups counts events
	// whose sequence number was not above the stream's last.
	Gaps int64 `json:"gaps"`
	Dups int64 `json:"dups"`
	// Bytes counts bytes read from streams.
	Bytes int64 `json:"bytes"`
	// SeqSum adds up the last sequence number of every stream that
	// connected, for the count of events missing at the end.
	SeqSum uint64 `json:"seq_sum"`
	// MinSeq is the smallest last sequence number of a live stream
	// (math.MaxUint64 when none is live).
	MinSeq uint64 `json:"min_seq"`
	// ConnectDone is set when every stream has connected or failed.
	ConnectDone bool `json:"connect_done"`
	// FailReasons and CloseReasons count failures and ends by cause.
	FailReasons  map[string]int64 `json:"fail_reasons,omitempty"`
	CloseReasons map[string]int64 `json:"close_reasons,omitempty"`
	// Latency is the delivery latency histogram, ConnectTime the time
	// from connect to response headers; both only when asked for.
	Latency     *Histogram `json:"latency,omitempty"`
	ConnectTime *Histogram `json:"connect_time,omitempty"`
}

func newStats() stats {
	return stats{MinSeq: math.MaxUint64, ConnectDone: true}
}

// live returns the number of streams still open.
func (s *stats) live() int64 { return s.Connected - s.Closed }

// merge adds o to s.
func (s *stats) merge(o *stats) {
	s.Attempted += o.Attempted
	s.Connected += o.Connected
	s.Failed += o.Failed
	s.Closed += o.Closed
	s.Deliveries += o.Deliveries
	s.Foreign += o.Foreign
	s.Gaps += o.Gaps
	s.Dups += o.Dups
	s.Bytes += o.Bytes
	s.SeqSum += o.SeqSum
	s.MinSeq = min(s.MinSeq, o.MinSeq)
	s.ConnectDone = s.ConnectDone && o.ConnectDone
	s.FailReasons = addCounts(s.FailReasons, o.FailReasons)
	s.CloseReasons = addCounts(s.CloseReasons, o.CloseReasons)
	if o.Latency != nil {
		if s.Latency == nil {
			s.Latency = new(Histogram)
		}
		s.Latency.Merge(o.Latency)
	}
	if o.ConnectTime != nil {
		if s.ConnectTime == nil {
			s.ConnectTime = new(Histogram)
		}
		s.ConnectTime.Merge(o.ConnectTime)
	}
}

func addCounts(dst, src map[string]int64) map[string]int64 {
	if len(src) == 0 {
		return dst
	}
	if dst == nil {
		dst = make(map[string]int64, len(src))
	}
	for k, v := range src {
		dst[k] += v
	}
	return dst
}
