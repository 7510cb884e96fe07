// Package bench is the load generator behind `herald bench`: it opens many
// Server-Sent Events streams to any endpoint (Herald or not), publishes
// numbered, timestamped events and measures what arrives.
//
//	res, err := bench.Run(ctx, bench.Config{
//		URL:      "http://127.0.0.1:8080/events?topic=bench",
//		Streams:  10000,
//		Rate:     200, // events/s; 0 publishes as fast as delivery allows
//		Duration: 10 * time.Second,
//	})
//	res.WriteText(os.Stdout)
//
// To measure a cluster, URL lists the nodes' stream URLs separated by
// commas: stream i opens URL i mod n (counted over the whole run, worker
// processes included), and publish requests go to each node's /publish
// in turn (or to the PublishURL list), so events enter through every node
// and reach every stream through the cluster's broker. Latency stays
// exact: the send time in an event and the receive time are both read
// from this machine's clock. Gaps and duplicates are counted by sequence
// number, which assumes that the cluster delivers events in the order it
// accepted them, whichever node took them: a Herald cluster does (every
// node delivers in the order of the shared log, and the publisher sends a
// request only after the previous one was accepted); a cluster without
// such an order may show reordered events as gaps and duplicates.
//
// A run connects the streams (reporting connect time), optionally holds
// them idle, samples the server's memory and goroutines, publishes for a
// duration or a number of events (or, with publishing off, counts what the
// server sends on its own), waits for events in flight, and reports
// deliveries per second, latency percentiles (receive time minus the send
// time carried in each event), gaps, duplicates and events never received.
//
// # Keeping the client cheap
//
// The client must not measure itself, so a stream costs no goroutine: its
// socket is non-blocking and watched by one of a few poller goroutines
// (GOMAXPROCS of them, see internal/netpoll), each owning a share of the
// streams and one 64 KiB read buffer. A per-stream incremental decoder
// handles the HTTP response (chunked, Content-Length or close-delimited)
// and event-stream lines by the WHATWG rules, with no allocation per event;
// a stream keeps a line buffer only while a line spans reads.
//
// Sockets bind to source addresses spread over a 127.x.y.0/24 block (a new
// random one per run, since TIME_WAIT sockets of a previous run keep ports
// busy), and past the file descriptor limit the run is split over worker
// processes: the same program re-executed (see WorkerEnv and ServeWorker),
// each reporting counters and exact, mergeable latency histograms to the
// parent over its standard output, while the parent publishes.
//
// Server memory per stream is measured from /proc for the processes
// listening on the target port (several with SO_REUSEPORT; for a cluster
// on this machine, those of every target port), and goroutines from the
// target's /metrics when it serves Prometheus metrics (for a cluster,
// every target's); the figures add up all processes and targets.
package bench
