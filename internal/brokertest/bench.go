package brokertest

import (
	"context"
	"testing"
	"time"

	"github.com/herald-sse/herald"
)

// BenchAppendFollow measures a publish's round trip through br: append one
// 100-byte record, and wait until a Follow of the same broker delivers
// it. Run it from each implementation's benchmarks.
func BenchAppendFollow(b *testing.B, br herald.Broker) {
	epoch, head, err := br.Head(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	got := make(chan uint64, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- br.Follow(ctx, epoch, head, func(bt herald.Batch) error {
			p := bt.Through
			if len(bt.Records) > 0 {
				p = max(p, bt.Records[len(bt.Records)-1].Position)
			}
			got <- p
			return nil
		})
	}()
	defer func() {
		cancel()
		<-done
	}()
	r := herald.Record{Topics: []string{"bench"}, Data: string(make([]byte, 100)), Time: time.Now()}
	for b.Loop() {
		recs := []herald.Record{r}
		if _, err := br.Append(context.Background(), recs); err != nil {
			b.Fatal(err)
		}
		for p := uint64(0); p < recs[0].Position; {
			select {
			case p = <-got:
			case err := <-done:
				b.Fatalf("Follow: %v", err)
			}
		}
	}
}
