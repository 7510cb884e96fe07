package bench

import (
	"encoding/json"
	"fmt"
	"math"
	"math/bits"
	"time"
)

// Histogram layout: values below 2*histSub are counted exactly; above, each
// power of two is split into histSub buckets, so a bucket is at most
// 1/histSub of its values wide (0.8%) and the middle of a bucket is within
// 0.4% of any value in it. Fixed buckets make histograms of different
// processes merge exactly.
const (
	histSubBits = 7
	histSub     = 1 << histSubBits
	// histMaxBits bounds recorded values to 2^40 ns (about 18 minutes);
	// larger ones are counted as that.
	histMaxBits = 40
	histBuckets = (histMaxBits-histSubBits+1)*histSub + histSub
	histMax     = int64(1)<<histMaxBits - 1
)

// Histogram counts durations in nanoseconds in fixed log-linear buckets
// with under 1% relative error. The zero value is empty and ready to use.
// Histograms of different processes merge exactly with Merge. It is not
// safe for concurrent use.
type Histogram struct {
	counts   []uint64 // allocated on first Record or Merge
	n        uint64
	sum      float64
	min, max int64
}

func histIndex(v int64) int {
	if v < 2*histSub {
		return int(v)
	}
	e := bits.Len64(uint64(v)) - (histSubBits + 1)
	return (e+1)*histSub + int(v>>e) - histSub
}

// histLow returns the smallest value counted in bucket i, and the bucket's
// width.
func histLow(i int) (low, width int64) {
	if i < 2*histSub {
		return int64(i), 1
	}
	e := i/histSub - 1
	m := int64(i%histSub + histSub)
	return m << e, int64(1) << e
}

// Record counts one value (a duration in nanoseconds). Negative values
// count as 0.
func (h *Histogram) Record(v int64) {
	if v < 0 {
		v = 0
	} else if v > histMax {
		v = histMax
	}
	if h.counts == nil {
		h.counts = make([]uint64, histBuckets)
	}
	h.counts[histIndex(v)]++
	if h.n == 0 || v < h.min {
		h.min = v
	}
	if v > h.max {
		h.max = v
	}
	h.n++
	h.sum += float64(v)
}

// Merge adds the counts of o to h.
func (h *Histogram) Merge(o *Histogram) {
	if o == nil || o.n == 0 {
		return
	}
	if h.counts == nil {
		h.counts = make([]uint64, histBuckets)
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	if h.n == 0 || o.min < h.min {
		h.min = o.min
	}
	if o.max > h.max {
		h.max = o.max
	}
	h.n += o.n
	h.sum += o.sum
}

// Reset empties h, keeping its buckets allocated.
func (h *Histogram) Reset() {
	clear(h.counts)
	h.n, h.sum, h.min, h.max = 0, 0, 0, 0
}

// Count returns the number of recorded values.
func (h *Histogram) Count() uint64 { return h.n }

// Min returns the smallest recorded value, exactly (0 when empty).
func (h *Histogram) Min() int64 { return h.min }

// Max returns the largest recorded value, exactly (0 when empty).
func (h *Histogram) Max() int64 { return h.max }

// Mean returns the mean of the recorded values (0 when empty).
func (h *Histogram) Mean() float64 {
	if h.n == 0 {
		return 0
	}
	return h.sum / float64(h.n)
}

// Quantile returns the q-quantile (0 ≤ q ≤ 1) by rank: an estimate of the
// smallest recorded value that at least ceil(q·Count) values are at most,
// within 0.4% of it. Quantile(0) is Min and Quantile(1) is Max, exactly.
func (h *Histogram) Quantile(q float64) int64 {
	if h.n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	if rank <= 1 {
		if q <= 0 {
			return h.min
		}
		rank = 1
	}
	if rank >= h.n {
		return h.max
	}
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			low, width := histLow(i)
			v := low + (width-1)/2
			return min(max(v, h.min), h.max)
		}
	}
	return h.max
}

// histJSON is the exact wire form of a Histogram: sparse [bucket, count]
// pairs.
type histJSON struct {
	Buckets [][2]uint64 `json:"buckets,omitempty"`
	N       uint64      `json:"n"`
	Sum     float64     `json:"sum"`
	Min     int64       `json:"min"`
	Max     int64       `json:"max"`
}

// MarshalJSON encodes h exactly and compactly, for transfer between
// processes.
func (h *Histogram) MarshalJSON() ([]byte, error) {
	j := histJSON{N: h.n, Sum: h.sum, Min: h.min, Max: h.max}
	for i, c := range h.counts {
		if c != 0 {
			j.Buckets = append(j.Buckets, [2]uint64{uint64(i), c})
		}
	}
	return json.Marshal(j)
}

// UnmarshalJSON decodes what MarshalJSON encoded, replacing h's contents.
func (h *Histogram) UnmarshalJSON(b []byte) error {
	var j histJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	h.Reset()
	var n uint64
	for _, bc := range j.Buckets {
		if bc[0] >= histBuckets {
			return fmt.Errorf("bench: histogram bucket %d out of range", bc[0])
		}
		if h.counts == nil {
			h.counts = make([]uint64, histBuckets)
		}
		h.counts[bc[0]] += bc[1]
		n += bc[1]
	}
	if n != j.N {
		return fmt.Errorf("bench: histogram counts add up to %d, not %d", n, j.N)
	}
	h.n, h.sum, h.min, h.max = j.N, j.Sum, j.Min, j.Max
	return nil
}

// Latency summarises a Histogram of durations, in milliseconds.
type Latency struct {
	Count  uint64  `json:"count"`
	MinMs  float64 `json:"min_ms"`
	MeanMs float64 `json:"mean_ms"`
	P50Ms  float64 `json:"p50_ms"`
	P90Ms  float64 `json:"p90_ms"`
	P99Ms  float64 `json:"p99_ms"`
	P999Ms float64 `json:"p999_ms"`
	MaxMs  float64 `json:"max_ms"`
}

func ms(ns int64) float64 { return float64(ns) / float64(time.Millisecond) }

// Summary returns the count, min, mean, p50, p90, p99, p99.9 and max of h.
func (h *Histogram) Summary() Latency {
	return Latency{
		Count:  h.n,
		MinMs:  ms(h.min),
		MeanMs: h.Mean() / float64(time.Millisecond),
		P50Ms:  ms(h.Quantile(0.50)),
		P90Ms:  ms(h.Quantile(0.90)),
		P99Ms:  ms(h.Quantile(0.99)),
		P999Ms: ms(h.Quantile(0.999)),
		MaxMs:  ms(h.max),
	}
}
