package redis

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/herald-sse/herald"
	"github.com/herald-sse/herald/internal/brokerwire"
)

// Options configure [Open].
type Options struct {
	// URL locates Redis. Its form picks the deployment:
	//
	//   - redis://[user:password@]host:port[/db][?option=value...], or
	//     rediss:// for TLS, or unix:///path/to/socket: one server (see
	//     go-redis ParseURL for the options);
	//   - redis://host1:port1?addr=host2:port2&addr=host3:port3: a Redis
	//     Cluster reached through those seed nodes (go-redis
	//     ParseClusterURL), and redis://host:port?cluster=true for a
	//     cluster with a single seed address, such as a managed service's
	//     configuration endpoint;
	//   - redis://sentinel1:26379?master_name=mymaster&addr=sentinel2:26379:
	//     the master that these Sentinels name (go-redis
	//     ParseFailoverURL; the host and the addr parameters are
	//     Sentinels, and password= is the master's).
	//
	// The timeouts default to failing fast (see the package doc); options
	// in the URL override them.
	URL string
	// Client, if not nil, is used instead of URL, for what a URL cannot
	// say (a TLS configuration, a credentials provider, a custom dialer).
	// Its zero timeouts and retries get the same defaults as a URL's, and
	// ContextTimeoutEnabled is set, as it is for a URL, so that a call
	// gives up at its context's deadline.
	Client *goredis.UniversalOptions
	// Prefix names the log: its keys are {Prefix}:log and so on, so that
	// several logs can share a Redis. It must not contain braces. Empty
	// means "herald".
	Prefix string
	// Retention bounds the stream (see the package doc); zero fields take
	// herald's defaults. Give every node of a cluster the same.
	Retention herald.Retention
	// Logger reports entries of the log that cannot be read. Nil means
	// slog.Default().
	Logger *slog.Logger
}

// Client defaults: a publish during an outage should fail within seconds,
// and the hub tells its publisher to retry, which is better than
// holding the request for the client library's 5 s timeouts and 3
// retries.
const (
	dialTimeout   = time.Second
	ioTimeout     = 3 * time.Second
	dialerRetries = 2
	maxRetries    = 1
)

// followPage is the most entries one XREAD returns, and so the largest
// batch Follow hands on.
const followPage = 512

// followBlock is how long an XREAD waits for new entries. go-redis does
// not abort a blocked command when its context is cancelled, so this
// bounds how long a cancelled Follow takes to return, and how soon a
// quiet follower notices that the log was wiped.
const followBlock = time.Second

// Broker is a [herald.Broker] on a Redis stream. Its methods are safe
// for concurrent use.
type Broker struct {
	rdb       goredis.UniversalClient
	log       *slog.Logger
	retention herald.Retention

	logKey, epochKey, nodesKey, idsPrefix string

	closeOnce sync.Once
	closeErr  error
}

var _ herald.Broker = (*Broker)(nil)

// Open connects to the Redis of opts and checks that it answers. It
// does not create the log: the first call that needs it does.
func Open(ctx context.Context, opts Options) (*Broker, error) {
	prefix := cmp.Or(opts.Prefix, "herald")
	if strings.ContainsAny(prefix, "{}") {
		return nil, fmt.Errorf("herald/redis: prefix %q contains a brace: it must fit in a hash tag", prefix)
	}
	rdb, err := newClient(opts)
	if err != nil {
		return nil, err
	}
	tag := "{" + prefix + "}:"
	b := &Broker{rdb: rdb, log: cmp.Or(opts.Logger, slog.Default()), retention: opts.Retention.WithDefaults(),
		logKey: tag + "log", epochKey: tag + "epoch", nodesKey: tag + "nodes", idsPrefix: tag + "ids:"}
	if err := rdb.Ping(ctx).Err(); err != nil {
		rdb.Close()
		return nil, b.fail(ctx, err)
	}
	return b, nil
}

func newClient(opts Options) (goredis.UniversalClient, error) {
	if opts.Client != nil {
		o := *opts.Client
		setDefaults(&o.DialTimeout, &o.ReadTimeout, &o.WriteTimeout, &o.MaxRetries, &o.DialerRetries, &o.ContextTimeoutEnabled)
		return goredis.NewUniversalClient(&o), nil
	}
	if opts.URL == "" {
		return nil, errors.New("herald/redis: no URL")
	}
	u, err := url.Parse(opts.URL)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // without the URL, which may hold a password
		}
		return nil, fmt.Errorf("herald/redis: URL: %w", err)
	}
	q, raw := u.Query(), opts.URL
	cluster := false
	if q.Has("cluster") {
		// Ours, not go-redis's, which refuses options it does not know.
		if cluster, err = strconv.ParseBool(q.Get("cluster")); err != nil {
			return nil, fmt.Errorf("herald/redis: URL: cluster=%q: %w", q.Get("cluster"), err)
		}
		q.Del("cluster")
		u.RawQuery = q.Encode()
		raw = u.String()
	}
	switch {
	case q.Has("master_name"):
		o, err := goredis.ParseFailoverURL(raw)
		if err != nil {
			return nil, fmt.Errorf("herald/redis: Sentinel URL: %w", err)
		}
		setDefaults(&o.DialTimeout, &o.ReadTimeout, &o.WriteTimeout, &o.MaxRetries, &o.DialerRetries, &o.ContextTimeoutEnabled)
		return goredis.NewFailoverClient(o), nil
	case cluster || q.Has("addr"):
		o, err := goredis.ParseClusterURL(raw)
		if err != nil {
			return nil, fmt.Errorf("herald/redis: Cluster URL: %w", err)
		}
		setDefaults(&o.DialTimeout, &o.ReadTimeout, &o.WriteTimeout, &o.MaxRetries, &o.DialerRetries, &o.ContextTimeoutEnabled)
		return goredis.NewClusterClient(o), nil
	default:
		o, err := goredis.ParseURL(raw)
		if err != nil {
			return nil, fmt.Errorf("herald/redis: URL: %w", err)
		}
		setDefaults(&o.DialTimeout, &o.ReadTimeout, &o.WriteTimeout, &o.MaxRetries, &o.DialerRetries, &o.ContextTimeoutEnabled)
		return goredis.NewClient(o), nil
	}
}

// setDefaults fills the options every kind of go-redis client shares.
// One retry is enough for a connection that went stale; appends are
// never retried whatever this says (see runOnce). The caller's context
// deadline is honoured so that a publish gives up when its request does.
func setDefaults(dial, read, write *time.Duration, retries, dialRetries *int, ctxTimeout *bool) {
	if *dial == 0 {
		*dial = dialTimeout
	}
	if *read == 0 {
		*read = ioTimeout
	}
	if *write == 0 {
		*write = ioTimeout
	}
	if *retries == 0 {
		*retries = maxRetries
	}
	if *dialRetries == 0 {
		*dialRetries = dialerRetries
	}
	*ctxTimeout = true
}

// fail wraps a failed call to Redis: the caller's own cancellation as
// it is, anything else as the broker being unavailable.
func (b *Broker) fail(ctx context.Context, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		return ctxErr
	}
	if d, ok := ctx.Deadline(); ok && !time.Now().Before(d) {
		// The connection's deadline, which go-redis sets from ctx's,
		// went off before ctx noticed its own.
		return context.DeadlineExceeded
	}
	return fmt.Errorf("%w: %w", herald.ErrBrokerUnavailable, err)
}

// Append implements [herald.Broker]. A publisher-supplied ID is refused
// as a duplicate for Retention.MaxAge after it was appended, whether or
// not the stream still holds its record.
func (b *Broker) Append(ctx context.Context, recs []herald.Record) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	keys := []string{b.logKey, b.epochKey}
	for i, r := range recs {
		if r.ID == "" {
			continue
		}
		if slices.ContainsFunc(recs[:i], func(o herald.Record) bool { return o.ID == r.ID }) {
			return "", fmt.Errorf("%w: %q", herald.ErrDuplicateID, r.ID)
		}
		keys = append(keys, b.idsPrefix+r.ID)
	}
	args := make([]any, 0, 3+len(recs))
	args = append(args, herald.NewEpoch(), b.retention.MaxEvents, b.retention.MaxAge.Milliseconds())
	for i := range recs {
		args = append(args, brokerwire.Encode(&recs[i]))
	}
	reply, err := appendScript.runOnce(ctx, b.rdb, keys, args...).Slice()
	if err != nil {
		return "", b.fail(ctx, err)
	}
	if len(reply) == 2 && reply[0] == "dup" {
		key, _ := reply[1].(string)
		return "", fmt.Errorf("%w: %q", herald.ErrDuplicateID, strings.TrimPrefix(key, b.idsPrefix))
	}
	if len(reply) != 2+len(recs) || reply[0] != "ok" {
		return "", fmt.Errorf("%w: unexpected reply to append: %v", herald.ErrBrokerUnavailable, reply)
	}
	epoch, _ := reply[1].(string)
	for i := range recs {
		id, _ := reply[2+i].(string)
		p, err := position(id)
		if err != nil {
			// The script refuses such IDs: this is not our script's reply.
			return "", fmt.Errorf("%w: %w", herald.ErrBrokerUnavailable, err)
		}
		recs[i].Position = p
	}
	return epoch, nil
}

// Head implements [herald.Broker]. The position is that of the last
// record the stream still holds: when age-based retention has emptied
// the stream it is 0, so a node that waits to have read up to the head
// does not wait for a record it can never read.
func (b *Broker) Head(ctx context.Context) (string, uint64, error) {
	if err := ctx.Err(); err != nil {
		return "", 0, err
	}
	epoch, id, err := b.head(ctx)
	if err != nil {
		return "", 0, b.fail(ctx, err)
	}
	p, err := position(id)
	if err != nil {
		return "", 0, fmt.Errorf("%w: last entry: %w", herald.ErrBrokerUnavailable, err)
	}
	return epoch, p, nil
}

// head returns the log's epoch, making the log if there is none, and the
// ID of its last entry ("0-0" if none).
func (b *Broker) head(ctx context.Context) (epoch, last string, err error) {
	reply, err := headScript.Run(ctx, b.rdb, []string{b.logKey, b.epochKey}, herald.NewEpoch()).StringSlice()
	if err != nil {
		return "", "", err
	}
	if len(reply) != 2 {
		return "", "", fmt.Errorf("unexpected reply to head: %q", reply)
	}
	return reply[0], reply[1], nil
}

// nodesTTL is how long the nodes hash outlives the last announcement:
// a little more than NodeTTL, as the statuses in it are filtered by
// their own time anyway.
const nodesTTL = herald.NodeTTL + 5*time.Second

// Announce implements [herald.Broker].
func (b *Broker) Announce(ctx context.Context, st herald.NodeStatus) error {
	js, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("herald/redis: %w", err)
	}
	_, err = b.rdb.TxPipelined(ctx, func(p goredis.Pipeliner) error {
		p.HSet(ctx, b.nodesKey, st.Node, js)
		p.PExpire(ctx, b.nodesKey, nodesTTL)
		return nil
	})
	if err != nil {
		return b.fail(ctx, err)
	}
	return nil
}

// Nodes implements [herald.Broker]. It also deletes the statuses it
// finds expired, so that the hash does not grow with every node that
// ever ran.
func (b *Broker) Nodes(ctx context.Context) ([]herald.NodeStatus, error) {
	all, err := b.rdb.HGetAll(ctx, b.nodesKey).Result()
	if err != nil {
		return nil, b.fail(ctx, err)
	}
	cutoff := time.Now().Add(-herald.NodeTTL)
	var nodes []herald.NodeStatus
	var stale []any
	for name, js := range all {
		var st herald.NodeStatus
		if err := json.Unmarshal([]byte(js), &st); err != nil {
			b.log.Warn("herald/redis: forgetting a node status it cannot read", "key", b.nodesKey, "node", name, "err", err)
			stale = append(stale, name, js)
			continue
		}
		if st.Time.Before(cutoff) {
			stale = append(stale, name, js)
			continue
		}
		nodes = append(nodes, st)
	}
	if len(stale) > 0 {
		if err := forgetScript.Run(ctx, b.rdb, []string{b.nodesKey}, stale...).Err(); err != nil {
			return nil, b.fail(ctx, err)
		}
	}
	slices.SortFunc(nodes, func(x, y herald.NodeStatus) int { return cmp.Compare(x.Node, y.Node) })
	return nodes, nil
}

// Close implements [herald.Broker]: it closes the client, so every call
// after it fails and a Follow returns. The log stays in Redis.
func (b *Broker) Close() error {
	b.closeOnce.Do(func() { b.closeErr = b.rdb.Close() })
	return b.closeErr
}
