package main

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/herald-sse/herald"
	"github.com/herald-sse/herald/bolt"
	"github.com/herald-sse/herald/httpapi"
	heraldnats "github.com/herald-sse/herald/nats"
	"github.com/herald-sse/herald/sse"
)

// serveFlags holds the values of serve's flags as parsed, before any
// checking; serveCommand.parseArgs turns them into a configuration.
type serveFlags struct {
	addr                     string
	heartbeat                time.Duration
	maxConns                 int
	maxPerIP, maxPerSubject  int
	publishRate              float64
	publishBurst             int
	trustedProxies           string
	queueBytes               int
	maxBody, maxPublishMem   int64
	writeTimeout, retry      time.Duration
	resetEvent, expiredEvent string
	shutdownTimeout          time.Duration
	logLevel, logFormat      string
	reusePort, metricsOn     bool
	corsOrigins              string

	jwtSecret, jwtKeyFile  string
	pubSecret, pubKeyFile  string
	subSecret, subKeyFile  string
	jwksURL                string
	jwtAudience, jwtIssuer string
	announce               bool
	openPublish, anonymous bool
	tlsCert, tlsKey        string
	dataDir, fsyncPolicy   string
	historyEvents          int
	historyBytes           int64
	historyAge             time.Duration
	topicCaps              topicCapsFlag
	redisURL, redisPrefix  string
	natsURL, natsStream    string
	nodeName               string
}

// newServeFlagSet defines serve's flags on a new FlagSet, storing their
// values in f.
func newServeFlagSet(f *serveFlags) *flag.FlagSet {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.StringVar(&f.addr, "addr", ":8080", "`address` to listen on")
	fs.DurationVar(&f.heartbeat, "heartbeat", herald.DefaultHeartbeat, "interval of keep-alive comments on idle streams; 0 disables")
	fs.IntVar(&f.maxConns, "max-connections", 10000, "most concurrent streams; 0 means no limit")
	fs.IntVar(&f.maxPerIP, "max-connections-per-ip", 0, "most concurrent streams from one client address (429 beyond); 0 means no limit")
	fs.IntVar(&f.maxPerSubject, "max-connections-per-subject", 0, "most concurrent streams of one token subject (429 beyond); 0 means no limit")
	fs.Float64Var(&f.publishRate, "publish-rate", 0, "events per second each publisher (token subject, or address without keys) may publish (429 beyond); 0 means no limit")
	fs.IntVar(&f.publishBurst, "publish-burst", 0, "events a publisher may send at once within --publish-rate; 0 means the rate rounded up")
	fs.StringVar(&f.trustedProxies, "trusted-proxies", "", "comma-separated `addresses or CIDRs` of reverse proxies whose X-Forwarded-For names the client")
	fs.IntVar(&f.queueBytes, "queue-bytes", herald.DefaultQueueBytes, "`bytes` that may wait for one slow stream before it is dropped")
	fs.Int64Var(&f.maxBody, "max-body", httpapi.DefaultMaxBodyBytes, "largest publish body in `bytes`")
	fs.Int64Var(&f.maxPublishMem, "max-publish-memory", 0, "most `bytes` publishes being read and decoded may hold at once ("+strconv.Itoa(httpapi.PublishMemoryFactor)+" per body byte; 503 with Retry-After beyond, after waiting up to 1s); 0 means "+strconv.Itoa(httpapi.DefaultPublishMemoryBodies)+" × --max-body")
	fs.DurationVar(&f.writeTimeout, "write-timeout", httpapi.DefaultWriteTimeout, "how long a stream client may take to accept 64 KiB before it is dropped; 0 disables")
	fs.DurationVar(&f.retry, "retry", httpapi.DefaultRetry, "reconnection delay sent at the start of every stream; 0 sends none")
	fs.StringVar(&f.resetEvent, "reset-event", httpapi.DefaultResetEvent, "event `type` that starts a stream whose Last-Event-ID cannot be resumed from")
	fs.StringVar(&f.expiredEvent, "expired-event", httpapi.DefaultExpiredEvent, "event `type` that ends a stream when its token expires")
	fs.DurationVar(&f.shutdownTimeout, "shutdown-timeout", 15*time.Second, "how long to wait for streams to end on SIGINT/SIGTERM (a second signal exits at once)")
	fs.StringVar(&f.logLevel, "log-level", "info", "log `level`: debug, info, warn or error")
	fs.StringVar(&f.logFormat, "log-format", "text", "log `format`: text or json")
	fs.BoolVar(&f.reusePort, "reuseport", false, "listen with SO_REUSEPORT so several herald processes can share the port (Linux only)")
	fs.BoolVar(&f.metricsOn, "metrics", true, "serve Prometheus metrics at GET /metrics")
	fs.StringVar(&f.corsOrigins, "cors-origins", "", "comma-separated `origins` of other sites whose pages may stream and publish (https://app.example.com, https://*.example.com, *); requests from other origins get 403")
	defineKeyFlags(fs, f)
	fs.BoolVar(&f.announce, "announce-connections", true, "start each stream with a herald.connected event naming its connection id (for events sent to connections, and GET /connections)")
	fs.BoolVar(&f.openPublish, "open-publish", false, "let anyone publish without a token: for local development only")
	fs.BoolVar(&f.anonymous, "anonymous", false, "with subscriber keys configured, also let streams without a token subscribe")
	fs.StringVar(&f.tlsCert, "tls-cert", "", "TLS certificate `file` (PEM, with chain); with --tls-key serves HTTPS and HTTP/2, reloading renewed files")
	fs.StringVar(&f.tlsKey, "tls-key", "", "TLS private key `file` (PEM)")
	defineStoreFlags(fs, f)
	fs.StringVar(&f.nodeName, "node-name", "", "this node's `name` in GET /cluster; default host:port")
	fs.Usage = flagUsage(fs, "Runs the hub: GET /events streams, POST /publish publishes, GET / is a live page,\nGET /metrics has Prometheus metrics.")
	return fs
}

// defineKeyFlags defines the flags that choose how tokens are verified.
func defineKeyFlags(fs *flag.FlagSet, f *serveFlags) {
	fs.StringVar(&f.jwtSecret, "jwt-secret", "", "HMAC `secret` (32+ bytes) verifying publishers' and subscribers' tokens (HS256/384/512); prefer the environment variable, which the process list does not show")
	fs.StringVar(&f.jwtKeyFile, "jwt-key-file", "", "`file` of the PEM public key (RSA, ECDSA, Ed25519, or a certificate) verifying publishers' and subscribers' tokens")
	fs.StringVar(&f.pubSecret, "publisher-jwt-secret", "", "HMAC `secret` for publishers only; overrides --jwt-secret, --jwt-key-file and --jwks-url for them")
	fs.StringVar(&f.pubKeyFile, "publisher-jwt-key-file", "", "PEM public key `file` for publishers only; overrides --jwt-secret, --jwt-key-file and --jwks-url for them")
	fs.StringVar(&f.subSecret, "subscriber-jwt-secret", "", "HMAC `secret` for subscribers only; overrides --jwt-secret, --jwt-key-file and --jwks-url for them")
	fs.StringVar(&f.subKeyFile, "subscriber-jwt-key-file", "", "PEM public key `file` for subscribers only; overrides --jwt-secret, --jwt-key-file and --jwks-url for them")
	// The old flags took a secret or a path and guessed which: a mistyped
	// path became a secret. They now only stop the hub, saying why.
	for _, name := range []string{"jwt-key", "publisher-jwt-key", "subscriber-jwt-key"} {
		fs.Var(&removedFlag{name: name}, name, "")
	}
	fs.StringVar(&f.jwksURL, "jwks-url", "", "`URL` of a JWKS whose keys verify tokens (cached, refreshed hourly and on unknown kid)")
	fs.StringVar(&f.jwtAudience, "jwt-audience", "", "required `aud` claim of tokens")
	fs.StringVar(&f.jwtIssuer, "jwt-issuer", "", "required `iss` claim of tokens")
}

// defineStoreFlags defines the flags that choose where the history lives:
// in memory, in a file, or in a cluster's broker.
func defineStoreFlags(fs *flag.FlagSet, f *serveFlags) {
	fs.StringVar(&f.dataDir, "data-dir", "", "`directory` of the persistent event history (herald.db, created if missing); empty keeps the history in memory")
	fs.StringVar(&f.fsyncPolicy, "fsync", "always", "with --data-dir, when to sync to disk: always (an acknowledged publish survives power loss) or never (it survives a crash of herald, not of the machine)")
	fs.IntVar(&f.historyEvents, "history-events", herald.DefaultMaxEvents, "most events kept for clients that resume")
	fs.Int64Var(&f.historyBytes, "history-bytes", herald.DefaultMaxBytes, "most `bytes` of events kept for clients that resume")
	fs.DurationVar(&f.historyAge, "history-age", herald.DefaultMaxAge, "how long events are kept for clients that resume")
	f.topicCaps = topicCapsFlag{}
	fs.Var(f.topicCaps, "history-topic-events", "`topic=N`: keep at most N events of topic (repeatable, or a comma-separated list)")
	fs.StringVar(&f.redisURL, "redis-url", "", "join a cluster whose shared log is a Redis stream at this `URL` (redis:// or rediss://; several addr= parameters for Redis Cluster)")
	fs.StringVar(&f.redisPrefix, "redis-prefix", "herald", "with --redis-url, the `prefix` of the cluster's Redis keys: nodes with the same prefix form one hub")
	fs.StringVar(&f.natsURL, "nats-url", "", "join a cluster whose shared log is a NATS JetStream stream at this `URL`")
	fs.StringVar(&f.natsStream, "nats-stream", heraldnats.DefaultStream, "with --nats-url, the JetStream `stream` of the cluster: nodes on the same stream form one hub")
}

// parseArgs parses and checks serve's flags and environment, and sets up
// the logger; a bad value is explained on stderr and returns errUsage.
func (c *serveCommand) parseArgs(args []string) error {
	fs := newServeFlagSet(&c.flags)
	if err := parseFlags(fs, args, c.stdout, c.stderr); err != nil {
		return err
	}
	if err := checkRemovedFlags(fs, c.stderr); err != nil {
		return err
	}
	logger, err := newLogger(c.stderr, c.flags.logLevel, c.flags.logFormat)
	if err != nil {
		return usageError(c.stderr, "%v", err)
	}
	c.logger = logger
	if err := c.parseLists(); err != nil {
		return err
	}
	if err := c.checkLimits(); err != nil {
		return err
	}
	return c.checkStore(fs)
}

// parseLists parses the comma-separated origins and proxies.
func (c *serveCommand) parseLists() error {
	for _, o := range commaList(c.flags.corsOrigins) {
		if err := httpapi.ValidateOrigin(o); err != nil {
			return usageError(c.stderr, "--cors-origins: %v", err)
		}
		c.origins = append(c.origins, o)
	}
	for _, p := range commaList(c.flags.trustedProxies) {
		prefix, err := netip.ParsePrefix(p)
		if err != nil {
			addr, aerr := netip.ParseAddr(p)
			if aerr != nil {
				return usageError(c.stderr, "--trusted-proxies: %q is neither an address nor a CIDR", p)
			}
			prefix = netip.PrefixFrom(addr, addr.BitLen())
		}
		c.proxies = append(c.proxies, prefix)
	}
	return nil
}

// checkLimits refuses limits, timeouts and event types out of range.
func (c *serveCommand) checkLimits() error {
	f, stderr := &c.flags, c.stderr
	if f.maxPerIP < 0 || f.maxPerSubject < 0 || f.publishRate < 0 || f.publishBurst < 0 {
		return usageError(stderr, "--max-connections-per-ip, --max-connections-per-subject, --publish-rate and --publish-burst must not be negative")
	}
	if (f.tlsCert == "") != (f.tlsKey == "") {
		return usageError(stderr, "--tls-cert and --tls-key go together")
	}
	switch {
	case f.addr == "":
		return usageError(stderr, "--addr must not be empty")
	case f.heartbeat != 0 && f.heartbeat < 100*time.Millisecond:
		return usageError(stderr, "--heartbeat must be 0 (off) or at least 100ms")
	case f.maxConns < 0:
		return usageError(stderr, "--max-connections must not be negative")
	case f.queueBytes <= 0 || f.maxBody <= 0:
		return usageError(stderr, "--queue-bytes and --max-body must be positive")
	case f.maxPublishMem < 0:
		return usageError(stderr, "--max-publish-memory must not be negative")
	case f.writeTimeout < 0 || f.shutdownTimeout < 0:
		return usageError(stderr, "--write-timeout and --shutdown-timeout must not be negative")
	case f.retry != 0 && f.retry < time.Millisecond:
		return usageError(stderr, "--retry must be 0 (none) or at least 1ms")
	case f.resetEvent == "" || sse.ValidateType(f.resetEvent) != nil:
		return usageError(stderr, "--reset-event must be a non-empty event type without line breaks")
	case f.expiredEvent == "" || sse.ValidateType(f.expiredEvent) != nil:
		return usageError(stderr, "--expired-event must be a non-empty event type without line breaks")
	case f.reusePort && !reusePortSupported:
		return usageError(stderr, "--reuseport is not supported on %s", runtime.GOOS)
	case f.historyEvents <= 0 || f.historyBytes <= 0 || f.historyAge <= 0:
		return usageError(stderr, "--history-events, --history-bytes and --history-age must be positive")
	}
	return nil
}

// checkStore refuses store flags that contradict each other, and sets the
// retention and sync policy.
func (c *serveCommand) checkStore(fs *flag.FlagSet) error {
	f, stderr := &c.flags, c.stderr
	switch f.fsyncPolicy {
	case "always":
		c.syncPolicy = bolt.SyncAlways
	case "never":
		c.syncPolicy = bolt.SyncNever
	default:
		return usageError(stderr, "--fsync must be always or never, not %q", f.fsyncPolicy)
	}
	if f.dataDir == "" && isSet(fs, "fsync") {
		return usageError(stderr, "--fsync needs --data-dir: the history is in memory")
	}
	c.clustered = f.redisURL != "" || f.natsURL != ""
	switch {
	case f.redisURL != "" && f.natsURL != "":
		return usageError(stderr, "--redis-url and --nats-url exclude each other: a cluster has one shared log")
	case c.clustered && f.dataDir != "":
		return usageError(stderr, "--data-dir with a cluster: the broker keeps the history (each node keeps a copy in memory)")
	case f.redisURL == "" && isSet(fs, "redis-prefix"):
		return usageError(stderr, "--redis-prefix needs --redis-url")
	case f.natsURL == "" && isSet(fs, "nats-stream"):
		return usageError(stderr, "--nats-stream needs --nats-url")
	}
	c.retention = herald.Retention{MaxEvents: f.historyEvents, MaxBytes: f.historyBytes, MaxAge: f.historyAge}
	if len(f.topicCaps) > 0 {
		c.retention.PerTopic = f.topicCaps
	}
	return nil
}

// isSet reports whether flag name was given, on the command line or by
// its environment variable.
func isSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// topicCapsFlag collects --history-topic-events topic=N values: the flag
// may be repeated and each value (the environment variable's too) may be
// a comma-separated list. The topic is everything before the item's last
// '=', so topics with '=' work; topics with ',' cannot be capped here.
type topicCapsFlag map[string]int

func (c topicCapsFlag) String() string {
	var items []string
	for t, n := range c {
		items = append(items, t+"="+strconv.Itoa(n))
	}
	return strings.Join(items, ",")
}

func (c topicCapsFlag) Set(v string) error {
	for item := range strings.SplitSeq(v, ",") {
		i := strings.LastIndexByte(item, '=')
		if i < 0 {
			return fmt.Errorf("%q is not topic=N", item)
		}
		topic := item[:i]
		n, err := strconv.Atoi(item[i+1:])
		if err != nil || n < 0 {
			return fmt.Errorf("%q: N must be a whole number, 0 or more", item)
		}
		if err := herald.ValidateTopic(topic); err != nil {
			return fmt.Errorf("%q: %s", item, strings.TrimPrefix(err.Error(), herald.ErrInvalidEvent.Error()+": "))
		}
		if _, dup := c[topic]; dup {
			return fmt.Errorf("topic %q capped twice", topic)
		}
		c[topic] = n
	}
	return nil
}

func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %v", err)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format must be text or json, not %q", format)
}

// removedFlag stands for a flag that no longer exists, so that using it
// (or its environment variable) says what replaced it instead of "flag
// provided but not defined". Its value is never printed: it may be a
// secret.
type removedFlag struct {
	name string
	set  bool
}

func (f *removedFlag) String() string   { return "" }
func (f *removedFlag) Set(string) error { f.set = true; return nil }

// checkRemovedFlags refuses removed flags that were given, naming their
// replacements.
func checkRemovedFlags(fs *flag.FlagSet, stderr io.Writer) error {
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if r, ok := f.Value.(*removedFlag); ok && r.set && err == nil {
			prefix := strings.TrimSuffix(r.name, "jwt-key")
			err = usageError(stderr, "--%s (%s) was removed because it guessed between a secret and a file: use --%sjwt-secret SECRET for an HMAC secret or --%sjwt-key-file PATH for a PEM public key",
				r.name, envName(r.name), prefix, prefix)
		}
	})
	return err
}

// commaList splits a comma-separated flag value into its trimmed,
// non-empty items.
func commaList(v string) []string {
	var items []string
	for item := range strings.SplitSeq(v, ",") {
		if item = strings.TrimSpace(item); item != "" {
			items = append(items, item)
		}
	}
	return items
}
