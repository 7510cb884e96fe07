package httpapi_test

import (
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/herald-sse/herald"
	"github.com/herald-sse/herald/httpapi"
)

// BenchmarkHTTPFanOut broadcasts 100-byte events to N streams over
// loopback, through the real server and a decoding client per stream: the
// end-to-end delivery rate of one process holding both sides. Publishing
// runs in windows of 64 events so no reader overflows its queue.
func BenchmarkHTTPFanOut(b *testing.B) {
	for _, n := range []int{10, 100, 1000} {
		b.Run(fmt.Sprintf("streams=%d", n), func(b *testing.B) {
			th := startHub(b, func(hub *herald.Hub, _ *httpapi.Handler) { hub.QueueBytes = 4 << 20 })
			var wg sync.WaitGroup
			got := make(chan struct{}, n*64)
			for i := 0; i < n; i++ {
				s := th.subscribe(b, "bench")
				wg.Go(func() {
					for {
						if _, err := s.dec.Next(); err != nil {
							return
						}
						got <- struct{}{}
					}
				})
			}
			data := strings.Repeat("x", 100)
			b.ResetTimer()
			for sent := 0; sent < b.N; {
				batch := min(64, b.N-sent)
				for i := 0; i < batch; i++ {
					if _, err := th.hub.Publish(herald.Event{Topics: []string{"bench"}, Data: data}); err != nil {
						b.Fatal(err)
					}
				}
				for i := 0; i < batch*n; i++ {
					<-got
				}
				sent += batch
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)*float64(n)/b.Elapsed().Seconds(), "deliveries/s")
			th.hub.Close()
			wg.Wait()
		})
	}
}
