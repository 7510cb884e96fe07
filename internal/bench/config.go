package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Defaults used for zero Config fields.
const (
	// FDHeadroom is the number of file descriptors a process keeps for
	// other uses than streams; see StreamsPerProcessLimit.
	FDHeadroom = 256
	// DefaultConnectConcurrency is how many streams may be between
	// connect and response headers at once, over all processes.
	DefaultConnectConcurrency = 256
	// DefaultConnectTimeout bounds one stream's connect and headers.
	DefaultConnectTimeout = 10 * time.Second
	// DefaultWindow bounds events in flight in the closed loop.
	DefaultWindow = 1000
	// DefaultSize is the data size that makes a Herald event about 100
	// bytes on the wire (an id line of about 18 bytes, "data: " and the
	// blank line).
	DefaultSize = 74
	// DefaultDrain is the longest wait for in-flight events after
	// publishing stops.
	DefaultDrain = 5 * time.Second
	// DefaultMaxFailed is the fraction of streams that may fail to
	// connect before Run reports ErrTooManyFailed.
	DefaultMaxFailed = 0.01
)

// PublishNone as Config.PublishURL disables publishing.
const PublishNone = "none"

// Config describes a benchmark run. Only URL and Streams are required.
type Config struct {
	// URL is the event stream to open, http only, e.g.
	// http://127.0.0.1:8080/events?topic=bench; or several, separated by
	// commas, to measure a cluster: the streams take them in turn, stream
	// i (counted over all processes) opening URL i mod n. A comma
	// separates URLs only where another URL's scheme follows it
	// ("…,http://…"), so commas inside a URL stay part of it (see
	// SplitURLs).
	URL string
	// Streams is how many streams to open.
	Streams int
	// StreamsPerProcess is the most streams one process holds; more run
	// in worker processes, each with its share. 0 means
	// StreamsPerProcessLimit().
	StreamsPerProcess int
	// Source chooses the local addresses streams connect from: a prefix
	// (127.7.9.0/24), addresses separated by commas, or "none" to let
	// the kernel choose. Empty means a random 127.a.b.0/24 block per run
	// when every target is an IPv4 loopback address (so TIME_WAIT sockets
	// of an earlier run never collide with this one), else none. The
	// addresses must be of the targets' IP version.
	Source string
	// ConnectConcurrency bounds streams between connect and response
	// headers at once. 0 means DefaultConnectConcurrency.
	ConnectConcurrency int
	// ConnectTimeout bounds one stream's connect and response headers.
	// 0 means DefaultConnectTimeout.
	ConnectTimeout time.Duration
	// Header is added to every stream request (e.g. Authorization).
	Header http.Header
	// Idle is how long to hold the streams open after they connected,
	// before measuring the server and publishing.
	Idle time.Duration
	// Duration is how long to publish (or, with publishing disabled, to
	// count events the server sends). 0 with Events 0 means no such
	// phase: connect, measure and stop.
	Duration time.Duration
	// Events stops publishing after this many events (0: no limit).
	Events int
	// Rate is events per second; 0 publishes as fast as delivery allows,
	// keeping at most Window events published but not yet received by
	// every live stream.
	Rate float64
	// Window bounds events in flight when Rate is 0. 0 means
	// DefaultWindow.
	Window int
	// Batch is the most events per publish request; above 1 they are
	// sent as a JSON array. 0 means 1.
	Batch int
	// Size is the least number of bytes of each event's data. 0 means
	// DefaultSize.
	Size int
	// PublishURL receives POSTs of events: one URL, or several separated
	// by commas as in URL, which take the publish requests in turn (each
	// request, of one event or a batch, goes to the next), so that events
	// enter a cluster through every node. Empty means each distinct origin
	// of the stream URLs, in their order, with path /publish; PublishNone
	// disables publishing.
	PublishURL string
	// PublishFormat is "form" (topic=…&data=…, which Herald and Mercure
	// accept) or "json" (Herald's [{"topics":[…],"data":…}]). Empty means
	// form for single events, json for batches.
	PublishFormat string
	// PublishHeader is added to every publish request.
	PublishHeader http.Header
	// Topic is the topic to publish to. Empty means the stream URL's
	// first topic query parameter, which must then be the same in every
	// stream URL.
	Topic string
	// Drain is the longest wait after publishing for events still in
	// flight. 0 means DefaultDrain.
	Drain time.Duration
	// ServerPIDs are the server processes whose memory to measure; the
	// results add up their RSS. Empty means the processes listening on the
	// target port, or on every target port when URL names several (all
	// the nodes of a cluster), when every target is on this machine.
	ServerPIDs []int
	// MaxFailed is the fraction of streams that may fail to connect
	// before Run returns ErrTooManyFailed (with the results). 0 means
	// DefaultMaxFailed; negative means none may fail.
	MaxFailed float64
	// Progress receives one line per ProgressInterval while the run
	// lasts; nil means none.
	Progress io.Writer
	// ProgressInterval defaults to one second.
	ProgressInterval time.Duration
	// WorkerCommand runs a worker process: its standard input and output
	// must be served by ServeWorker. Empty means this executable with the
	// arguments "bench --worker", which the herald command answers. The
	// variable WorkerEnv=1 is always added to a worker's environment.
	WorkerCommand []string
	// Shards is the number of poller goroutines per process; 0 means
	// GOMAXPROCS.
	Shards int
}

// StreamsPerProcessLimit returns how many streams one process can hold:
// its file descriptor limit (ulimit -n, which Go raises to the hard limit
// at startup) less FDHeadroom, at most a million.
func StreamsPerProcessLimit() int {
	n, ok := fdLimit()
	if !ok {
		return 10000
	}
	return int(max(min(n, 1<<20+FDHeadroom), 2*FDHeadroom) - FDHeadroom)
}

// ErrTooManyFailed is returned (wrapped, with the results) when more
// streams failed to connect than Config.MaxFailed allows.
var ErrTooManyFailed = errors.New("too many streams failed to connect")

// plan is a validated Config with everything derived from it.
type plan struct {
	cfg         Config
	streamURLs  []*url.URL     // the stream URLs, in order
	targets     []engineTarget // their addresses and requests, in the same order
	sources     []netip.Addr
	sourceDesc  string
	publishURLs []string // none when disabled
	format      string
	topic       string
	perProcess  int
	runID       uint32
}

// SplitURLs splits a list of URLs separated by commas, as Config.URL and
// Config.PublishURL take them. A comma ends a URL only where the next one
// begins with a scheme ("http://"), optionally after spaces, so a comma
// inside a URL (in its query, say) stays part of it. Spaces around the
// URLs are dropped.
func SplitURLs(s string) []string {
	var urls []string
	start := 0
	for i := 0; i < len(s); i++ {
		if s[i] == ',' && hasScheme(strings.TrimLeft(s[i+1:], " \t")) {
			urls = append(urls, strings.TrimSpace(s[start:i]))
			start = i + 1
		}
	}
	return append(urls, strings.TrimSpace(s[start:]))
}

// hasScheme reports whether s begins with a URL scheme and "://".
func hasScheme(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z':
		case i > 0 && ('0' <= c && c <= '9' || c == '+' || c == '-' || c == '.'):
		case i > 0 && c == ':':
			return strings.HasPrefix(s[i:], "://")
		default:
			return false
		}
	}
	return false
}

// newPlan checks cfg and fills in defaults.
func newPlan(ctx context.Context, cfg Config) (*plan, error) {
	if !supported {
		return nil, errors.New("bench: the load generator needs Linux (epoll)")
	}
	if cfg.Streams <= 0 {
		return nil, errors.New("bench: Streams must be positive")
	}
	setDefault(&cfg.StreamsPerProcess, StreamsPerProcessLimit())
	setDefault(&cfg.ConnectConcurrency, DefaultConnectConcurrency)
	setDefault(&cfg.ConnectTimeout, DefaultConnectTimeout)
	setDefault(&cfg.Window, DefaultWindow)
	setDefault(&cfg.Batch, 1)
	setDefault(&cfg.Size, DefaultSize)
	setDefault(&cfg.Drain, DefaultDrain)
	setDefault(&cfg.ProgressInterval, time.Second)
	if cfg.MaxFailed == 0 {
		cfg.MaxFailed = DefaultMaxFailed
	}
	switch {
	case cfg.StreamsPerProcess < 0, cfg.ConnectConcurrency < 0, cfg.Window < 0, cfg.Batch < 0, cfg.Size < 0, cfg.Events < 0:
		return nil, errors.New("bench: counts must not be negative")
	case cfg.Rate < 0:
		return nil, errors.New("bench: Rate must not be negative")
	case cfg.Idle < 0 || cfg.Duration < 0 || cfg.Drain < 0 || cfg.ConnectTimeout < 0:
		return nil, errors.New("bench: durations must not be negative")
	}
	p := &plan{cfg: cfg, perProcess: cfg.StreamsPerProcess, runID: rand.Uint32()}

	var addrs []netip.Addr
	for _, raw := range SplitURLs(cfg.URL) {
		u, t, err := streamTarget(ctx, raw, cfg.Header)
		if err != nil {
			return nil, err
		}
		p.streamURLs = append(p.streamURLs, u)
		p.targets = append(p.targets, t)
		addrs = append(addrs, t.Addr.Addr())
	}
	if len(p.targets) > maxTargets {
		return nil, fmt.Errorf("bench: %d stream URLs; at most %d", len(p.targets), maxTargets)
	}

	var err error
	if p.sources, p.sourceDesc, err = parseSource(cfg.Source, addrs); err != nil {
		return nil, err
	}

	if strings.TrimSpace(cfg.PublishURL) != PublishNone {
		if p.publishURLs, err = publishURLs(cfg.PublishURL, p.streamURLs); err != nil {
			return nil, err
		}
		p.topic = cfg.Topic
		if p.topic == "" {
			p.topic = p.streamURLs[0].Query().Get("topic")
			for _, u := range p.streamURLs[1:] {
				if t := u.Query().Get("topic"); t != p.topic {
					return nil, fmt.Errorf("bench: the stream URLs have different topics (%q, %q): set the topic to publish to", p.topic, t)
				}
			}
		}
		if p.topic == "" {
			return nil, errors.New("bench: no topic to publish to: give the stream URL a topic parameter, set a topic, or disable publishing")
		}
		p.format = cfg.PublishFormat
		switch {
		case p.format == "" && cfg.Batch > 1, p.format == "json":
			p.format = "json"
		case p.format == "", p.format == "form":
			p.format = "form"
			if cfg.Batch > 1 {
				return nil, errors.New("bench: a form publish carries one event: use the json format for batches")
			}
		default:
			return nil, fmt.Errorf("bench: publish format %q: want form or json", p.format)
		}
	}
	return p, nil
}

// maxTargets bounds the stream URLs of a run.
const maxTargets = 1 << 16

// streamTarget checks one stream URL and returns its address and the
// request its streams send.
func streamTarget(ctx context.Context, raw string, header http.Header) (*url.URL, engineTarget, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, engineTarget{}, fmt.Errorf("bench: stream URL: %w", err)
	}
	switch {
	case u.Scheme == "https":
		return nil, engineTarget{}, errors.New("bench: https streams are not supported (the client reads plain sockets); benchmark the server over http")
	case u.Scheme != "http" || u.Host == "":
		return nil, engineTarget{}, fmt.Errorf("bench: stream URL %q must be http://host[:port]/path", raw)
	}
	host := u.Hostname()
	port := u.Port()
	if port == "" {
		port = "80"
	}
	portNum, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return nil, engineTarget{}, fmt.Errorf("bench: bad port %q", port)
	}
	addr, err := resolve(ctx, host)
	if err != nil {
		return nil, engineTarget{}, fmt.Errorf("bench: resolve %s: %w", host, err)
	}

	var req strings.Builder
	fmt.Fprintf(&req, "GET %s HTTP/1.1\r\nHost: %s\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\nUser-Agent: herald-bench\r\n", u.RequestURI(), u.Host)
	for name, values := range header {
		for _, v := range values {
			if strings.ContainsAny(name+v, "\r\n") {
				return nil, engineTarget{}, fmt.Errorf("bench: header %q contains a line break", name)
			}
			fmt.Fprintf(&req, "%s: %s\r\n", name, v)
		}
	}
	req.WriteString("\r\n")
	return u, engineTarget{Addr: netip.AddrPortFrom(addr, uint16(portNum)), Request: []byte(req.String())}, nil
}

// publishURLs returns the URLs of Config.PublishURL s, or by default each
// distinct origin of the stream URLs with path /publish.
func publishURLs(s string, streams []*url.URL) ([]string, error) {
	if strings.TrimSpace(s) == "" {
		var urls []string
		for _, u := range streams {
			pu := (&url.URL{Scheme: u.Scheme, Host: u.Host, Path: "/publish"}).String()
			if !slices.Contains(urls, pu) {
				urls = append(urls, pu)
			}
		}
		return urls, nil
	}
	urls := SplitURLs(s)
	for _, raw := range urls {
		u, err := url.Parse(raw)
		if err != nil {
			return nil, fmt.Errorf("bench: publish URL: %w", err)
		}
		if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("bench: publish URL %q must be http(s)://host[:port]/path", raw)
		}
	}
	return urls, nil
}

func setDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}

// resolve returns the address of host, preferring IPv4.
func resolve(ctx context.Context, host string) (netip.Addr, error) {
	if a, err := netip.ParseAddr(host); err == nil {
		return a.Unmap(), nil
	}
	addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return netip.Addr{}, err
	}
	for _, a := range addrs {
		if a.Unmap().Is4() {
			return a.Unmap(), nil
		}
	}
	if len(addrs) == 0 {
		return netip.Addr{}, errors.New("no addresses")
	}
	return addrs[0], nil
}

// maxSources bounds the addresses taken from a prefix.
const maxSources = 4096

// parseSource turns Config.Source into addresses to bind, and a
// description for the results. Every target must be of the sources' IP
// version.
func parseSource(s string, targets []netip.Addr) ([]netip.Addr, string, error) {
	switch {
	case s == "none":
		return nil, "kernel's choice", nil
	case s == "":
		if slices.ContainsFunc(targets, func(a netip.Addr) bool { return !a.Is4() || !a.IsLoopback() }) {
			return nil, "kernel's choice", nil
		}
		// A fresh block per run, away from 127.0.x.x where other
		// programs (and earlier runs' TIME_WAIT sockets) live.
		b := [4]byte{127, byte(1 + rand.IntN(254)), byte(rand.IntN(256)), 0}
		s = netip.PrefixFrom(netip.AddrFrom4(b), 24).String()
	}
	if pfx, err := netip.ParsePrefix(s); err == nil {
		pfx = pfx.Masked()
		var addrs []netip.Addr
		for a := pfx.Addr(); pfx.Contains(a) && len(addrs) < maxSources; a = a.Next() {
			if a.Is4() && pfx.Bits() < 31 && (a.As4()[3] == 0 || a.As4()[3] == 255) {
				continue // skip x.x.x.0 and x.x.x.255, which some stacks refuse
			}
			addrs = append(addrs, a)
		}
		if len(addrs) == 0 {
			return nil, "", fmt.Errorf("bench: source %q has no usable address", s)
		}
		if err := sameFamily(addrs[0], targets); err != nil {
			return nil, "", err
		}
		return addrs, fmt.Sprintf("%s (%d addresses)", pfx, len(addrs)), nil
	}
	var addrs []netip.Addr
	for _, f := range strings.Split(s, ",") {
		a, err := netip.ParseAddr(strings.TrimSpace(f))
		if err != nil {
			return nil, "", fmt.Errorf("bench: source %q: want none, a prefix like 127.1.2.0/24 or addresses separated by commas", s)
		}
		if err := sameFamily(a.Unmap(), targets); err != nil {
			return nil, "", err
		}
		addrs = append(addrs, a.Unmap())
	}
	return addrs, s, nil
}

func sameFamily(a netip.Addr, targets []netip.Addr) error {
	for _, target := range targets {
		if a.Is4() != target.Is4() {
			return fmt.Errorf("bench: source address %s and target %s are of different IP versions", a, target)
		}
	}
	return nil
}
