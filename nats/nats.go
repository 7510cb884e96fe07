package nats

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/herald-sse/herald"
)

// Defaults of [Options].
const (
	DefaultURL             = "nats://127.0.0.1:4222"
	DefaultStream          = "HERALD"
	DefaultDuplicateWindow = 2 * time.Minute
	DefaultTimeout         = 5 * time.Second
)

// epochTTL is how long Append trusts the epoch it last read: a stream
// deleted and recreated through another node changes it, and no
// acknowledgement says so.
const epochTTL = time.Second

// maxPlainTopic is the longest topic whose subject token is the topic
// itself (base64url): longer ones are hashed, to keep subjects well under
// the server's control line limit.
const maxPlainTopic = 96

// maxPlainMsgID is the longest publisher ID sent as it is in Nats-Msg-Id.
const maxPlainMsgID = 128

// Options configure [Open].
type Options struct {
	// URL is the NATS server, or a comma-separated list of the servers of
	// a cluster. Empty means DefaultURL.
	URL string
	// Stream names the JetStream stream of the log, and prefixes its
	// buckets' names: letters, digits, '-' and '_'. Empty means
	// DefaultStream.
	Stream string
	// Subject prefixes the subjects of the stream: one or more
	// dot-separated tokens without wildcards or spaces. Empty means Stream
	// in lower case. Streams of one account must not share it.
	Subject string
	// Retention sets the stream's limits; zero fields take herald's
	// defaults.
	Retention herald.Retention
	// Replicas is how many servers of a JetStream cluster keep the stream
	// and buckets. Zero means 1.
	Replicas int
	// DuplicateWindow is how long a publisher-supplied ID is refused
	// after its use. Zero means DefaultDuplicateWindow; it is capped at the
	// retention's MaxAge. The server keeps each ID of the window in memory.
	DuplicateWindow time.Duration
	// Timeout bounds each request to the server, so that an outage fails
	// a call instead of hanging it. Zero means DefaultTimeout.
	Timeout time.Duration
	// Logger receives connection changes and records Follow skips. Nil
	// means slog.Default().
	Logger *slog.Logger
	// NATSOptions are applied after the package's own connection options
	// (credentials, TLS, a name...), so they win.
	NATSOptions []natsgo.Option
}

var (
	streamNameRE = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)
	subjectRE    = regexp.MustCompile(`^[^.*>\s]+(\.[^.*>\s]+)*$`)
)

func (o Options) withDefaults() (Options, error) {
	if o.URL == "" {
		o.URL = DefaultURL
	}
	if o.Stream == "" {
		o.Stream = DefaultStream
	}
	if !streamNameRE.MatchString(o.Stream) {
		return o, fmt.Errorf("nats: stream name %q: want letters, digits, '-' and '_'", o.Stream)
	}
	if o.Subject == "" {
		o.Subject = strings.ToLower(o.Stream)
	}
	if !subjectRE.MatchString(o.Subject) {
		return o, fmt.Errorf("nats: subject prefix %q: want dot-separated tokens without wildcards or spaces", o.Subject)
	}
	o.Retention = o.Retention.WithDefaults()
	if o.Replicas <= 0 {
		o.Replicas = 1
	}
	if o.DuplicateWindow <= 0 {
		o.DuplicateWindow = DefaultDuplicateWindow
	}
	o.DuplicateWindow = min(o.DuplicateWindow, o.Retention.MaxAge)
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o, nil
}

// Broker is a [herald.Broker] on a JetStream stream. It is safe for
// concurrent use.
type Broker struct {
	opts      Options
	log       *slog.Logger
	nc        *natsgo.Conn
	js        jetstream.JetStream
	streamCfg jetstream.StreamConfig
	nodes     bucket // what each node announced
	ids       bucket // publisher IDs of the duplicate window, for batches
	closed    atomic.Bool
	badLogged atomic.Bool // an undecodable message was logged at warning level

	mu sync.Mutex
	// What the stream was when last read: epoch, its last sequence then
	// (an acknowledgement at or below it comes from another stream), and
	// when.
	epoch   string
	epochAt time.Time
	lastSeq uint64
}

// Open connects to NATS, and creates the stream and buckets, or updates
// them to opts. The server must be reachable: Open does not wait for it.
// ctx bounds the setup, not the Broker's life.
func Open(ctx context.Context, opts Options) (*Broker, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	b := &Broker{opts: opts, log: opts.Logger.With("stream", opts.Stream)}
	b.streamCfg = jetstream.StreamConfig{
		Name:        opts.Stream,
		Description: "Herald event log (github.com/herald-sse/herald/nats)",
		Subjects:    []string{opts.Subject + ".t.>"},
		Retention:   jetstream.LimitsPolicy,
		MaxMsgs:     int64(opts.Retention.MaxEvents),
		MaxBytes:    opts.Retention.MaxBytes,
		MaxAge:      opts.Retention.MaxAge,
		Discard:     jetstream.DiscardOld,
		Storage:     jetstream.FileStorage,
		Replicas:    opts.Replicas,
		Duplicates:  opts.DuplicateWindow,
	}
	b.nodes.cfg = jetstream.KeyValueConfig{
		Bucket:      opts.Stream + "_nodes",
		Description: "Herald nodes' status (github.com/herald-sse/herald/nats)",
		History:     1,
		TTL:         herald.NodeTTL,
		Storage:     jetstream.MemoryStorage, // a status is stale in seconds: not worth a disk write
		Replicas:    opts.Replicas,
	}
	b.ids.cfg = jetstream.KeyValueConfig{
		Bucket:      opts.Stream + "_ids",
		Description: "Herald publisher IDs of the duplicate window (github.com/herald-sse/herald/nats)",
		History:     1,
		TTL:         opts.DuplicateWindow,
		Storage:     jetstream.FileStorage,
		Replicas:    opts.Replicas,
	}

	log := b.log
	copts := []natsgo.Option{
		natsgo.Name("herald"),
		natsgo.Timeout(opts.Timeout),
		natsgo.MaxReconnects(-1),
		natsgo.ReconnectWait(250 * time.Millisecond),
		// Nothing is buffered while disconnected: a publish then fails
		// and is retried by its publisher, instead of reaching the log
		// long after the publisher was told it failed.
		natsgo.ReconnectBufSize(-1),
		natsgo.PingInterval(5 * time.Second),
		natsgo.MaxPingsOutstanding(2),
		natsgo.DisconnectErrHandler(func(_ *natsgo.Conn, err error) {
			if !b.closed.Load() {
				log.Warn("nats: disconnected", "err", err)
			}
		}),
		natsgo.ReconnectHandler(func(nc *natsgo.Conn) { log.Info("nats: reconnected", "server", nc.ConnectedUrlRedacted()) }),
		natsgo.ErrorHandler(func(_ *natsgo.Conn, sub *natsgo.Subscription, err error) {
			subj := ""
			if sub != nil {
				subj = sub.Subject
			}
			log.Warn("nats: asynchronous error", "subject", subj, "err", err)
		}),
	}
	nc, err := natsgo.Connect(opts.URL, append(copts, opts.NATSOptions...)...)
	if err != nil {
		return nil, fmt.Errorf("%w: nats: connect to %s: %w", herald.ErrBrokerUnavailable, opts.URL, err)
	}
	b.nc = nc
	b.js, err = jetstream.New(nc, jetstream.WithDefaultTimeout(opts.Timeout), jetstream.WithPublishAsyncTimeout(opts.Timeout),
		// Room for many pipelined batches at once (Append).
		jetstream.WithPublishAsyncMaxPending(asyncMaxPending))
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("nats: %w", err)
	}
	if err := b.setup(ctx); err != nil {
		nc.Close()
		return nil, err
	}
	return b, nil
}

func (b *Broker) setup(ctx context.Context) error {
	octx, cancel := b.opCtx(ctx)
	defer cancel()
	s, err := b.js.CreateOrUpdateStream(octx, b.streamCfg)
	if err != nil {
		return b.setupFailed(ctx, "create or update stream "+b.opts.Stream, err)
	}
	b.remember(s.CachedInfo())
	for _, bk := range []*bucket{&b.nodes, &b.ids} {
		if bk.kv, err = b.js.CreateOrUpdateKeyValue(octx, bk.cfg); err != nil {
			return b.setupFailed(ctx, "create or update bucket "+bk.cfg.Bucket, err)
		}
	}
	return nil
}

// setupFailed tells a refusal (a setting the server does not accept,
// which retrying will not change) from an unavailable server.
func (b *Broker) setupFailed(ctx context.Context, op string, err error) error {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		return fmt.Errorf("nats: %s: %w", op, err)
	}
	return b.fail(ctx, op, err)
}

// fail says why a call failed: the caller's context if it ended, else
// the broker is unavailable (no connection, no answer in time, or a
// refusal by JetStream, which the hub can only retry too). ctx is the
// caller's, not the request's.
func (b *Broker) fail(ctx context.Context, op string, err error) error {
	if b.closed.Load() {
		return fmt.Errorf("%w: nats: %s: broker closed", herald.ErrBrokerUnavailable, op)
	}
	if ctx.Err() != nil {
		return fmt.Errorf("nats: %s: %w", op, ctx.Err())
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, natsgo.ErrTimeout):
		err = fmt.Errorf("no answer within %v: %w", b.opts.Timeout, err)
	case errors.Is(err, natsgo.ErrReconnectBufExceeded):
		err = fmt.Errorf("not connected, reconnecting: %w", err)
	}
	return fmt.Errorf("%w: nats: %s: %w", herald.ErrBrokerUnavailable, op, err)
}

// opCtx bounds one request by the Timeout, within ctx.
func (b *Broker) opCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, b.opts.Timeout)
}

// epochOf derives a stream's epoch from what identifies this incarnation
// of it: 12 characters of [A-Za-z0-9_], like herald.NewEpoch's.
func epochOf(info *jetstream.StreamInfo) string {
	sum := sha256.Sum256([]byte(info.Config.Name + "\x00" + info.Created.UTC().Format(time.RFC3339Nano)))
	return strings.ReplaceAll(base64.RawURLEncoding.EncodeToString(sum[:9]), "-", "_")
}

// remember caches what info says of the stream, and returns its epoch.
func (b *Broker) remember(info *jetstream.StreamInfo) string {
	e := epochOf(info)
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.epoch != "" && b.epoch != e {
		b.log.Warn("nats: the stream was replaced: a new log starts", "from", b.epoch, "to", e)
	}
	b.epoch, b.epochAt, b.lastSeq = e, time.Now(), info.State.LastSeq
	return e
}

// info reads the stream's state, creating the stream if it is missing.
func (b *Broker) info(ctx context.Context) (*jetstream.StreamInfo, error) {
	octx, cancel := b.opCtx(ctx)
	defer cancel()
	s, err := b.js.Stream(octx, b.opts.Stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		b.log.Warn("nats: the stream is missing: creating it")
		s, err = b.js.CreateStream(octx, b.streamCfg)
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			s, err = b.js.Stream(octx, b.opts.Stream) // another node was quicker
		}
	}
	if err != nil {
		return nil, b.fail(ctx, "stream info", err)
	}
	info := s.CachedInfo()
	b.remember(info)
	return info, nil
}

// currentEpoch returns the stream's epoch, read again if the cached one
// is old, and the stream's last sequence when it was read.
func (b *Broker) currentEpoch(ctx context.Context) (string, uint64, error) {
	b.mu.Lock()
	e, at, last := b.epoch, b.epochAt, b.lastSeq
	b.mu.Unlock()
	if e != "" && time.Since(at) < epochTTL {
		return e, last, nil
	}
	info, err := b.info(ctx)
	if err != nil {
		return "", 0, err
	}
	return epochOf(info), info.State.LastSeq, nil
}

// Subject returns the subject on which a record whose first topic is
// topic is published: a consumer filtering on it sees that topic's
// events (those that list it first).
func (b *Broker) Subject(topic string) string {
	return b.opts.Subject + ".t." + topicToken(topic)
}

func (b *Broker) subject(topics []string) string {
	if len(topics) == 0 {
		return b.Subject("") // a record always has a topic; this one would not decode
	}
	return b.Subject(topics[0])
}

func topicToken(topic string) string {
	if len(topic) <= maxPlainTopic {
		if topic == "" {
			return "_" // a token cannot be empty, and '_' alone is no base64 of anything
		}
		return base64.RawURLEncoding.EncodeToString([]byte(topic))
	}
	sum := sha256.Sum256([]byte(topic))
	return "~" + base64.RawURLEncoding.EncodeToString(sum[:18])
}

// msgID is the Nats-Msg-Id of a publisher ID: the ID itself when it is a
// short run of visible ASCII, which operators can recognise, else a hash
// (marked by '~', which no ID sent as it is starts with), as a header
// value must be one line and its surrounding spaces are not kept.
func msgID(id string) string {
	plain := len(id) <= maxPlainMsgID && id[0] != '~'
	for i := 0; plain && i < len(id); i++ {
		plain = id[i] > ' ' && id[i] < 0x7f
	}
	if plain {
		return id
	}
	sum := sha256.Sum256([]byte(id))
	return "~" + base64.RawURLEncoding.EncodeToString(sum[:])
}

// idKey is the key of a publisher ID in the ids bucket, whose keys allow
// only a few characters.
func idKey(id string) string {
	sum := sha256.Sum256([]byte(id))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// asyncMaxPending bounds the records being pipelined by all Appends.
const asyncMaxPending = 16384

// Append implements [herald.Broker]. See the package documentation for
// the duplicate window and what a batch that fails midway leaves.
func (b *Broker) Append(ctx context.Context, recs []herald.Record) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	if b.closed.Load() {
		return "", fmt.Errorf("%w: nats: broker closed", herald.ErrBrokerUnavailable)
	}
	for i := range recs {
		if id := recs[i].ID; id != "" && slices.ContainsFunc(recs[:i], func(o herald.Record) bool { return o.ID == id }) {
			return "", fmt.Errorf("%w: %q twice in one append", herald.ErrDuplicateID, id)
		}
	}
	msgs := make([]*natsgo.Msg, len(recs))
	maxPayload := b.nc.MaxPayload()
	for i := range recs {
		m := natsgo.NewMsg(b.subject(recs[i].Topics))
		if id := recs[i].ID; id != "" {
			m.Header.Set(jetstream.MsgIDHeader, msgID(id))
		}
		// A record too large is refused before anything is published,
		// rather than after the records before it.
		if err := encode(m, &recs[i], maxPayload); err != nil {
			return "", err
		}
		msgs[i] = m
	}
	epoch, last, err := b.currentEpoch(ctx)
	if err != nil {
		return "", err
	}
	if len(recs) > 1 {
		// The first record's ID is checked atomically by its publish,
		// before anything of the batch is in the log; the others must be
		// checked before it.
		if err := b.checkIDs(ctx, epoch, recs[1:]); err != nil {
			return "", err
		}
	}
	var appended []herald.Record
	defer func() { b.index(ctx, epoch, appended) }()
	accept := func(i int, ack *jetstream.PubAck) error {
		if ack.Duplicate {
			return fmt.Errorf("%w: %q, at position %d, within the last %v", herald.ErrDuplicateID, recs[i].ID, ack.Sequence, b.opts.DuplicateWindow)
		}
		if ack.Sequence <= last {
			// Sequences only grow in a stream: this one is a new stream,
			// which its epoch must say.
			info, err := b.info(ctx)
			if err != nil {
				return err
			}
			if e := epochOf(info); e != epoch {
				if i > 0 {
					return fmt.Errorf("%w: nats: the stream was replaced during the append", herald.ErrBrokerUnavailable)
				}
				epoch = e
			}
		}
		last = ack.Sequence
		recs[i].Position = ack.Sequence
		if recs[i].ID != "" {
			appended = append(appended, recs[i])
		}
		return nil
	}
	// The first record alone: its publish checks its ID atomically and
	// finds the stream (creating it again if it went missing).
	ack, err := b.publish(ctx, msgs[0])
	if err != nil {
		return "", err
	}
	if err := accept(0, ack); err != nil {
		return "", err
	}
	if len(msgs) == 1 {
		return epoch, nil
	}
	if slices.ContainsFunc(recs[1:], func(r herald.Record) bool { return r.ID != "" }) {
		// Each waits for the one before: a duplicate found by the
		// server stops the batch there, before the records after it.
		for i, m := range msgs[1:] {
			ack, err := b.publish(ctx, m)
			if err != nil {
				return "", fmt.Errorf("%w: nats: record %d of the batch, after the ones before it were appended: %v", herald.ErrBrokerUnavailable, i+2, err)
			}
			if err := accept(i+1, ack); err != nil {
				return "", err
			}
		}
		return epoch, nil
	}
	// The rest, without IDs, pipelined: one connection delivers them in
	// order, so the stream stores them in order, without a round trip
	// each.
	octx, cancel := b.opCtx(ctx)
	defer cancel()
	futures := make([]jetstream.PubAckFuture, 0, len(msgs)-1)
	for _, m := range msgs[1:] {
		// Past asyncMaxPending in flight (many large batches at once),
		// wait for room as long as for an acknowledgement, not the
		// client's default 200 ms.
		f, err := b.js.PublishMsgAsync(m, jetstream.WithExpectStream(b.opts.Stream), jetstream.WithStallWait(b.opts.Timeout))
		if err != nil {
			return "", b.fail(ctx, "publish", err)
		}
		futures = append(futures, f)
	}
	for j, f := range futures {
		select {
		case ack := <-f.Ok():
			if err := accept(j+1, ack); err != nil {
				return "", err
			}
		case err := <-f.Err():
			return "", b.fail(ctx, "publish", err)
		case <-octx.Done():
			return "", b.fail(ctx, "publish", octx.Err())
		}
	}
	return epoch, nil
}

// publish sends one message and waits for its acknowledgement, creating
// the stream again if it is missing (no stream answered, so nothing was
// stored and sending again appends nothing twice).
func (b *Broker) publish(ctx context.Context, m *natsgo.Msg) (*jetstream.PubAck, error) {
	for attempt := 0; ; attempt++ {
		octx, cancel := b.opCtx(ctx)
		ack, err := b.js.PublishMsg(octx, m, jetstream.WithExpectStream(b.opts.Stream))
		cancel()
		if err == nil {
			return ack, nil
		}
		if errors.Is(err, natsgo.ErrMaxPayload) {
			// The client refused it without sending it (encode leaves
			// room for the headers, so this is not expected).
			return nil, fmt.Errorf("%w: nats: %w", herald.ErrInvalidEvent, err)
		}
		if attempt == 0 && errors.Is(err, jetstream.ErrNoStreamResponse) && b.nc.IsConnected() {
			if _, ierr := b.info(ctx); ierr == nil {
				continue
			}
		}
		return nil, b.fail(ctx, "publish", err)
	}
}

// checkIDs refuses recs if one carries an ID the ids bucket indexes for
// this epoch.
func (b *Broker) checkIDs(ctx context.Context, epoch string, recs []herald.Record) error {
	for _, r := range recs {
		if r.ID == "" {
			continue
		}
		var val []byte
		err := b.withBucket(ctx, &b.ids, func(ctx context.Context, kv jetstream.KeyValue) error {
			e, err := kv.Get(ctx, idKey(r.ID))
			if errors.Is(err, jetstream.ErrKeyNotFound) {
				return nil
			}
			if err == nil {
				val = e.Value()
			}
			return err
		})
		if err != nil {
			return b.fail(ctx, "look up an ID", err)
		}
		if ep, pos, ok := strings.Cut(string(val), " "); ok && ep == epoch {
			return fmt.Errorf("%w: %q, at position %s, within the last %v", herald.ErrDuplicateID, r.ID, pos, b.opts.DuplicateWindow)
		}
	}
	return nil
}

// index records the IDs of appended records in the ids bucket, for
// checkIDs. A failure is logged, not returned: the records are in the
// log, and the index only spares batches a late refusal.
func (b *Broker) index(ctx context.Context, epoch string, recs []herald.Record) {
	if len(recs) == 0 {
		return
	}
	err := b.withBucket(context.WithoutCancel(ctx), &b.ids, func(ctx context.Context, kv jetstream.KeyValue) error {
		// Published together, so a batch costs one round trip.
		futures := make([]jetstream.PubAckFuture, 0, len(recs))
		for _, r := range recs {
			f, err := b.js.PublishAsync("$KV."+b.ids.cfg.Bucket+"."+idKey(r.ID), []byte(epoch+" "+strconv.FormatUint(r.Position, 10)))
			if err != nil {
				return err
			}
			futures = append(futures, f)
		}
		var first error
		for _, f := range futures {
			select {
			case <-f.Ok():
			case err := <-f.Err():
				first = cmp.Or(first, err)
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return first
	})
	if err != nil {
		b.log.Warn("nats: appended, but could not index the publisher IDs: a batch reusing one may be refused only after some of it is appended",
			"err", err, "bucket", b.ids.cfg.Bucket)
	}
}

// bucket is a key-value bucket of the broker's, created again if it goes
// missing.
type bucket struct {
	cfg jetstream.KeyValueConfig
	kv  jetstream.KeyValue // set by setup: a handle is only names, valid across a recreation
}

// withBucket calls f with bk's bucket and a request timeout, and if the
// bucket turns out to be missing, creates it and calls f again. It
// returns f's error as it is.
func (b *Broker) withBucket(ctx context.Context, bk *bucket, f func(context.Context, jetstream.KeyValue) error) error {
	for attempt := 0; ; attempt++ {
		octx, cancel := b.opCtx(ctx)
		err := f(octx, bk.kv)
		if err != nil && attempt == 0 && missing(err) && b.nc.IsConnected() {
			b.log.Warn("nats: a bucket is missing: creating it", "bucket", bk.cfg.Bucket)
			_, cerr := b.js.CreateOrUpdateKeyValue(octx, bk.cfg)
			cancel()
			if cerr != nil {
				return cerr
			}
			continue
		}
		cancel()
		return err
	}
}

// missing reports whether err says that a stream (a bucket's) does not
// exist, rather than that the server could not be reached.
func missing(err error) bool {
	return errors.Is(err, jetstream.ErrBucketNotFound) || errors.Is(err, jetstream.ErrStreamNotFound) ||
		errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, natsgo.ErrNoResponders)
}

// Head implements [herald.Broker]. The position is the stream's last
// sequence, or 0 when the stream holds no message (retention removed them
// all, or it was purged): then there is nothing a node could read, so
// nothing it must have read to be in sync.
func (b *Broker) Head(ctx context.Context) (string, uint64, error) {
	if err := ctx.Err(); err != nil {
		return "", 0, err
	}
	if b.closed.Load() {
		return "", 0, fmt.Errorf("%w: nats: broker closed", herald.ErrBrokerUnavailable)
	}
	info, err := b.info(ctx)
	if err != nil {
		return "", 0, err
	}
	if info.State.Msgs == 0 {
		return epochOf(info), 0, nil
	}
	return epochOf(info), info.State.LastSeq, nil
}

// Close implements [herald.Broker]: it closes the connection, so that a
// running Follow returns. The stream and buckets stay.
func (b *Broker) Close() error {
	if b.closed.CompareAndSwap(false, true) {
		b.nc.Close()
	}
	return nil
}

var _ herald.Broker = (*Broker)(nil)
