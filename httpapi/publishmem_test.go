package httpapi

import (
	"context"
	"testing"
	"time"
)

func TestByteSemaphore(t *testing.T) {
	var s byteSemaphore
	ctx := context.Background()
	if n, ok := s.acquire(ctx, 25, 10, -1); !ok || n != 10 {
		t.Fatalf("more than the limit: %d, %v; want the whole limit", n, ok)
	}
	if _, ok := s.acquire(ctx, 1, 10, -1); ok {
		t.Fatal("acquired past the limit without waiting")
	}
	if _, ok := s.acquire(ctx, 1, 10, time.Millisecond); ok || len(s.waiters) != 0 {
		t.Fatalf("a wait that timed out: ok %v, %d waiters left", ok, len(s.waiters))
	}

	// Waiters are served in order: a large one at the head holds a small
	// one back until it gives up.
	type result struct {
		n  int64
		ok bool
	}
	big, small := make(chan result, 1), make(chan result, 1)
	bigCtx, giveUp := context.WithCancel(ctx)
	go func() { n, ok := s.acquire(bigCtx, 8, 10, time.Minute); big <- result{n, ok} }()
	waitWaiters(t, &s, 1)
	go func() { n, ok := s.acquire(ctx, 1, 10, time.Minute); small <- result{n, ok} }()
	waitWaiters(t, &s, 2)
	s.release(5, 10) // 5 used: the small one would fit, the big one not
	s.mu.Lock()
	used, waiting := s.used, len(s.waiters)
	s.mu.Unlock()
	if used != 5 || waiting != 2 {
		t.Fatalf("after a release, %d used and %d waiting: the small waiter overtook the big one", used, waiting)
	}
	giveUp()
	if r := <-big; r.ok {
		t.Fatalf("the cancelled waiter got %+v", r)
	}
	if r := <-small; !r.ok || r.n != 1 {
		t.Fatalf("the small waiter after the big one left: %+v", r)
	}
	s.release(5, 10)
	s.release(1, 10)
	if s.used != 0 || len(s.waiters) != 0 {
		t.Fatalf("used %d, %d waiters after releasing everything", s.used, len(s.waiters))
	}
}

// waitWaiters polls until n waiters queue: whether a goroutine is blocked
// in acquire is only observable so.
func waitWaiters(t *testing.T, s *byteSemaphore, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		s.mu.Lock()
		k := len(s.waiters)
		s.mu.Unlock()
		if k == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d waiters, want %d", k, n)
		}
		time.Sleep(time.Millisecond)
	}
}
