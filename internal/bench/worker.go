package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// WorkerEnv is set to "1" in the environment of worker processes, so a
// program (or a test binary) can recognise that it was started as one
// and call ServeWorker.
const WorkerEnv = "HERALD_BENCH_WORKER"

// Worker reporting intervals: counters at least every workerTick, the
// latency histogram at most every workerHistEvery, a rise of the minimum
// sequence at most every workerMinEvery.
const (
	workerTick      = 100 * time.Millisecond
	workerHistEvery = time.Second
	workerMinEvery  = time.Millisecond
	// workerStopTimeout bounds the wait for workers' final results.
	workerStopTimeout = time.Minute
)

// workerMsg is one line from a worker to its parent.
type workerMsg struct {
	Error string `json:"error,omitempty"`
	Final bool   `json:"final,omitempty"`
	Stats stats  `json:"stats"`
}

// fleet is the set of streams of a run, held by this process or by
// worker processes.
type fleet interface {
	progress
	// snapshot returns the counters so far, with histograms if asked.
	snapshot(hists bool) stats
	// err reports a failure of the fleet itself (a worker that died).
	err() error
	// stop closes every stream and returns the final counters.
	stop() (stats, error)
}

// localFleet is the streams of this process.
type localFleet struct{ e *engine }

func (l localFleet) snapshot(h bool) stats    { return l.e.snapshot(h) }
func (l localFleet) minSeq() uint64           { return l.e.minSeq() }
func (l localFleet) changed() <-chan struct{} { return l.e.changed }
func (l localFleet) err() error               { return nil }
func (l localFleet) stop() (stats, error)     { return l.e.stop(), nil }
func startLocal(cfg engineConfig) (fleet, error) {
	e, err := startEngine(cfg)
	if err != nil {
		return nil, err
	}
	return localFleet{e}, nil
}

// ServeWorker runs a worker process's share of a run: it reads its
// configuration as the first line of in, opens its streams, reports
// counters on out as JSON lines, and when in says "stop" or ends, closes
// the streams and reports its final counters and histograms.
func ServeWorker(ctx context.Context, in io.Reader, out io.Writer) error {
	br := bufio.NewReader(in)
	line, err := br.ReadBytes('\n')
	if err != nil && len(line) == 0 {
		return fmt.Errorf("bench worker: reading configuration: %w", err)
	}
	var cfg engineConfig
	if err := json.Unmarshal(line, &cfg); err != nil {
		return fmt.Errorf("bench worker: bad configuration: %w", err)
	}
	w := bufio.NewWriterSize(out, 64<<10)
	send := func(m workerMsg) error {
		b, err := json.Marshal(m)
		if err != nil {
			return err
		}
		w.Write(b)
		w.WriteByte('\n')
		return w.Flush()
	}
	e, err := startEngine(cfg)
	if err != nil {
		_ = send(workerMsg{Error: err.Error(), Stats: newStats()})
		return err
	}
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		for {
			l, err := br.ReadString('\n')
			if strings.TrimSpace(l) == "stop" || err != nil {
				return
			}
		}
	}()
	tick := time.NewTicker(workerTick)
	defer tick.Stop()
	var lastHist, lastSent time.Time
	connected := false
	report := func() error {
		now := time.Now()
		st := e.snapshot(true)
		// Histograms go at most once a second, and with the report that
		// first says every stream connected, so the parent's connect
		// figures are complete.
		if now.Sub(lastHist) >= workerHistEvery || st.ConnectDone && !connected {
			lastHist = now
		} else {
			st.Latency, st.ConnectTime = nil, nil
		}
		connected = st.ConnectDone
		lastSent = now
		return send(workerMsg{Stats: st})
	}
	for {
		select {
		case <-stopped:
		case <-ctx.Done():
		case <-tick.C:
			if err := report(); err != nil {
				e.stop()
				return err
			}
			continue
		case <-e.changed:
			if d := workerMinEvery - time.Since(lastSent); d > 0 {
				time.Sleep(d)
			}
			if err := report(); err != nil {
				e.stop()
				return err
			}
			continue
		}
		return send(workerMsg{Final: true, Stats: e.stop()})
	}
}

// workerProc is one worker process, seen from the parent.
type workerProc struct {
	id     int
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	min    atomic.Uint64
	final  chan stats
	exited chan struct{} // the reader saw the end of the worker's output

	mu      sync.Mutex
	last    stats
	lat     *Histogram
	connect *Histogram
	failure error
}

// workerFleet is the streams of several worker processes.
type workerFleet struct {
	procs  []*workerProc
	notify chan struct{}
}

// startWorkers starts n worker processes sharing cfg's streams and
// sources. Each gets a contiguous share of the run's streams.
func startWorkers(cfg engineConfig, n int, command []string) (*workerFleet, error) {
	if len(command) == 0 {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("bench: cannot find this executable to start workers: %w", err)
		}
		command = []string{exe, "bench", "--worker"}
	}
	f := &workerFleet{notify: make(chan struct{}, 1)}
	first := cfg.First
	for i := range n {
		wc := cfg
		wc.Streams = cfg.Streams / n
		if i < cfg.Streams%n {
			wc.Streams++
		}
		// Every worker has every target, and the run-wide number of its
		// first stream, so that stream i of the run opens target i mod
		// len(Targets) whichever process holds it.
		wc.First = first
		first += wc.Streams
		wc.ConnectConcurrency = max(cfg.ConnectConcurrency/n, 1)
		wc.Sources = nil
		// Disjoint source addresses per worker, so their ports never
		// compete; workers share when there are fewer addresses.
		for j := i; j < len(cfg.Sources); j += n {
			wc.Sources = append(wc.Sources, cfg.Sources[j])
		}
		if len(wc.Sources) == 0 && len(cfg.Sources) > 0 {
			wc.Sources = []netip.Addr{cfg.Sources[i%len(cfg.Sources)]}
		}
		w, err := f.start(i, wc, command)
		if err != nil {
			f.stop()
			return nil, err
		}
		f.procs = append(f.procs, w)
	}
	return f, nil
}

func (f *workerFleet) start(id int, cfg engineConfig, command []string) (*workerProc, error) {
	// Not tied to ctx: when the run is interrupted, workers are asked to
	// stop so that their results are still collected.
	cmd := exec.Command(command[0], command[1:]...)
	cmd.Env = append(os.Environ(), WorkerEnv+"=1")
	cmd.Stderr = os.Stderr
	cmd.WaitDelay = 5 * time.Second
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("bench: starting worker: %w", err)
	}
	w := &workerProc{id: id, cmd: cmd, stdin: stdin, final: make(chan stats, 1), exited: make(chan struct{})}
	w.last = newStats()
	w.last.ConnectDone = false
	b, _ := json.Marshal(cfg)
	if _, err := stdin.Write(append(b, '\n')); err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return nil, fmt.Errorf("bench: configuring worker %d: %w", id, err)
	}
	go w.read(stdout, f.notify)
	return w, nil
}

// read takes the worker's reports until its output ends.
func (w *workerProc) read(r io.Reader, notify chan struct{}) {
	defer close(w.exited)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 64<<20)
	for sc.Scan() {
		var m workerMsg
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			w.fail(fmt.Errorf("bench: worker %d sent %q: %w", w.id, truncate(sc.Text(), 100), err))
			continue
		}
		if m.Error != "" {
			w.fail(fmt.Errorf("bench: worker %d: %s", w.id, m.Error))
			continue
		}
		w.mu.Lock()
		if m.Stats.Latency != nil {
			w.lat, w.connect = m.Stats.Latency, m.Stats.ConnectTime
		}
		m.Stats.Latency, m.Stats.ConnectTime = nil, nil
		w.last = m.Stats
		w.mu.Unlock()
		if m.Final {
			m.Stats.Latency, m.Stats.ConnectTime = w.lat, w.connect
			w.final <- m.Stats
		}
		if w.min.Swap(m.Stats.MinSeq) != m.Stats.MinSeq {
			select {
			case notify <- struct{}{}:
			default:
			}
		}
	}
	if err := sc.Err(); err != nil {
		w.fail(fmt.Errorf("bench: reading worker %d: %w", w.id, err))
	}
}

func (w *workerProc) fail(err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.failure == nil {
		w.failure = err
	}
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

func (f *workerFleet) snapshot(hists bool) stats {
	total := newStats()
	for _, w := range f.procs {
		w.mu.Lock()
		st := w.last
		if hists {
			st.Latency, st.ConnectTime = w.lat, w.connect
		}
		total.merge(&st)
		w.mu.Unlock()
	}
	return total
}

func (f *workerFleet) minSeq() uint64 {
	m := uint64(math.MaxUint64)
	for _, w := range f.procs {
		m = min(m, w.min.Load())
	}
	return m
}

func (f *workerFleet) changed() <-chan struct{} { return f.notify }

func (f *workerFleet) err() error {
	for _, w := range f.procs {
		w.mu.Lock()
		err := w.failure
		w.mu.Unlock()
		if err != nil {
			return err
		}
		select {
		case <-w.exited:
			select {
			case st := <-w.final:
				w.final <- st // still to be collected by stop
			default:
				return fmt.Errorf("bench: worker %d exited early", w.id)
			}
		default:
		}
	}
	return nil
}

// stop asks every worker to stop and collects their final counters.
func (f *workerFleet) stop() (stats, error) {
	for _, w := range f.procs {
		_, _ = io.WriteString(w.stdin, "stop\n")
		w.stdin.Close()
	}
	total := newStats()
	var errs []error
	deadline := time.Now().Add(workerStopTimeout)
	for _, w := range f.procs {
		select {
		case <-time.After(time.Until(deadline)):
			_ = w.cmd.Process.Kill()
			errs = append(errs, fmt.Errorf("bench: worker %d did not stop within %v", w.id, workerStopTimeout))
			<-w.exited
		case st := <-w.final:
			total.merge(&st)
		case <-w.exited:
			select {
			case st := <-w.final:
				total.merge(&st)
			default:
				w.mu.Lock()
				err := w.failure
				st := w.last
				w.mu.Unlock()
				if err == nil {
					err = fmt.Errorf("bench: worker %d exited without final results", w.id)
				}
				errs = append(errs, err)
				total.merge(&st)
			}
		}
		if err := w.cmd.Wait(); err != nil {
			errs = append(errs, fmt.Errorf("bench: worker %d: %w", w.id, err))
		}
	}
	return total, errors.Join(errs...)
}
