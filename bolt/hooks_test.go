package bolt

import "errors"

// Test hooks: a writer that leaves the queue alone, and a process that
// dies with records appended but not committed.

func (h *History) pause() {
	h.mu.Lock()
	h.paused = true
	h.mu.Unlock()
}

func (h *History) resume() {
	h.mu.Lock()
	h.paused = false
	h.cond.Broadcast()
	h.mu.Unlock()
	h.wakeWriter()
}

var errCrashed = errors.New("crashed")

// crash stops the writer at once, without committing the queue nor
// lowering the reservation, and closes the file as a dying process
// would.
func (h *History) crash() {
	h.mu.Lock()
	h.crashing, h.closed = true, true
	h.cond.Broadcast()
	h.mu.Unlock()
	close(h.stop)
	<-h.done
	h.mu.Lock()
	queue := h.queue
	h.queue = nil
	h.mu.Unlock()
	for _, b := range queue {
		b.err = errCrashed
		close(b.done)
	}
	h.db.Close()
}
