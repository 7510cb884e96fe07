package httpapi

import (
	"math"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// publishLimiters holds a token bucket per publisher, created on first
// use and forgotten once idle, so their number follows the active
// publishers.
type publishLimiters struct {
	mu       sync.Mutex
	buckets  map[string]*bucket
	lastTrim time.Time
}

type bucket struct {
	lim  *rate.Limiter
	used time.Time
}

// idleBucket is how long an unused bucket is kept; longer than any
// refill, so forgetting it never grants more than a full bucket would.
const idleBucket = 10 * time.Minute

// take takes n events from key's bucket (rate events/s, bursts of burst).
// When it cannot, it returns how long to wait; ok is false when n is
// more than a whole burst, which no wait makes possible.
func (p *publishLimiters) take(key string, n int, limit float64, burst int, now time.Time) (wait time.Duration, ok bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.buckets == nil {
		p.buckets = make(map[string]*bucket)
	}
	if now.Sub(p.lastTrim) > idleBucket {
		for k, b := range p.buckets {
			if now.Sub(b.used) > idleBucket {
				delete(p.buckets, k)
			}
		}
		p.lastTrim = now
	}
	b := p.buckets[key]
	if b == nil {
		b = &bucket{lim: rate.NewLimiter(rate.Limit(limit), burst)}
		p.buckets[key] = b
	}
	b.used = now
	r := b.lim.ReserveN(now, n)
	if !r.OK() {
		return 0, false
	}
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now) // refused: it takes nothing
		return d, true
	}
	return 0, true
}

// retryAfter is d in whole seconds, at least 1, for a Retry-After header.
func retryAfter(d time.Duration) string {
	return strconv.Itoa(max(1, int(math.Ceil(d.Seconds()))))
}
