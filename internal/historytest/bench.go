package historytest

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/herald-sse/herald"
)

// BenchAppend publishes b.N one-record events to h as the hub does, from
// publishers goroutines: Append under one shared lock (the hub's publish
// lock), then wait after releasing it. It reports events/s and the 50th
// and 99th percentile of one publish's latency, Append to wait returning.
func BenchAppend(b *testing.B, h herald.History, publishers, dataBytes int) {
	data := strings.Repeat("x", dataBytes)
	var (
		hubMu sync.Mutex
		wg    sync.WaitGroup
		lats  = make([][]time.Duration, publishers)
		errMu sync.Mutex
		first error
	)
	fail := func(err error) {
		errMu.Lock()
		defer errMu.Unlock()
		if first == nil {
			first = err
		}
	}
	b.ResetTimer()
	start := time.Now()
	for p := range publishers {
		n := b.N / publishers
		if p < b.N%publishers {
			n++
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			lat := make([]time.Duration, 0, n)
			recs := make([]herald.Record, 1)
			for range n {
				recs[0] = herald.Record{Topics: []string{"bench"}, Data: data}
				t0 := time.Now()
				hubMu.Lock()
				wait, err := h.Append(recs)
				hubMu.Unlock()
				if err == nil && wait != nil {
					err = wait()
				}
				if err != nil {
					fail(err)
					return
				}
				lat = append(lat, time.Since(t0))
			}
			lats[p] = lat
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if first != nil {
		b.Fatal(first)
	}
	all := slices.Concat(lats...)
	slices.Sort(all)
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "events/s")
	if len(all) > 0 {
		b.ReportMetric(float64(all[len(all)/2].Nanoseconds())/1e3, "p50-µs")
		b.ReportMetric(float64(all[len(all)*99/100].Nanoseconds())/1e3, "p99-µs")
	}
}

// Resume workload: a history of ResumeRecords records in which one in
// ResumeEvery is published to the topic "rare" and the rest to "busy",
// each with a publisher ID "e<i>".
const (
	ResumeRecords = 1_100_000
	ResumeEvery   = 1_000
	ResumeBack    = 1_000_000
)

// FillResume appends the resume workload to h in batches, as fast as h
// takes it.
func FillResume(tb testing.TB, h herald.History) {
	tb.Helper()
	const batch = 2000
	recs := make([]herald.Record, batch)
	data := strings.Repeat("d", 100)
	now := time.Now()
	for i := 0; i < ResumeRecords; i += batch {
		for j := range recs {
			n := i + j
			topic := "busy"
			if n%ResumeEvery == ResumeEvery/2 {
				topic = "rare"
			}
			recs[j] = herald.Record{ID: fmt.Sprint("e", n), Topics: []string{topic}, Data: data, Time: now}
		}
		wait, err := h.Append(recs)
		if err == nil && wait != nil {
			err = wait()
		}
		if err != nil {
			tb.Fatal(err)
		}
	}
}

var errStop = errors.New("stop")

// BenchResume measures what resuming a subscriber of "rare" from the
// event ResumeBack events before the head costs, in h filled by
// FillResume: Lookup of its ID and Lost alone; with the first page of the
// replay (what delays the first byte); with the whole replay of the
// matching events. The same with a selector that is not a Topic shows the
// cost of scanning instead of the index.
func BenchResume(b *testing.B, h herald.History) {
	id := fmt.Sprint("e", ResumeRecords-ResumeBack)
	head := h.Head()
	rare := []herald.Selector{herald.Topic("rare")}
	scan := []herald.Selector{Prefix("rar")}
	want := ResumeBack / ResumeEvery
	resume := func(b *testing.B, sels []herald.Selector, firstPage bool) {
		var got int
		for b.Loop() {
			got = 0
			pos, ok := h.Lookup(id)
			if !ok {
				b.Fatalf("Lookup(%s) failed", id)
			}
			if h.Lost(pos, head, sels) {
				b.Fatal("Lost")
			}
			err := h.Replay(pos, head, sels, func(page []herald.Record) error {
				got += len(page)
				if firstPage {
					return errStop
				}
				return nil
			})
			if err != nil && err != errStop {
				b.Fatal(err)
			}
		}
		if !firstPage && got != want {
			b.Fatalf("replayed %d events, want %d", got, want)
		}
		b.ReportMetric(float64(got), "events")
	}
	b.Run("lookup+lost", func(b *testing.B) {
		for b.Loop() {
			pos, ok := h.Lookup(id)
			if !ok || h.Lost(pos, head, rare) {
				b.Fatal("cannot resume")
			}
		}
	})
	b.Run("topic/first-page", func(b *testing.B) { resume(b, rare, true) })
	b.Run("topic/all", func(b *testing.B) { resume(b, rare, false) })
	b.Run("scan/first-page", func(b *testing.B) { resume(b, scan, true) })
	b.Run("scan/all", func(b *testing.B) { resume(b, scan, false) })
}

// Churn workload: ChurnRecords records with the topics "orders" and
// "orders/<i>" (unique), in a history whose retention caps "orders" at 10
// (ChurnRetention): each record removes the oldest, leaving a hole that
// only the subscribers of its order would miss. Stores remember at most
// MaxEvents of them.
const ChurnRecords = 200_000

// ChurnRetention is the retention of the churn workload.
func ChurnRetention() herald.Retention {
	return herald.Retention{PerTopic: map[string]int{"orders": 10}}
}

// FillChurn appends the churn workload to h in batches.
func FillChurn(tb testing.TB, h herald.History) {
	tb.Helper()
	const batch = 1000
	recs := make([]herald.Record, batch)
	for i := 0; i < ChurnRecords; i += batch {
		for j := range recs {
			recs[j] = herald.Record{Topics: []string{"orders", fmt.Sprint("orders/", i+j)}, Data: "o"}
		}
		wait, err := h.Append(recs)
		if err == nil && wait != nil {
			err = wait()
		}
		if err != nil {
			tb.Fatal(err)
		}
	}
}

// BenchLostChurn measures Lost, which the hub calls under its publish
// lock, for a subscriber of one order (none of the holes in its range
// match it) resuming from back events before the head, in h filled by
// FillChurn: with a Topic selector (stores may index holes by topic) and
// with one that is not.
func BenchLostChurn(b *testing.B, h herald.History) {
	head := h.Head()
	for _, back := range []uint64{100, 10_000, 50_000} {
		for _, c := range []struct {
			name string
			sels []herald.Selector
		}{
			{"topic", []herald.Selector{herald.Topic("orders/none")}},
			{"scan", []herald.Selector{Prefix("orders/none")}},
		} {
			b.Run(fmt.Sprint(c.name, "/back=", back), func(b *testing.B) {
				for b.Loop() {
					if h.Lost(head-back, head, c.sels) {
						b.Fatal("Lost for a topic no removed record carried")
					}
				}
			})
		}
	}
}
