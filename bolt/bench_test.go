package bolt

import (
	"fmt"
	"testing"

	"github.com/herald-sse/herald"
	"github.com/herald-sse/herald/internal/historytest"
)

// Publishing through each store as the hub does, with 1 to 256 concurrent
// publishers of 100-byte events: events/s and per-publish latency.
//
//	go test -run '^$' -bench BenchmarkAppend -benchtime 3s ./bolt/
func BenchmarkAppend(b *testing.B) {
	stores := []struct {
		name string
		open func(b *testing.B) herald.History
	}{
		{"memory", func(*testing.B) herald.History { return herald.NewMemoryHistory(herald.Retention{}) }},
		{"bolt-always", func(b *testing.B) herald.History { return open(b, dbPath(b), Options{Sync: SyncAlways}) }},
		{"bolt-never", func(b *testing.B) herald.History { return open(b, dbPath(b), Options{Sync: SyncNever}) }},
	}
	for _, s := range stores {
		for _, publishers := range []int{1, 16, 256} {
			b.Run(fmt.Sprintf("%s/publishers=%d", s.name, publishers), func(b *testing.B) {
				h := s.open(b)
				defer h.Close()
				historytest.BenchAppend(b, h, publishers, 100)
			})
		}
	}
}

// Resuming a subscriber from 1,000,000 events back in a history of
// 1,100,000 where its topic has one event in 1,000 (1,000 to replay, 4
// pages).
//
//	go test -run '^$' -bench BenchmarkResume -benchtime 50x -benchmem ./bolt/
func BenchmarkResume(b *testing.B) {
	r := herald.Retention{MaxEvents: 2 * historytest.ResumeRecords, MaxBytes: 4 << 30}
	b.Run("memory", func(b *testing.B) {
		h := herald.NewMemoryHistory(r)
		defer h.Close()
		historytest.FillResume(b, h)
		historytest.BenchResume(b, h)
	})
	b.Run("bolt", func(b *testing.B) {
		h := open(b, dbPath(b), Options{Retention: r, Sync: SyncNever})
		defer h.Close()
		historytest.FillResume(b, h)
		historytest.BenchResume(b, h)
	})
}

// Lost after a churning per-topic cap left MaxEvents holes (one per
// record, each with a unique second topic), for a subscriber none of them
// concerns.
//
//	go test -run '^$' -bench BenchmarkLostChurn ./bolt/
func BenchmarkLostChurn(b *testing.B) {
	r := historytest.ChurnRetention()
	b.Run("memory", func(b *testing.B) {
		h := herald.NewMemoryHistory(r)
		defer h.Close()
		historytest.FillChurn(b, h)
		historytest.BenchLostChurn(b, h)
	})
	b.Run("bolt", func(b *testing.B) {
		h := open(b, dbPath(b), Options{Retention: r, Sync: SyncNever})
		defer h.Close()
		historytest.FillChurn(b, h)
		historytest.BenchLostChurn(b, h)
	})
}

// Opening a file of 100,000 records of 200 bytes (the default MaxEvents):
// the structure check and the checksums of every record.
//
//	go test -run '^$' -bench BenchmarkOpen -benchtime 10x ./bolt/
func BenchmarkOpen(b *testing.B) {
	path := dbPath(b)
	h := open(b, path, Options{Sync: SyncNever})
	recs := make([]herald.Record, 1000)
	data := string(make([]byte, 200))
	for i := range 100 {
		for j := range recs {
			recs[j] = herald.Record{Topics: []string{fmt.Sprint("t", (i*1000+j)%10)}, Data: data}
		}
		add(b, h, recs...)
	}
	if err := h.Close(); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for range b.N {
		h := open(b, path, Options{Sync: SyncNever})
		b.StopTimer()
		if err := h.Close(); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}
