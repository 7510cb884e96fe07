package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/herald-sse/herald/internal/bench"
)

func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 1 && args[0] == "--worker" {
		// A worker process started by another herald bench: not a flag,
		// so that no HERALD_* variable can turn it on.
		return bench.ServeWorker(ctx, os.Stdin, stdout)
	}
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	url := fs.String("url", "http://127.0.0.1:8080/events?topic=bench", "event stream `URLs` to open (http); several, separated by commas, measure a cluster: stream i opens URL i mod n (a comma starts the next URL only before a scheme such as http://)")
	streams := fs.Int("streams", 1000, "number of streams to open")
	perProcess := fs.Int("streams-per-process", 0, fmt.Sprintf("most streams in one process; more run in worker processes. A stream is a file descriptor: 0 means the limit (ulimit -n) less %d, here %d", bench.FDHeadroom, bench.StreamsPerProcessLimit()))
	source := fs.String("source", "", "local addresses to connect from: a prefix like 127.1.2.0/24, addresses separated by commas, or none; empty means a random 127.x.y.0/24 per run for loopback targets")
	concurrency := fs.Int("connect-concurrency", bench.DefaultConnectConcurrency, "most streams between connect and response headers at once")
	connectTimeout := fs.Duration("connect-timeout", bench.DefaultConnectTimeout, "longest wait for one stream's response headers")
	var headers, pubHeaders headerFlag
	fs.Var(&headers, "header", "`Name: value` header for stream requests (repeatable)")
	idle := fs.Duration("idle", 0, "hold the streams idle this long after they connected, before measuring the server and publishing")
	duration := fs.Duration("duration", 10*time.Second, "publish this long (or, with --publish-url none, count what the server sends); 0 with --events 0 only connects and measures")
	events := fs.Int("events", 0, "stop after publishing this many events (then --duration only applies if set)")
	rate := fs.Float64("rate", 0, "events per second; 0 publishes as fast as delivery allows, within --window")
	window := fs.Int("window", bench.DefaultWindow, "with --rate 0, most events published but not yet received by every stream")
	batch := fs.Int("batch", 1, "most events per publish request (above 1: a JSON array)")
	size := fs.Int("size", bench.DefaultSize, "`bytes` of data per event (the default makes a Herald event about 100 bytes)")
	publishURL := fs.String("publish-url", "", "`URLs` to POST events to, separated by commas, taking the requests in turn so that events enter a cluster through every node; empty means each distinct origin of the stream URLs + /publish, none disables publishing")
	publishFormat := fs.String("publish-format", "", "form (topic=…&data=…, Herald and Mercure) or json (Herald's array); empty means form, or json for batches")
	fs.Var(&pubHeaders, "publish-header", "`Name: value` header for publish requests (repeatable)")
	topic := fs.String("topic", "", "topic to publish to; empty means the stream URLs' topic parameter (the same in each)")
	drain := fs.Duration("drain", bench.DefaultDrain, "longest wait for events in flight after publishing")
	var pids pidFlag
	fs.Var(&pids, "server-pid", "server process `PIDs` to measure, comma-separated or repeated (their RSS is summed); default: the processes listening on the target ports, all the nodes of a cluster on this machine")
	maxFailed := fs.Float64("max-failed", bench.DefaultMaxFailed, "`fraction` of streams that may fail to connect before the run fails (exit 1)")
	jsonOut := fs.Bool("json", false, "write the results as one JSON object to stdout")
	quiet := fs.Bool("quiet", false, "no progress lines on stderr")
	fs.Usage = flagUsage(fs, benchSynopsis)
	if err := parseFlags(fs, args, stdout, stderr); err != nil {
		return err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })

	switch {
	case *streams <= 0:
		return usageError(stderr, "--streams must be positive")
	case *perProcess < 0:
		return usageError(stderr, "--streams-per-process must not be negative")
	case *concurrency <= 0 || *window <= 0 || *batch <= 0:
		return usageError(stderr, "--connect-concurrency, --window and --batch must be positive")
	case *size < 0 || *events < 0 || *rate < 0:
		return usageError(stderr, "--size, --events and --rate must not be negative")
	case *idle < 0 || *duration < 0 || *drain < 0 || *connectTimeout <= 0:
		return usageError(stderr, "durations must not be negative (and --connect-timeout must be positive)")
	case *maxFailed < 0 || *maxFailed > 1:
		return usageError(stderr, "--max-failed must be a fraction from 0 to 1")
	}
	cfg := bench.Config{
		URL: *url, Streams: *streams, StreamsPerProcess: *perProcess, Source: *source,
		ConnectConcurrency: *concurrency, ConnectTimeout: *connectTimeout, Header: headers.h,
		Idle: *idle, Duration: *duration, Events: *events, Rate: *rate, Window: *window,
		Batch: *batch, Size: *size, PublishURL: *publishURL, PublishFormat: *publishFormat,
		PublishHeader: pubHeaders.h, Topic: *topic, Drain: *drain, ServerPIDs: pids,
		MaxFailed: *maxFailed,
	}
	if *events > 0 && !set["duration"] {
		cfg.Duration = 0 // --events alone: publish them all
	}
	if *maxFailed == 0 {
		cfg.MaxFailed = -1 // the flag's 0 means none may fail
	}
	if *size == 0 {
		cfg.Size = 1 // bare payloads: the flag's 0 means no padding
	}
	if !*quiet {
		cfg.Progress = stderr
	}

	res, err := bench.Run(ctx, cfg)
	if res.Target == "" {
		// Nothing ran: a configuration or reachability problem.
		return err
	}
	if werr := writeBenchResult(stdout, res, *jsonOut); werr != nil {
		return werr
	}
	return err
}

// benchSynopsis heads herald bench --help.
const benchSynopsis = "Opens many streams to any Server-Sent Events endpoint (Herald or not), publishes\n" +
	"timestamped events and reports connect time, deliveries/s, latency, drops and,\n" +
	"for a server on this machine, its memory per stream. With several stream URLs in\n" +
	"--url (the nodes of a cluster) streams and publishes spread over all the nodes."

// writeBenchResult writes a run's results to stdout: as text, or as one
// JSON object with --json.
func writeBenchResult(stdout io.Writer, res bench.Result, jsonOut bool) error {
	if jsonOut {
		return json.NewEncoder(stdout).Encode(res)
	}
	res.WriteText(stdout)
	return nil
}

// headerFlag collects repeated "Name: value" flags.
type headerFlag struct{ h http.Header }

func (f *headerFlag) String() string { return "" }

func (f *headerFlag) Set(v string) error {
	name, value, ok := strings.Cut(v, ":")
	name = strings.TrimSpace(name)
	if !ok || name == "" || strings.ContainsAny(v, "\r\n") {
		return fmt.Errorf("want Name: value")
	}
	if f.h == nil {
		f.h = http.Header{}
	}
	f.h.Add(name, strings.TrimSpace(value))
	return nil
}

// pidFlag collects process ids, comma-separated or repeated.
type pidFlag []int

func (f *pidFlag) String() string { return "" }

func (f *pidFlag) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		pid, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || pid <= 0 {
			return fmt.Errorf("want process ids separated by commas")
		}
		*f = append(*f, pid)
	}
	return nil
}
