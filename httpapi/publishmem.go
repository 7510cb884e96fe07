package httpapi

import (
	"context"
	"sync"
	"time"
)

// byteSemaphore bounds the bytes held by publishes being read and decoded
// (Handler.MaxPublishMemory). Waiters are served in arrival order, so a
// large publish is not starved by a flow of small ones.
type byteSemaphore struct {
	mu      sync.Mutex
	used    int64
	waiters []*memWaiter
}

type memWaiter struct {
	n     int64
	ready chan struct{} // closed once the bytes are granted
}

// acquire reserves n bytes under limit, waiting up to wait (none when it
// is not positive) or until ctx ends; it reports whether it did. An n
// larger than limit is reserved as limit, so one publish of the largest
// body allowed can always go on its own.
func (s *byteSemaphore) acquire(ctx context.Context, n, limit int64, wait time.Duration) (reserved int64, ok bool) {
	n = min(n, limit)
	s.mu.Lock()
	if len(s.waiters) == 0 && s.used+n <= limit {
		s.used += n
		s.mu.Unlock()
		return n, true
	}
	if wait <= 0 {
		s.mu.Unlock()
		return 0, false
	}
	w := &memWaiter{n: n, ready: make(chan struct{})}
	s.waiters = append(s.waiters, w)
	s.mu.Unlock()

	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-w.ready:
		return n, true
	case <-t.C:
	case <-ctx.Done():
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-w.ready: // granted while timing out: keep it
		return n, true
	default:
	}
	for i, x := range s.waiters {
		if x == w {
			s.waiters = append(s.waiters[:i], s.waiters[i+1:]...)
			break
		}
	}
	// The head of the queue may have been what held the others back.
	s.grantLocked(limit)
	return 0, false
}

// release gives back n reserved bytes.
func (s *byteSemaphore) release(n, limit int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.used -= n
	s.grantLocked(limit)
}

// grantLocked wakes waiters, in order, while their bytes fit.
func (s *byteSemaphore) grantLocked(limit int64) {
	for len(s.waiters) > 0 && s.used+s.waiters[0].n <= limit {
		w := s.waiters[0]
		s.waiters[0] = nil
		s.waiters = s.waiters[1:]
		s.used += w.n
		close(w.ready)
	}
}

func (h *Handler) maxPublishMemory() int64 {
	if h.MaxPublishMemory > 0 {
		return h.MaxPublishMemory
	}
	return DefaultPublishMemoryBodies * h.maxBodyBytes()
}

func (h *Handler) publishMemoryWait() time.Duration {
	if h.PublishMemoryWait == 0 {
		return DefaultPublishMemoryWait
	}
	return h.PublishMemoryWait
}
