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
// listening on the target port (several with SO_REUSEPORT), and
// goroutines from the target's /metrics when it serves Prometheus metrics.
package bench
