package bench

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
)

// refQuantile is the q-quantile by rank of sorted samples: the smallest
// value that at least ceil(q·n) samples are at most.
func refQuantile(sorted []int64, q float64) int64 {
	rank := int(math.Ceil(q * float64(len(sorted))))
	return sorted[max(rank, 1)-1]
}

func TestHistogramQuantilesWithin1Percent(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, dist := range []struct {
		name string
		gen  func() int64
	}{
		{"log-uniform 1ns..10s", func() int64 { return int64(math.Exp(r.Float64() * math.Log(1e10))) }},
		{"normal around 2ms", func() int64 { return max(int64(2e6+r.NormFloat64()*3e5), 0) }},
		{"small exact values", func() int64 { return r.Int64N(300) }},
		{"bimodal", func() int64 {
			if r.IntN(100) == 0 {
				return 5e8 + r.Int64N(1e8)
			}
			return 1e5 + r.Int64N(1e4)
		}},
	} {
		t.Run(dist.name, func(t *testing.T) {
			var h Histogram
			samples := make([]int64, 50000)
			for i := range samples {
				samples[i] = dist.gen()
				h.Record(samples[i])
			}
			slices.Sort(samples)
			for _, q := range []float64{0, 0.001, 0.1, 0.5, 0.9, 0.99, 0.999, 0.9999, 1} {
				got, want := h.Quantile(q), refQuantile(samples, q)
				if d := math.Abs(float64(got - want)); d > 0.01*float64(want) && d > 1 {
					t.Errorf("q%v: %d, want %d (±1%%)", q, got, want)
				}
			}
			if h.Min() != samples[0] || h.Max() != samples[len(samples)-1] || h.Count() != uint64(len(samples)) {
				t.Errorf("min %d max %d count %d", h.Min(), h.Max(), h.Count())
			}
			var sum float64
			for _, v := range samples {
				sum += float64(v)
			}
			if m := sum / float64(len(samples)); math.Abs(h.Mean()-m) > 1e-6*m {
				t.Errorf("mean %v, want %v", h.Mean(), m)
			}
		})
	}
}

// Histograms filled separately (as in worker processes) and merged, also
// through their JSON form, equal one histogram of all the values.
func TestHistogramMergeIsExact(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	var all Histogram
	parts := make([]Histogram, 3)
	var samples []int64
	for i := range 30000 {
		v := int64(math.Exp(r.Float64() * math.Log(1e9)))
		samples = append(samples, v)
		all.Record(v)
		parts[i%3].Record(v)
	}
	var merged Histogram
	for i := range parts {
		b, err := json.Marshal(&parts[i])
		if err != nil {
			t.Fatal(err)
		}
		var back Histogram
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatal(err)
		}
		merged.Merge(&back)
	}
	if !reflect.DeepEqual(merged.counts, all.counts) || merged.n != all.n || merged.min != all.min || merged.max != all.max {
		t.Fatal("merged histogram differs from the histogram of all values")
	}
	if math.Abs(merged.sum-all.sum) > 1e-9*all.sum {
		t.Errorf("sum %v, want %v", merged.sum, all.sum)
	}
	slices.Sort(samples)
	for _, q := range []float64{0.5, 0.9, 0.99} {
		if got, want := merged.Quantile(q), refQuantile(samples, q); math.Abs(float64(got-want)) > 0.01*float64(want) {
			t.Errorf("merged q%v: %d, want %d", q, got, want)
		}
	}
	var empty Histogram
	merged.Merge(&empty)
	merged.Merge(nil)
	if merged.n != all.n {
		t.Error("merging empty histograms changed the count")
	}
}

func TestHistogramEdges(t *testing.T) {
	var h Histogram
	if h.Quantile(0.5) != 0 || h.Mean() != 0 {
		t.Error("empty histogram")
	}
	h.Record(-5)
	h.Record(math.MaxInt64)
	if h.Min() != 0 || h.Max() != histMax {
		t.Errorf("clamping: min %d max %d", h.Min(), h.Max())
	}
	// Every bucket index is in range and bucket bounds are consistent.
	for _, v := range []int64{0, 1, 255, 256, 257, 511, 512, 1e6, histMax} {
		i := histIndex(v)
		low, width := histLow(i)
		if i < 0 || i >= histBuckets || v < low || v >= low+width {
			t.Errorf("value %d: bucket %d [%d, %d)", v, i, low, low+width)
		}
	}
	var bad Histogram
	if err := json.Unmarshal([]byte(`{"buckets":[[99999,1]],"n":1}`), &bad); err == nil {
		t.Error("accepted an out-of-range bucket")
	}
	if err := json.Unmarshal([]byte(`{"buckets":[[1,1]],"n":2}`), &bad); err == nil {
		t.Error("accepted counts that do not add up")
	}
}
