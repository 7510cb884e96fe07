package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/herald-sse/herald"
	"github.com/herald-sse/herald/auth"
	"github.com/herald-sse/herald/bolt"
	"github.com/herald-sse/herald/httpapi"
	"github.com/herald-sse/herald/metrics"
	heraldnats "github.com/herald-sse/herald/nats"
	heraldredis "github.com/herald-sse/herald/redis"
	"github.com/herald-sse/herald/web"
	goredis "github.com/redis/go-redis/v9"
)

// serveCommand is one run of `herald serve`: the configuration parsed from
// flags and environment, then what runServe opens from it, step by step.
// Each step registers how to undo itself; close undoes them in reverse,
// like the defers of one long function would.
type serveCommand struct {
	stdout, stderr io.Writer

	// Set by parseArgs.
	flags      serveFlags
	logger     *slog.Logger
	origins    []string
	proxies    []netip.Prefix
	syncPolicy bolt.Sync
	retention  herald.Retention
	clustered  bool

	// Set by the steps of runServe, in this order.
	history          herald.History
	historyOpen      bool
	broker           herald.Broker
	storeLog         []any // the store's attributes in the "herald listening" line
	pubAuth, subAuth *auth.Verifier
	devToken         string // the publish token printed when runKey made the key
	hub              *herald.Hub
	handler          *httpapi.Handler
	srv              *http.Server
	scheme           string
	ln               net.Listener
	closers          []func() error
}

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) (err error) {
	c := &serveCommand{stdout: stdout, stderr: stderr}
	if err := c.parseArgs(args); err != nil {
		return err
	}
	defer func() {
		if cerr := c.close(); err == nil {
			err = cerr
		}
	}()
	if err := c.openStore(ctx); err != nil {
		return err
	}
	if err := c.openAuth(ctx); err != nil {
		return err
	}
	c.newHub()
	c.newHandler()
	if err := c.newServer(); err != nil {
		return err
	}
	if err := c.listen(ctx); err != nil {
		return err
	}
	if err := c.openHub(); err != nil {
		return err
	}
	c.watchSync(ctx)
	c.printListening()
	return c.serve(ctx)
}

// onClose registers f to run when serve returns, before what was
// registered earlier.
func (c *serveCommand) onClose(f func() error) {
	c.closers = append(c.closers, f)
}

// close releases what the steps opened, newest first, and returns the
// first error.
func (c *serveCommand) close() error {
	var err error
	for i := len(c.closers) - 1; i >= 0; i-- {
		if cerr := c.closers[i](); err == nil {
			err = cerr
		}
	}
	return err
}

// openStore opens where the hub keeps events: a cluster's broker (each
// node with a copy in memory), a bolt file under --data-dir, or memory.
func (c *serveCommand) openStore(ctx context.Context) error {
	f := &c.flags
	c.storeLog = []any{"store", "memory"}
	switch {
	case c.clustered:
		// Each node keeps its copy of the shared log in memory, under the
		// same retention as the broker's.
		c.history = herald.NewMemoryHistory(c.retention)
		broker, storeLog, err := openBroker(ctx, c.logger, f.redisURL, f.redisPrefix, f.natsURL, f.natsStream, c.retention)
		if err != nil {
			return err
		}
		c.broker, c.storeLog = broker, storeLog
		c.onClose(func() error { broker.Close(); return nil })
	case f.dataDir == "":
		c.history = herald.NewMemoryHistory(c.retention)
	default:
		if err := c.openBolt(); err != nil {
			return err
		}
	}
	// The history is closed once nothing can use it: after the server
	// and the streams have ended (shutdown), or on an early return.
	c.historyOpen = true
	c.onClose(c.closeHistory)
	return nil
}

// openBolt opens the persistent history in --data-dir, creating it.
func (c *serveCommand) openBolt() error {
	if err := os.MkdirAll(c.flags.dataDir, 0o755); err != nil {
		return fmt.Errorf("--data-dir: %w", err)
	}
	path := filepath.Join(c.flags.dataDir, "herald.db")
	h, err := bolt.Open(path, bolt.Options{Retention: c.retention, Sync: c.syncPolicy, Logger: c.logger})
	if err != nil {
		return err
	}
	c.history = h
	c.storeLog = []any{"store", "bolt", "path", path, "fsync", c.syncPolicy.String()}
	return nil
}

// closeHistory closes the history the first time it is called.
func (c *serveCommand) closeHistory() error {
	if !c.historyOpen {
		return nil
	}
	c.historyOpen = false
	return c.history.Close()
}

// openAuth builds the verifiers of publishers' and subscribers' tokens
// from the key flags; publishers without a key get one made for this run
// unless --open-publish.
func (c *serveCommand) openAuth(ctx context.Context) error {
	f := &c.flags
	// Publishers never authenticate by cookie: /publish takes form posts,
	// which any site can make a browser send with its cookies (CSRF).
	both := keyFlags{"jwt-secret", f.jwtSecret, "jwt-key-file", f.jwtKeyFile}
	pubKey, err := pickKey(keyFlags{"publisher-jwt-secret", f.pubSecret, "publisher-jwt-key-file", f.pubKeyFile}, both)
	if err != nil {
		return usageError(c.stderr, "%v", err)
	}
	subKey, err := pickKey(keyFlags{"subscriber-jwt-secret", f.subSecret, "subscriber-jwt-key-file", f.subKeyFile}, both)
	if err != nil {
		return usageError(c.stderr, "%v", err)
	}
	if c.pubAuth, err = c.openVerifier(ctx, pubKey, auth.FromHeader|auth.FromQuery); err != nil {
		return usageError(c.stderr, "publisher key: %v", err)
	}
	if c.subAuth, err = c.openVerifier(ctx, subKey, auth.AllSources); err != nil {
		return usageError(c.stderr, "subscriber key: %v", err)
	}
	switch {
	case c.pubAuth != nil && f.openPublish:
		return usageError(c.stderr, "--open-publish contradicts a publisher key")
	case c.pubAuth == nil && f.openPublish:
		c.logger.Warn("--open-publish: anyone can publish; for local development only")
	case c.pubAuth == nil:
		// Secure by default: with no key configured, publishing still
		// needs a token, signed with a key made for this run and printed
		// for whoever started the hub.
		v, token, err := runKey(ctx, c.logger)
		if err != nil {
			return err
		}
		c.pubAuth, c.devToken = v, token
		c.onClose(func() error { v.Close(); return nil })
	}
	if f.anonymous && c.subAuth == nil {
		return usageError(c.stderr, "--anonymous needs a subscriber key (without one, everyone may subscribe anyway)")
	}
	return nil
}

// openVerifier is newVerifier with the JWKS and claim flags, registered
// to be closed; nil when the role has no key.
func (c *serveCommand) openVerifier(ctx context.Context, k key, sources auth.Source) (*auth.Verifier, error) {
	v, err := newVerifier(ctx, c.logger, k, c.flags.jwksURL, c.flags.jwtAudience, c.flags.jwtIssuer, sources)
	if err != nil || v == nil {
		return nil, err
	}
	c.onClose(func() error { v.Close(); return nil })
	return v, nil
}

// newHub makes the hub over the opened store.
func (c *serveCommand) newHub() {
	c.hub = &herald.Hub{QueueBytes: c.flags.queueBytes, Heartbeat: c.flags.heartbeat, History: c.history, Broker: c.broker, Logger: c.logger}
	if c.flags.heartbeat == 0 {
		c.hub.Heartbeat = -1 // the flag's 0 means off; the Hub's 0 means default
	}
}

// newHandler makes the HTTP API over the hub.
func (c *serveCommand) newHandler() {
	f := &c.flags
	handler := &httpapi.Handler{
		Hub:                      c.hub,
		MaxConnections:           f.maxConns,
		MaxBodyBytes:             f.maxBody,
		MaxPublishMemory:         f.maxPublishMem,
		OpenPublish:              f.openPublish,
		WriteTimeout:             f.writeTimeout,
		Retry:                    f.retry,
		ResetEvent:               f.resetEvent,
		ExpiredEvent:             f.expiredEvent,
		CORSOrigins:              c.origins,
		Anonymous:                f.anonymous,
		AnnounceConnections:      f.announce,
		MaxConnectionsPerSubject: f.maxPerSubject,
		PublishRate:              f.publishRate,
		PublishBurst:             f.publishBurst,
		MaxConnectionsPerIP:      f.maxPerIP,
		TrustedProxies:           c.proxies,
		Page:                     web.Handler(),
		Logger:                   c.logger,
	}
	if f.writeTimeout == 0 {
		handler.WriteTimeout = -1
	}
	if f.retry == 0 {
		handler.Retry = -1 // the flag's 0 means none; the Handler's 0 means default
	}
	c.setHandlerAuth(handler)
	c.handler = handler
}

// setHandlerAuth hands the verifiers to the handler. It is the one place
// that knows how httpapi takes its authenticators.
func (c *serveCommand) setHandlerAuth(handler *httpapi.Handler) {
	if c.pubAuth != nil { // a nil *Verifier in the interface would not be nil
		handler.PublishAuth = c.pubAuth
	}
	if c.subAuth != nil {
		handler.SubscribeAuth = c.subAuth
	}
}

// rootHandler is the API, with GET /metrics in front when --metrics.
func (c *serveCommand) rootHandler() http.Handler {
	handler := c.handler
	if !c.flags.metricsOn {
		return handler
	}
	// A switch on the exact path, not http.ServeMux: everything else,
	// unknown paths included, stays the API's (JSON errors, no
	// redirects for unclean paths).
	mh := metrics.Handler(c.hub, handler.ActiveStreams)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/metrics" {
			mh.ServeHTTP(w, r)
			return
		}
		handler.ServeHTTP(w, r)
	})
}

// newServer makes the HTTP server, with TLS when --tls-cert is set.
func (c *serveCommand) newServer() error {
	srv := httpapi.NewServer(c.flags.addr, c.rootHandler())
	srv.HTTP2.WriteByteTimeout = max(c.handler.WriteTimeout, 0) // root may hide the handler from NewServer
	srv.ErrorLog = slog.NewLogLogger(c.logger.Handler(), slog.LevelWarn)
	c.scheme = "http"
	if c.flags.tlsCert != "" {
		certs, err := newCertReloader(c.flags.tlsCert, c.flags.tlsKey, c.logger)
		if err != nil {
			return err
		}
		srv.TLSConfig = certs.tlsConfig()
		c.scheme = "https"
	}
	// Closing the hub ends every stream: Shutdown waits for those on
	// handler goroutines, WaitStreams in shutdown for those on the engine.
	hub := c.hub
	srv.RegisterOnShutdown(func() { hub.Close() })
	c.srv = srv
	return nil
}

// listen opens the listening socket and names the node after its port
// unless --node-name.
func (c *serveCommand) listen(ctx context.Context) error {
	var lc net.ListenConfig
	if c.flags.reusePort {
		lc.Control = setReusePort
	}
	ln, err := lc.Listen(ctx, "tcp", c.flags.addr)
	if err != nil {
		switch {
		case !errors.Is(err, syscall.EADDRINUSE) || !reusePortSupported:
		case c.flags.reusePort:
			err = fmt.Errorf("%w (the port can be shared only when every process on it uses SO_REUSEPORT and runs as the same user)", err)
		default:
			err = fmt.Errorf("%w (to share the port with another herald, start every one with --reuseport)", err)
		}
		return err
	}
	c.ln = ln
	c.hub.NodeID = c.flags.nodeName
	if c.hub.NodeID == "" {
		host, _ := os.Hostname()
		c.hub.NodeID = net.JoinHostPort(host, strconv.Itoa(ln.Addr().(*net.TCPAddr).Port))
	}
	return nil
}

// openHub starts the hub, once listen has named the node.
func (c *serveCommand) openHub() error {
	if err := c.hub.Open(); err != nil {
		c.ln.Close()
		return err
	}
	c.onClose(func() error { return c.hub.Close() }) // Shutdown closes it first; this is for the errors before
	return nil
}

// watchSync logs, in a cluster, when the node has caught up with the
// shared log.
func (c *serveCommand) watchSync(ctx context.Context) {
	if !c.clustered {
		return
	}
	hub, logger := c.hub, c.logger
	go func() {
		if err := hub.WaitSynced(context.WithoutCancel(ctx)); err == nil {
			logger.Info("in sync with the cluster's log: ready", "node", hub.Node())
		}
	}()
}

// printListening logs the configuration served and prints the URL (and
// the run's publish token, if it made one) for whoever started the hub.
func (c *serveCommand) printListening() {
	f, addr := &c.flags, c.ln.Addr()
	logArgs := append([]any{"addr", addr.String()}, c.storeLog...)
	c.logger.Info("herald listening", append(logArgs,
		"heartbeat", f.heartbeat.String(), "max_connections", f.maxConns,
		"reuseport", f.reusePort, "metrics", f.metricsOn, "tls", c.scheme == "https", "cors_origins", c.origins)...)
	fmt.Fprintf(c.stdout, "herald serving on %s://%s\n", c.scheme, displayAddr(addr))
	if c.devToken != "" {
		fmt.Fprintf(c.stdout, "publish token (this run only; set --jwt-secret or --jwt-key-file to choose the key): %s\n", c.devToken)
		// The fragment reaches the page's script, never a server or a log.
		fmt.Fprintf(c.stdout, "page that publishes with it: %s://%s/#token=%s\n", c.scheme, displayAddr(addr), c.devToken)
	}
}

// serve serves until the server fails or ctx is done, then shuts down.
func (c *serveCommand) serve(ctx context.Context) error {
	srv, ln := c.srv, c.ln
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
	return c.shutdown(served)
}

// shutdown gives the streams --shutdown-timeout to end, waits for the
// server to return and closes the history.
func (c *serveCommand) shutdown(served <-chan error) error {
	c.logger.Info("shutting down", "open_streams", c.handler.ActiveStreams())
	sctx, cancel := context.WithTimeout(context.Background(), c.flags.shutdownTimeout)
	defer cancel()
	if err := c.srv.Shutdown(sctx); err != nil {
		c.logger.Warn("streams still open at shutdown deadline; closing them", "error", err)
		c.srv.Close()
	}
	// Streams served by the engine left the server when their connections
	// were taken over; the closed hub is ending them.
	if err := c.handler.WaitStreams(sctx); err != nil {
		c.logger.Warn("streams still open at shutdown deadline; exiting", "open_streams", c.handler.ActiveStreams())
	}
	if err := <-served; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	if err := c.closeHistory(); err != nil {
		return err
	}
	c.logger.Info("stopped")
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
