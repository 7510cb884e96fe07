package herald

import (
	"fmt"
	"strings"
	"testing"
)

// BenchmarkFanOut publishes one 100-byte event to N subscribers of its
// topic: the hub-side cost of a broadcast (validate, encode once, queue to
// every subscriber). Queues are drained off the clock.
func BenchmarkFanOut(b *testing.B) {
	for _, n := range []int{1, 100, 1000, 10000} {
		b.Run(fmt.Sprintf("subscribers=%d", n), func(b *testing.B) {
			h := &Hub{QueueBytes: 64 << 20, Heartbeat: -1}
			if err := h.Open(); err != nil {
				b.Fatal(err)
			}
			defer h.Close()
			subs := make([]*Subscriber, n)
			for i := range subs {
				subs[i], _ = h.Subscribe(Topic("ticker"))
			}
			ev := Event{Topics: []string{"ticker"}, Data: strings.Repeat("x", 100)}
			frames := make([][]byte, 0, 256)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := h.Publish(ev); err != nil {
					b.Fatal(err)
				}
				if i%256 == 255 {
					b.StopTimer()
					for _, s := range subs {
						frames = s.Drain(frames[:0])
					}
					b.StartTimer()
				}
			}
			b.ReportMetric(float64(b.N)*float64(n)/b.Elapsed().Seconds(), "deliveries/s")
		})
	}
}

// BenchmarkFanOutSelective publishes to one of 1,000 topics with 10
// subscribers each: the index must make untouched subscribers free.
func BenchmarkFanOutSelective(b *testing.B) {
	h := &Hub{QueueBytes: 64 << 20, Heartbeat: -1}
	if err := h.Open(); err != nil {
		b.Fatal(err)
	}
	defer h.Close()
	var subs []*Subscriber
	topics := make([]string, 1000)
	for t := range topics {
		topics[t] = fmt.Sprintf("topic-%d", t)
		for i := 0; i < 10; i++ {
			s, _ := h.Subscribe(Topic(topics[t]))
			subs = append(subs, s)
		}
	}
	data := strings.Repeat("x", 100)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := h.Publish(Event{Topics: []string{topics[i%len(topics)]}, Data: data}); err != nil {
			b.Fatal(err)
		}
		if i%4096 == 4095 {
			b.StopTimer()
			for _, s := range subs {
				s.Drain(nil)
			}
			b.StartTimer()
		}
	}
}
