package redis

import (
	"context"
	"errors"
	"fmt"

	goredis "github.com/redis/go-redis/v9"

	"github.com/herald-sse/herald"
	"github.com/herald-sse/herald/internal/brokerwire"
	"github.com/herald-sse/herald/internal/followbatch"
)

// Follow implements [herald.Broker]. It reads with XREAD BLOCK, so a
// cancelled ctx is noticed within about a second (go-redis does not
// abort a blocked read). An entry it cannot read (not written by this
// package, or by a newer version of it) is logged and skipped, and the
// batch after it is marked Lost: the events it held are gone for this
// node. When no readable entry follows the skipped ones in what was
// read, that batch has no records and its Through is the last skipped
// entry's position, so that the reader knows it has read the log up to
// its head.
func (b *Broker) Follow(ctx context.Context, epoch string, after uint64, fn func(herald.Batch) error) error {
	f := follower{b: b, out: followbatch.New(epoch, fn), cursor: streamID(after)}
	return f.run(ctx)
}

type follower struct {
	b   *Broker
	out *followbatch.Builder // the epoch followed, and the batch being made
	// cursor is the ID of the last entry read, or Follow's after: the
	// next entry names it as its p unless entries between were removed.
	cursor string
}

func (f *follower) run(ctx context.Context) error {
	checkEpoch := true
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		if checkEpoch {
			cur, _, err := f.b.head(ctx)
			if err != nil {
				return f.b.fail(ctx, err)
			}
			if cur != f.out.Epoch() {
				f.out.Restart(cur)
				f.cursor = "0-0"
			}
			checkEpoch = false
		}
		streams, err := f.b.rdb.XRead(ctx, &goredis.XReadArgs{
			Streams: []string{f.b.logKey, f.cursor}, Count: followPage, Block: followBlock}).Result()
		if err := ctx.Err(); err != nil {
			return err
		}
		if errors.Is(err, goredis.Nil) {
			// Nothing new: check the log is still the one followed, as a
			// wiped log may stay quiet for long.
			e, err := f.b.rdb.Get(ctx, f.b.epochKey).Result()
			if err != nil && !errors.Is(err, goredis.Nil) {
				return f.b.fail(ctx, err)
			}
			checkEpoch = e != f.out.Epoch()
			continue
		}
		if err != nil {
			return f.b.fail(ctx, err)
		}
		for _, s := range streams {
			if s.Stream != f.b.logKey {
				continue
			}
			if checkEpoch, err = f.read(ctx, s.Messages); err != nil {
				return err
			}
		}
	}
}

// read hands msgs on to fn, a batch per run of entries without a gap. It
// reports whether the log turned out to have been replaced, so that
// following starts over from the new log's start.
func (f *follower) read(ctx context.Context, msgs []goredis.XMessage) (replaced bool, err error) {
	for _, m := range msgs {
		e, _ := m.Values["e"].(string)
		if e != f.out.Epoch() {
			// Entries of a new log, or an entry nobody of ours wrote:
			// only the epoch key tells which.
			cur, _, err := f.b.head(ctx)
			if err != nil {
				return false, f.b.fail(ctx, err)
			}
			if cur != f.out.Epoch() {
				return true, f.out.Flush()
			}
		}
		if p, _ := m.Values["p"].(string); p != f.cursor {
			if err := f.out.Lose(); err != nil {
				return false, err
			}
		}
		f.cursor = m.ID
		rec, err := f.decode(m, e)
		if err != nil {
			f.b.log.Warn("herald/redis: skipping a log entry it cannot read; followers report its events lost",
				"stream", f.b.logKey, "entry", m.ID, "err", err)
			if err := f.out.Lose(); err != nil {
				return false, err
			}
			continue
		}
		f.out.Add(rec)
	}
	if err := f.out.Flush(); err != nil {
		return false, err
	}
	return false, f.through()
}

func (f *follower) decode(m goredis.XMessage, epoch string) (herald.Record, error) {
	if epoch != f.out.Epoch() {
		return herald.Record{}, fmt.Errorf("entry of epoch %q in the log of epoch %q", epoch, f.out.Epoch())
	}
	pos, err := position(m.ID)
	if err != nil {
		return herald.Record{}, err
	}
	r, ok := m.Values["r"].(string)
	if !ok {
		return herald.Record{}, errors.New("no record field r")
	}
	rec, err := brokerwire.Decode([]byte(r))
	if err != nil {
		return herald.Record{}, err
	}
	rec.Position = pos
	return rec, nil
}

// through reports entries skipped after the last record handed to fn,
// with no readable one after them: a batch without records, marked Lost,
// whose Through is the last entry read.
func (f *follower) through() error {
	p, err := position(f.cursor)
	if err != nil {
		// An ID beyond any position (Head fails on it too): the next
		// readable entry, if any, reports the loss.
		return nil
	}
	return f.out.Through(p)
}
