package main

import (
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/herald-sse/herald"
	"github.com/herald-sse/herald/auth"
	"github.com/herald-sse/herald/bolt"
	"github.com/herald-sse/herald/httpapi"
	"github.com/herald-sse/herald/metrics"
	heraldnats "github.com/herald-sse/herald/nats"
	heraldredis "github.com/herald-sse/herald/redis"
	"github.com/herald-sse/herald/sse"
	"github.com/herald-sse/herald/web"
	goredis "github.com/redis/go-redis/v9"
)

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) (err error) {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	addr := fs.String("addr", ":8080", "`address` to listen on")
	heartbeat := fs.Duration("heartbeat", herald.DefaultHeartbeat, "interval of keep-alive comments on idle streams; 0 disables")
	maxConns := fs.Int("max-connections", 10000, "most concurrent streams; 0 means no limit")
	maxPerIP := fs.Int("max-connections-per-ip", 0, "most concurrent streams from one client address (429 beyond); 0 means no limit")
	maxPerSubject := fs.Int("max-connections-per-subject", 0, "most concurrent streams of one token subject (429 beyond); 0 means no limit")
	publishRate := fs.Float64("publish-rate", 0, "events per second each publisher (token subject, or address without keys) may publish (429 beyond); 0 means no limit")
	publishBurst := fs.Int("publish-burst", 0, "events a publisher may send at once within --publish-rate; 0 means the rate rounded up")
	trustedProxies := fs.String("trusted-proxies", "", "comma-separated `addresses or CIDRs` of reverse proxies whose X-Forwarded-For names the client")
	queueBytes := fs.Int("queue-bytes", herald.DefaultQueueBytes, "`bytes` that may wait for one slow stream before it is dropped")
	maxBody := fs.Int64("max-body", httpapi.DefaultMaxBodyBytes, "largest publish body in `bytes`")
	maxPublishMemory := fs.Int64("max-publish-memory", 0, "most `bytes` publishes being read and decoded may hold at once ("+strconv.Itoa(httpapi.PublishMemoryFactor)+" per body byte; 503 with Retry-After beyond, after waiting up to 1s); 0 means "+strconv.Itoa(httpapi.DefaultPublishMemoryBodies)+" × --max-body")
	writeTimeout := fs.Duration("write-timeout", httpapi.DefaultWriteTimeout, "how long a stream client may take to accept 64 KiB before it is dropped; 0 disables")
	retry := fs.Duration("retry", httpapi.DefaultRetry, "reconnection delay sent at the start of every stream; 0 sends none")
	resetEvent := fs.String("reset-event", httpapi.DefaultResetEvent, "event `type` that starts a stream whose Last-Event-ID cannot be resumed from")
	expiredEvent := fs.String("expired-event", httpapi.DefaultExpiredEvent, "event `type` that ends a stream when its token expires")
	shutdownTimeout := fs.Duration("shutdown-timeout", 15*time.Second, "how long to wait for streams to end on SIGINT/SIGTERM (a second signal exits at once)")
	logLevel := fs.String("log-level", "info", "log `level`: debug, info, warn or error")
	logFormat := fs.String("log-format", "text", "log `format`: text or json")
	reusePort := fs.Bool("reuseport", false, "listen with SO_REUSEPORT so several herald processes can share the port (Linux only)")
	metricsOn := fs.Bool("metrics", true, "serve Prometheus metrics at GET /metrics")
	corsOrigins := fs.String("cors-origins", "", "comma-separated `origins` of other sites whose pages may stream and publish (https://app.example.com, https://*.example.com, *); requests from other origins get 403")
	jwtSecret := fs.String("jwt-secret", "", "HMAC `secret` (32+ bytes) verifying publishers' and subscribers' tokens (HS256/384/512); prefer the environment variable, which the process list does not show")
	jwtKeyFile := fs.String("jwt-key-file", "", "`file` of the PEM public key (RSA, ECDSA, Ed25519, or a certificate) verifying publishers' and subscribers' tokens")
	pubSecret := fs.String("publisher-jwt-secret", "", "HMAC `secret` for publishers only; overrides --jwt-secret, --jwt-key-file and --jwks-url for them")
	pubKeyFile := fs.String("publisher-jwt-key-file", "", "PEM public key `file` for publishers only; overrides --jwt-secret, --jwt-key-file and --jwks-url for them")
	subSecret := fs.String("subscriber-jwt-secret", "", "HMAC `secret` for subscribers only; overrides --jwt-secret, --jwt-key-file and --jwks-url for them")
	subKeyFile := fs.String("subscriber-jwt-key-file", "", "PEM public key `file` for subscribers only; overrides --jwt-secret, --jwt-key-file and --jwks-url for them")
	// The old flags took a secret or a path and guessed which: a mistyped
	// path became a secret. They now only stop the hub, saying why.
	for _, name := range []string{"jwt-key", "publisher-jwt-key", "subscriber-jwt-key"} {
		fs.Var(&removedFlag{name: name}, name, "")
	}
	jwksURL := fs.String("jwks-url", "", "`URL` of a JWKS whose keys verify tokens (cached, refreshed hourly and on unknown kid)")
	jwtAudience := fs.String("jwt-audience", "", "required `aud` claim of tokens")
	jwtIssuer := fs.String("jwt-issuer", "", "required `iss` claim of tokens")
	announce := fs.Bool("announce-connections", true, "start each stream with a herald.connected event naming its connection id (for events sent to connections, and GET /connections)")
	openPublish := fs.Bool("open-publish", false, "let anyone publish without a token: for local development only")
	anonymous := fs.Bool("anonymous", false, "with subscriber keys configured, also let streams without a token subscribe")
	tlsCert := fs.String("tls-cert", "", "TLS certificate `file` (PEM, with chain); with --tls-key serves HTTPS and HTTP/2, reloading renewed files")
	tlsKey := fs.String("tls-key", "", "TLS private key `file` (PEM)")
	dataDir := fs.String("data-dir", "", "`directory` of the persistent event history (herald.db, created if missing); empty keeps the history in memory")
	fsyncPolicy := fs.String("fsync", "always", "with --data-dir, when to sync to disk: always (an acknowledged publish survives power loss) or never (it survives a crash of herald, not of the machine)")
	historyEvents := fs.Int("history-events", herald.DefaultMaxEvents, "most events kept for clients that resume")
	historyBytes := fs.Int64("history-bytes", herald.DefaultMaxBytes, "most `bytes` of events kept for clients that resume")
	historyAge := fs.Duration("history-age", herald.DefaultMaxAge, "how long events are kept for clients that resume")
	topicCaps := topicCapsFlag{}
	fs.Var(topicCaps, "history-topic-events", "`topic=N`: keep at most N events of topic (repeatable, or a comma-separated list)")
	redisURL := fs.String("redis-url", "", "join a cluster whose shared log is a Redis stream at this `URL` (redis:// or rediss://; several addr= parameters for Redis Cluster)")
	redisPrefix := fs.String("redis-prefix", "herald", "with --redis-url, the `prefix` of the cluster's Redis keys: nodes with the same prefix form one hub")
	natsURL := fs.String("nats-url", "", "join a cluster whose shared log is a NATS JetStream stream at this `URL`")
	natsStream := fs.String("nats-stream", heraldnats.DefaultStream, "with --nats-url, the JetStream `stream` of the cluster: nodes on the same stream form one hub")
	nodeName := fs.String("node-name", "", "this node's `name` in GET /cluster; default host:port")
	fs.Usage = flagUsage(fs, "Runs the hub: GET /events streams, POST /publish publishes, GET / is a live page,\nGET /metrics has Prometheus metrics.")
	if err := parseFlags(fs, args, stdout, stderr); err != nil {
		return err
	}
	if err := checkRemovedFlags(fs, stderr); err != nil {
		return err
	}

	logger, err := newLogger(stderr, *logLevel, *logFormat)
	if err != nil {
		return usageError(stderr, "%v", err)
	}
	var origins []string
	for _, o := range commaList(*corsOrigins) {
		if err := httpapi.ValidateOrigin(o); err != nil {
			return usageError(stderr, "--cors-origins: %v", err)
		}
		origins = append(origins, o)
	}
	var proxies []netip.Prefix
	for _, p := range commaList(*trustedProxies) {
		prefix, err := netip.ParsePrefix(p)
		if err != nil {
			addr, aerr := netip.ParseAddr(p)
			if aerr != nil {
				return usageError(stderr, "--trusted-proxies: %q is neither an address nor a CIDR", p)
			}
			prefix = netip.PrefixFrom(addr, addr.BitLen())
		}
		proxies = append(proxies, prefix)
	}
	if *maxPerIP < 0 || *maxPerSubject < 0 || *publishRate < 0 || *publishBurst < 0 {
		return usageError(stderr, "--max-connections-per-ip, --max-connections-per-subject, --publish-rate and --publish-burst must not be negative")
	}
	if (*tlsCert == "") != (*tlsKey == "") {
		return usageError(stderr, "--tls-cert and --tls-key go together")
	}
	switch {
	case *addr == "":
		return usageError(stderr, "--addr must not be empty")
	case *heartbeat != 0 && *heartbeat < 100*time.Millisecond:
		return usageError(stderr, "--heartbeat must be 0 (off) or at least 100ms")
	case *maxConns < 0:
		return usageError(stderr, "--max-connections must not be negative")
	case *queueBytes <= 0 || *maxBody <= 0:
		return usageError(stderr, "--queue-bytes and --max-body must be positive")
	case *maxPublishMemory < 0:
		return usageError(stderr, "--max-publish-memory must not be negative")
	case *writeTimeout < 0 || *shutdownTimeout < 0:
		return usageError(stderr, "--write-timeout and --shutdown-timeout must not be negative")
	case *retry != 0 && *retry < time.Millisecond:
		return usageError(stderr, "--retry must be 0 (none) or at least 1ms")
	case *resetEvent == "" || sse.ValidateType(*resetEvent) != nil:
		return usageError(stderr, "--reset-event must be a non-empty event type without line breaks")
	case *expiredEvent == "" || sse.ValidateType(*expiredEvent) != nil:
		return usageError(stderr, "--expired-event must be a non-empty event type without line breaks")
	case *reusePort && !reusePortSupported:
		return usageError(stderr, "--reuseport is not supported on %s", runtime.GOOS)
	case *historyEvents <= 0 || *historyBytes <= 0 || *historyAge <= 0:
		return usageError(stderr, "--history-events, --history-bytes and --history-age must be positive")
	}
	var syncPolicy bolt.Sync
	switch *fsyncPolicy {
	case "always":
		syncPolicy = bolt.SyncAlways
	case "never":
		syncPolicy = bolt.SyncNever
	default:
		return usageError(stderr, "--fsync must be always or never, not %q", *fsyncPolicy)
	}
	if *dataDir == "" && isSet(fs, "fsync") {
		return usageError(stderr, "--fsync needs --data-dir: the history is in memory")
	}
	clustered := *redisURL != "" || *natsURL != ""
	switch {
	case *redisURL != "" && *natsURL != "":
		return usageError(stderr, "--redis-url and --nats-url exclude each other: a cluster has one shared log")
	case clustered && *dataDir != "":
		return usageError(stderr, "--data-dir with a cluster: the broker keeps the history (each node keeps a copy in memory)")
	case *redisURL == "" && isSet(fs, "redis-prefix"):
		return usageError(stderr, "--redis-prefix needs --redis-url")
	case *natsURL == "" && isSet(fs, "nats-stream"):
		return usageError(stderr, "--nats-stream needs --nats-url")
	}

	retention := herald.Retention{MaxEvents: *historyEvents, MaxBytes: *historyBytes, MaxAge: *historyAge}
	if len(topicCaps) > 0 {
		retention.PerTopic = topicCaps
	}
	var history herald.History
	var broker herald.Broker
	storeLog := []any{"store", "memory"}
	if clustered {
		// Each node keeps its copy of the shared log in memory, under the
		// same retention as the broker's.
		history = herald.NewMemoryHistory(retention)
		if broker, storeLog, err = openBroker(ctx, logger, *redisURL, *redisPrefix, *natsURL, *natsStream, retention); err != nil {
			return err
		}
		defer broker.Close()
	} else if *dataDir == "" {
		history = herald.NewMemoryHistory(retention)
	} else {
		if err := os.MkdirAll(*dataDir, 0o755); err != nil {
			return fmt.Errorf("--data-dir: %w", err)
		}
		path := filepath.Join(*dataDir, "herald.db")
		h, err := bolt.Open(path, bolt.Options{Retention: retention, Sync: syncPolicy, Logger: logger})
		if err != nil {
			return err
		}
		history = h
		storeLog = []any{"store", "bolt", "path", path, "fsync", syncPolicy.String()}
	}
	// The history is closed once nothing can use it: after the server
	// and the streams have ended, or on an early return.
	historyOpen := true
	closeHistory := func() error {
		if !historyOpen {
			return nil
		}
		historyOpen = false
		return history.Close()
	}
	defer func() {
		if cerr := closeHistory(); err == nil {
			err = cerr
		}
	}()

	// Publishers never authenticate by cookie: /publish takes form posts,
	// which any site can make a browser send with its cookies (CSRF).
	both := keyFlags{"jwt-secret", *jwtSecret, "jwt-key-file", *jwtKeyFile}
	pubKey, err := pickKey(keyFlags{"publisher-jwt-secret", *pubSecret, "publisher-jwt-key-file", *pubKeyFile}, both)
	if err != nil {
		return usageError(stderr, "%v", err)
	}
	subKey, err := pickKey(keyFlags{"subscriber-jwt-secret", *subSecret, "subscriber-jwt-key-file", *subKeyFile}, both)
	if err != nil {
		return usageError(stderr, "%v", err)
	}
	pubAuth, err := newVerifier(ctx, logger, pubKey, *jwksURL, *jwtAudience, *jwtIssuer, auth.FromHeader|auth.FromQuery)
	if err != nil {
		return usageError(stderr, "publisher key: %v", err)
	}
	subAuth, err := newVerifier(ctx, logger, subKey, *jwksURL, *jwtAudience, *jwtIssuer, auth.AllSources)
	if err != nil {
		return usageError(stderr, "subscriber key: %v", err)
	}
	for _, v := range []*auth.Verifier{pubAuth, subAuth} {
		if v != nil {
			defer v.Close()
		}
	}
	var devToken string
	switch {
	case pubAuth != nil && *openPublish:
		return usageError(stderr, "--open-publish contradicts a publisher key")
	case pubAuth == nil && *openPublish:
		logger.Warn("--open-publish: anyone can publish; for local development only")
	case pubAuth == nil:
		// Secure by default: with no key configured, publishing still
		// needs a token, signed with a key made for this run and printed
		// for whoever started the hub.
		if pubAuth, devToken, err = runKey(ctx, logger); err != nil {
			return err
		}
		defer pubAuth.Close()
	}
	if *anonymous && subAuth == nil {
		return usageError(stderr, "--anonymous needs a subscriber key (without one, everyone may subscribe anyway)")
	}

	hub := &herald.Hub{QueueBytes: *queueBytes, Heartbeat: *heartbeat, History: history, Broker: broker, Logger: logger}
	if *heartbeat == 0 {
		hub.Heartbeat = -1 // the flag's 0 means off; the Hub's 0 means default
	}
	handler := &httpapi.Handler{
		Hub:                      hub,
		MaxConnections:           *maxConns,
		MaxBodyBytes:             *maxBody,
		MaxPublishMemory:         *maxPublishMemory,
		OpenPublish:              *openPublish,
		WriteTimeout:             *writeTimeout,
		Retry:                    *retry,
		ResetEvent:               *resetEvent,
		ExpiredEvent:             *expiredEvent,
		CORSOrigins:              origins,
		Anonymous:                *anonymous,
		AnnounceConnections:      *announce,
		MaxConnectionsPerSubject: *maxPerSubject,
		PublishRate:              *publishRate,
		PublishBurst:             *publishBurst,
		MaxConnectionsPerIP:      *maxPerIP,
		TrustedProxies:           proxies,
		Page:                     web.Handler(),
		Logger:                   logger,
	}
	if *writeTimeout == 0 {
		handler.WriteTimeout = -1
	}
	if *retry == 0 {
		handler.Retry = -1 // the flag's 0 means none; the Handler's 0 means default
	}
	if pubAuth != nil { // a nil *Verifier in the interface would not be nil
		handler.PublishAuth = pubAuth
	}
	if subAuth != nil {
		handler.SubscribeAuth = subAuth
	}
	var root http.Handler = handler
	if *metricsOn {
		// A switch on the exact path, not http.ServeMux: everything else,
		// unknown paths included, stays the API's (JSON errors, no
		// redirects for unclean paths).
		mh := metrics.Handler(hub, handler.ActiveStreams)
		root = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/metrics" {
				mh.ServeHTTP(w, r)
				return
			}
			handler.ServeHTTP(w, r)
		})
	}
	srv := httpapi.NewServer(*addr, root)
	srv.HTTP2.WriteByteTimeout = max(handler.WriteTimeout, 0) // root may hide the handler from NewServer
	srv.ErrorLog = slog.NewLogLogger(logger.Handler(), slog.LevelWarn)
	scheme := "http"
	if *tlsCert != "" {
		certs, err := newCertReloader(*tlsCert, *tlsKey, logger)
		if err != nil {
			return err
		}
		srv.TLSConfig = certs.tlsConfig()
		scheme = "https"
	}
	// Closing the hub ends every stream: Shutdown waits for those on
	// handler goroutines, WaitStreams below for those on the engine.
	srv.RegisterOnShutdown(func() { hub.Close() })

	var lc net.ListenConfig
	if *reusePort {
		lc.Control = setReusePort
	}
	ln, err := lc.Listen(ctx, "tcp", *addr)
	if err != nil {
		switch {
		case !errors.Is(err, syscall.EADDRINUSE) || !reusePortSupported:
		case *reusePort:
			err = fmt.Errorf("%w (the port can be shared only when every process on it uses SO_REUSEPORT and runs as the same user)", err)
		default:
			err = fmt.Errorf("%w (to share the port with another herald, start every one with --reuseport)", err)
		}
		return err
	}
	hub.NodeID = *nodeName
	if hub.NodeID == "" {
		host, _ := os.Hostname()
		hub.NodeID = net.JoinHostPort(host, strconv.Itoa(ln.Addr().(*net.TCPAddr).Port))
	}
	if clustered {
		go func() {
			if err := hub.WaitSynced(context.WithoutCancel(ctx)); err == nil {
				logger.Info("in sync with the cluster's log: ready", "node", hub.Node())
			}
		}()
	}
	logArgs := append([]any{"addr", ln.Addr().String()}, storeLog...)
	logger.Info("herald listening", append(logArgs,
		"heartbeat", heartbeat.String(), "max_connections", *maxConns,
		"reuseport", *reusePort, "metrics", *metricsOn, "tls", scheme == "https", "cors_origins", origins)...)
	fmt.Fprintf(stdout, "herald serving on %s://%s\n", scheme, displayAddr(ln.Addr()))
	if devToken != "" {
		fmt.Fprintf(stdout, "publish token (this run only; set --jwt-secret or --jwt-key-file to choose the key): %s\n", devToken)
		// The fragment reaches the page's script, never a server or a log.
		fmt.Fprintf(stdout, "page that publishes with it: %s://%s/#token=%s\n", scheme, displayAddr(ln.Addr()), devToken)
	}

	served := make(chan error, 1)
	go func() {
		if srv.TLSConfig != nil {
			served <- srv.ServeTLS(ln, "", "") // the certificate comes from TLSConfig
			return
		}
		served <- srv.Serve(ln)
	}()
	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}

	logger.Info("shutting down", "open_streams", handler.ActiveStreams())
	sctx, cancel := context.WithTimeout(context.Background(), *shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		logger.Warn("streams still open at shutdown deadline; closing them", "error", err)
		srv.Close()
	}
	// Streams served by the engine left the server when their connections
	// were taken over; the closed hub is ending them.
	if err := handler.WaitStreams(sctx); err != nil {
		logger.Warn("streams still open at shutdown deadline; exiting", "open_streams", handler.ActiveStreams())
	}
	if err := <-served; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	if err := closeHistory(); err != nil {
		return err
	}
	logger.Info("stopped")
	return nil
}

// openBroker connects to the cluster's broker.
func openBroker(ctx context.Context, logger *slog.Logger, redisURL, redisPrefix, natsURL, natsStream string, retention herald.Retention) (herald.Broker, []any, error) {
	octx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if redisURL != "" {
		// go-redis reports each failed dial on its own logger; the
		// broker's errors already say it, once per outage.
		goredis.SetLogger(redisClientLog{logger})
		b, err := heraldredis.Open(octx, heraldredis.Options{URL: redisURL, Prefix: redisPrefix, Retention: retention, Logger: logger})
		if err != nil {
			return nil, nil, fmt.Errorf("--redis-url: %w", err)
		}
		return b, []any{"store", "redis", "prefix", redisPrefix}, nil
	}
	b, err := heraldnats.Open(octx, heraldnats.Options{URL: natsURL, Stream: natsStream, Retention: retention, Logger: logger})
	if err != nil {
		return nil, nil, fmt.Errorf("--nats-url: %w", err)
	}
	return b, []any{"store", "nats", "stream", natsStream}, nil
}

// redisClientLog sends go-redis's own messages to the debug log.
type redisClientLog struct{ l *slog.Logger }

func (r redisClientLog) Printf(ctx context.Context, format string, v ...any) {
	r.l.DebugContext(ctx, "redis client: "+fmt.Sprintf(format, v...))
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

// displayAddr turns a wildcard listen address into one a browser can open.
func displayAddr(a net.Addr) string {
	tcp, ok := a.(*net.TCPAddr)
	if !ok || !tcp.IP.IsUnspecified() {
		return a.String()
	}
	return fmt.Sprintf("localhost:%d", tcp.Port)
}

// keyFlags is one role's pair of key flags: their names and values.
type keyFlags struct {
	secretFlag, secret, fileFlag, file string
}

// key is the key a role's tokens are verified with: an HMAC secret, or the
// PEM public key read from a file; neither when the role has no key flag.
type key struct {
	secret []byte
	pem    []byte
	from   string // the flag and file the PEM was read from, for errors
}

// pickKey returns the key of the first pair that sets one, read and
// checked for being what its flag says: a file that cannot be read is an
// error naming it, never taken for a secret.
func pickKey(pairs ...keyFlags) (key, error) {
	for _, p := range pairs {
		switch {
		case p.secret != "" && p.file != "":
			return key{}, fmt.Errorf("--%s and --%s exclude each other: a role has one key", p.secretFlag, p.fileFlag)
		case p.secret != "":
			if len(p.secret) < auth.MinSecretBytes {
				return key{}, fmt.Errorf("--%s must be at least %d bytes (it is %d); for a public key use --%s", p.secretFlag, auth.MinSecretBytes, len(p.secret), p.fileFlag)
			}
			return key{secret: []byte(p.secret)}, nil
		case p.file != "":
			pem, err := os.ReadFile(p.file)
			if err != nil {
				return key{}, fmt.Errorf("--%s: %w", p.fileFlag, err)
			}
			return key{pem: pem, from: "--" + p.fileFlag + " " + p.file}, nil
		}
	}
	return key{}, nil
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

// newVerifier builds a token verifier from a key or else a JWKS URL; nil
// when neither is set.
func newVerifier(ctx context.Context, logger *slog.Logger, k key, jwksURL, audience, issuer string, sources auth.Source) (*auth.Verifier, error) {
	c := auth.Config{Audience: audience, Issuer: issuer, Logger: logger, Sources: sources}
	switch {
	case k.secret != nil:
		c.Secret = k.secret
	case k.pem != nil:
		c.PublicKeyPEM = k.pem
	case jwksURL != "":
		c.JWKSURL = jwksURL
	default:
		return nil, nil
	}
	// The server's context: a JWKS is fetched in the background until
	// serve returns.
	v, err := auth.NewVerifier(context.WithoutCancel(ctx), c)
	if err != nil && k.from != "" {
		err = fmt.Errorf("%s: %w", k.from, err)
	}
	return v, err
}

// runKey makes a random key for this run and a token that may publish to
// every topic for a day, for a hub started without any publisher key.
func runKey(ctx context.Context, logger *slog.Logger) (*auth.Verifier, string, error) {
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		return nil, "", err
	}
	v, err := auth.NewVerifier(context.WithoutCancel(ctx), auth.Config{Secret: secret, Logger: logger, Sources: auth.FromHeader | auth.FromQuery})
	if err != nil {
		return nil, "", err
	}
	token, err := auth.MintHS256(secret, herald.Identity{Subject: "herald-dev", Publish: []herald.Selector{herald.All{}}}, 24*time.Hour, "", "")
	if err != nil {
		v.Close()
		return nil, "", err
	}
	logger.Info("no publisher key configured: publishing needs the token printed on stdout (valid 24 h, this run only)")
	return v, token, nil
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
