// Package followbatch turns what a [herald.Broker]'s Follow reads from its
// log, entry by entry, into the batches Follow hands over: runs of records
// without a gap, each marked Lost when entries before it were removed or
// could not be read, and a batch without records, read Through the last
// entry, when no readable entry follows a loss. The Redis and NATS brokers
// read their logs differently but owe their readers the same batches.
package followbatch

import "github.com/herald-sse/herald"

// Builder collects the records of one Follow into batches for its fn. It
// remembers a loss until a batch reports it, so that a gap is reported
// once, by the first batch after it, and never hidden.
type Builder struct {
	fn    func(herald.Batch) error
	epoch string
	batch herald.Batch // the records added and not yet handed on; Lost set by the first
	lost  bool         // a loss after the last record added, not yet reported
}

// New returns a Builder handing the batches of the log of epoch to fn.
func New(epoch string, fn func(herald.Batch) error) *Builder {
	return &Builder{fn: fn, epoch: epoch}
}

// Epoch returns the epoch of the log being read.
func (b *Builder) Epoch() string { return b.epoch }

// Restart starts over on the log of epoch, which replaced the one being
// read: records not yet handed on and a loss not yet reported were the
// old log's, and are dropped (Flush first to keep the records).
func (b *Builder) Restart(epoch string) {
	clear(b.batch.Records)
	b.batch.Records = b.batch.Records[:0]
	b.epoch, b.lost = epoch, false
}

// Add appends r to the batch being made. The first record of a batch
// carries the loss noted before it.
func (b *Builder) Add(r herald.Record) {
	if len(b.batch.Records) == 0 {
		b.batch.Lost, b.lost = b.lost, false
	}
	b.batch.Records = append(b.batch.Records, r)
}

// Len returns how many records the batch being made holds.
func (b *Builder) Len() int { return len(b.batch.Records) }

// Lose notes that entries after the records added so far are gone (removed
// from the log, or unreadable). Those records are handed on first, in a
// batch of their own.
func (b *Builder) Lose() error {
	err := b.Flush()
	b.lost = true
	return err
}

// Flush hands the records added to fn as one batch, if there are any. fn
// must not keep the batch's Records: the slice is reused.
func (b *Builder) Flush() error {
	if len(b.batch.Records) == 0 {
		return nil
	}
	b.batch.Epoch = b.epoch
	err := b.fn(b.batch)
	clear(b.batch.Records) // let the records' data go
	b.batch.Records = b.batch.Records[:0]
	return err
}

// Through reports a loss no record follows yet, so that the reader knows
// it has read the log up to pos: when a loss is noted and not reported,
// fn gets a batch without records, marked Lost, read through pos. Flush
// first: the records added go before it.
func (b *Builder) Through(pos uint64) error {
	if !b.lost {
		return nil
	}
	b.lost = false
	return b.fn(herald.Batch{Epoch: b.epoch, Lost: true, Through: pos})
}
