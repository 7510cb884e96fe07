package nats

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/herald-sse/herald"
	"github.com/herald-sse/herald/internal/followbatch"
)

// followPage is the most records a Follow batch carries.
const followPage = 512

// followGrace is how long Follow waits for a lost connection to come
// back before it reports the broker unavailable: a failover to another
// server of a cluster takes less, and a node that cannot read the log
// should say so soon.
const followGrace = time.Second

// Consumers' pull requests: a request lasts pullExpiry, during which the
// server sends a heartbeat every pullHeartbeat when it has nothing else;
// two missed heartbeats mean the server (or the stream's leader) is gone.
const (
	pullExpiry    = 10 * time.Second
	pullHeartbeat = 2 * time.Second
)

// maxIdleReopens is how many consumers in a row Follow replaces without
// reading anything before it gives up.
const maxIdleReopens = 3

// errReopen ends one consumer of a Follow: the consumer went away (the
// stream was deleted, the server restarted) or missed a message, so
// Follow checks the stream again and carries on with a new consumer.
var errReopen = errors.New("consumer to be replaced")

// cursor is where a Follow stands: what it has read of which log, and
// the batch it is making, which carries a loss to the next batch.
type cursor struct {
	read uint64               // last stream sequence read (delivered, or skipped as undecodable)
	out  *followbatch.Builder // the epoch followed
}

// Follow implements [herald.Broker]. It reads the stream with an
// ephemeral consumer of its own, which it replaces when it fails.
//
// A message it cannot decode is logged and skipped, and reported by the
// next batch's Lost. When no readable message follows it in what has
// arrived, that batch has no records and its Through is the skipped
// message's sequence, so that the reader knows it has read the log up to
// its head. Likewise, when retention (or a purge) has emptied the stream
// of every message after where Follow stands, a batch without records,
// marked Lost, reaches the stream's last sequence.
func (b *Broker) Follow(ctx context.Context, epoch string, after uint64, fn func(herald.Batch) error) error {
	c := cursor{read: after, out: followbatch.New(epoch, fn)}
	idle := 0 // consumers replaced in a row without reading anything
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		if b.closed.Load() {
			return fmt.Errorf("%w: nats: broker closed", herald.ErrBrokerUnavailable)
		}
		info, err := b.info(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return err
		}
		if e := epochOf(info); e != c.out.Epoch() {
			c.read = 0
			c.out.Restart(e)
		}
		read := c.read
		err = b.consume(ctx, &c, info.State.LastSeq)
		if !errors.Is(err, errReopen) {
			return err
		}
		if idle++; c.read != read {
			idle = 0
		}
		if idle > maxIdleReopens {
			// A consumer that goes as soon as it comes is a server in
			// trouble: the hub retries, with a backoff.
			return fmt.Errorf("%w: nats: consumers of the stream keep failing", herald.ErrBrokerUnavailable)
		}
	}
}

// consume reads the stream from c with one consumer until it fails.
// lastSeq is the stream's last sequence before the consumer was made.
func (b *Broker) consume(ctx context.Context, c *cursor, lastSeq uint64) error {
	// Listening before the consumer exists, so no change is missed.
	status := b.nc.StatusChanged(natsgo.CONNECTED, natsgo.DISCONNECTED, natsgo.RECONNECTING, natsgo.CLOSED)
	defer b.nc.RemoveStatusListener(status)

	cfg := jetstream.ConsumerConfig{
		Description:       "herald follower",
		DeliverPolicy:     jetstream.DeliverAllPolicy,
		AckPolicy:         jetstream.AckNonePolicy,
		InactiveThreshold: time.Minute, // deleted by the server if this process dies
		MemoryStorage:     true,
		Replicas:          1,
	}
	if c.read > 0 {
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, c.read+1
	}
	octx, cancel := b.opCtx(ctx)
	cons, err := b.js.CreateConsumer(octx, b.opts.Stream, cfg)
	cancel()
	switch {
	case ctx.Err() != nil:
		return ctx.Err()
	case errors.Is(err, jetstream.ErrStreamNotFound):
		return errReopen // deleted since Follow looked: look again
	case err != nil:
		return b.fail(ctx, "create a consumer", err)
	}
	name := cons.CachedInfo().Name
	defer func() {
		if b.nc.IsConnected() {
			dctx, cancel := b.opCtx(context.WithoutCancel(ctx))
			_ = b.js.DeleteConsumer(dctx, b.opts.Stream, name) // else it goes after InactiveThreshold
			cancel()
		}
	}()
	if cons.CachedInfo().NumPending == 0 && lastSeq > c.read {
		// Nothing to deliver up to lastSeq, which Head reports: the
		// newest messages were removed (a subject purged, a message
		// deleted). Said, so a node can count itself at the head.
		c.read = lastSeq
		if err := c.out.Lose(); err != nil {
			return err
		}
		if err := c.out.Through(lastSeq); err != nil {
			return err
		}
	}

	// The consumer's messages and errors come from its goroutine; this
	// one makes batches of them and calls fn, so fn's pace sets the pace
	// of the pull requests.
	msgs := make(chan jetstream.Msg, 64)
	errs := make(chan error, 1)
	done := make(chan struct{})
	report := func(err error) {
		select {
		case errs <- err:
		default: // one reason to stop is enough
		}
	}
	// A request's bytes are bounded, so that large messages waiting for a
	// slow fn cannot exceed the subscription's pending limit; a message
	// must fit in one request.
	maxBytes := max(8<<20, 2*int(b.nc.MaxPayload()))
	cc, err := cons.Consume(func(m jetstream.Msg) {
		select {
		case msgs <- m:
		case <-done:
		}
	},
		jetstream.PullMaxMessagesWithBytesLimit(followPage, maxBytes),
		jetstream.PullExpiry(pullExpiry),
		jetstream.PullHeartbeat(pullHeartbeat),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			switch {
			case errors.Is(err, jetstream.ErrConsumerDeleted), errors.Is(err, jetstream.ErrConsumerNotFound),
				errors.Is(err, natsgo.ErrNoResponders):
				report(errReopen)
			case errors.Is(err, jetstream.ErrNoHeartbeat), errors.Is(err, natsgo.ErrConnectionClosed),
				errors.Is(err, jetstream.ErrServerShutdown), errors.Is(err, jetstream.ErrBadRequest):
				report(b.fail(ctx, "follow", err))
			default:
				b.log.Debug("nats: consumer", "err", err)
			}
		}))
	if err != nil {
		return b.fail(ctx, "consume", err)
	}
	defer cc.Stop()
	defer close(done) // first: Stop may wait for the handler, which may wait for msgs

	var (
		delivered uint64 // the consumer's sequence: one more per message it sends
		grace     <-chan time.Time
		timer     *time.Timer
	)
	if !b.nc.IsConnected() {
		timer = time.NewTimer(followGrace)
		grace = timer.C
	}
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	// atTail notes, once the consumer has nothing more pending, that the
	// messages up to lastSeq it will never deliver were removed (the
	// newest deleted or purged), so that fn learns it has read up to
	// what Head reports.
	atTail := func(pending uint64) error {
		if pending != 0 || lastSeq <= c.read {
			return nil
		}
		c.read = lastSeq
		return c.out.Lose()
	}
	// take adds m to the batch, or reports that the consumer missed a message.
	take := func(m jetstream.Msg) error {
		meta, err := m.Metadata()
		if err != nil || meta.Sequence.Consumer != delivered+1 {
			// Dropped between server and here (a slow subscription):
			// nothing is lost from the log, a new consumer reads it.
			return errReopen
		}
		delivered = meta.Sequence.Consumer
		seq := meta.Sequence.Stream
		if seq <= c.read {
			return nil
		}
		if seq > c.read+1 {
			// Sequences are consecutive: one skipped is a record removed.
			if err := c.out.Lose(); err != nil {
				return err
			}
		}
		c.read = seq
		r, err := decode(m.Data(), m.Headers())
		if err != nil {
			level := slog.LevelDebug
			if b.badLogged.CompareAndSwap(false, true) {
				level = slog.LevelWarn
			}
			b.log.Log(ctx, level, "nats: skipping a message Herald cannot read; followers report it as lost",
				"seq", seq, "subject", m.Subject(), "err", err)
			if err := c.out.Lose(); err != nil {
				return err
			}
			return atTail(meta.NumPending)
		}
		r.Position = seq
		c.out.Add(r)
		return atTail(meta.NumPending)
	}
	for {
		var stop error
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-errs:
			return err
		case <-grace:
			return fmt.Errorf("%w: nats: connection lost for more than %v", herald.ErrBrokerUnavailable, followGrace)
		case s, ok := <-status:
			if !ok {
				status = nil // only RemoveStatusListener closes it; defensively
				continue
			}
			switch s {
			case natsgo.CLOSED:
				return b.fail(ctx, "follow", natsgo.ErrConnectionClosed)
			case natsgo.CONNECTED:
				if timer != nil {
					timer.Stop()
					timer, grace = nil, nil
				}
			default:
				if timer == nil {
					timer = time.NewTimer(followGrace)
					grace = timer.C
				}
			}
			continue
		case m := <-msgs:
			stop = take(m)
		}
		// Whatever else has arrived goes in the same batch.
	more:
		for stop == nil && c.out.Len() < followPage {
			select {
			case m := <-msgs:
				stop = take(m)
			default:
				break more
			}
		}
		if err := c.out.Flush(); err != nil {
			return err
		}
		if stop == nil || errors.Is(stop, errReopen) {
			// A loss no record comes after (yet): read through the last
			// message.
			if err := c.out.Through(c.read); err != nil {
				return err
			}
		}
		if stop != nil {
			return stop
		}
	}
}
