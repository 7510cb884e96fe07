package redis_test

import (
	"context"
	"testing"

	"github.com/herald-sse/herald"
	"github.com/herald-sse/herald/internal/servicetest"
	"github.com/herald-sse/herald/redis"
)

// BenchmarkAppendFollow measures a publish's round trip through Redis:
// append one record, and wait until a follower has read it back.
func BenchmarkAppendFollow(b *testing.B) {
	url := servicetest.RedisURL(b)
	br := open(b, redis.Options{URL: url, Prefix: newPrefix(b, url)})
	epoch, _, err := br.Head(ctxT(b))
	if err != nil {
		b.Fatal(err)
	}
	got := make(chan uint64, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- br.Follow(ctx, epoch, 0, func(bt herald.Batch) error {
			for _, r := range bt.Records {
				got <- r.Position
			}
			return nil
		})
	}()
	defer func() { cancel(); <-done }()
	recs := make([]herald.Record, 1)
	for b.Loop() {
		recs[0] = rec("benchmark")
		if _, err := br.Append(ctx, recs); err != nil {
			b.Fatal(err)
		}
		if p := <-got; p != recs[0].Position {
			b.Fatalf("followed %d, appended %d", p, recs[0].Position)
		}
	}
}
