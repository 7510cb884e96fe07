package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/herald-sse/herald/sse"
)

// The cluster tests run herald nodes as processes of their own, so a node
// can be killed as a crash would kill it. The binary is built once per
// test run, without the race detector: the nodes are the load, the test
// process is what is checked.
var heraldBinary = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "herald-cluster-test-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "herald")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return bin, nil
})

func TestMain(m *testing.M) {
	code := m.Run()
	if bin, err := heraldBinary(); err == nil && strings.Contains(bin, "herald-cluster-test-") {
		os.RemoveAll(filepath.Dir(bin))
	}
	os.Exit(code)
}

// nodeProc is a `herald serve` process.
type nodeProc struct {
	name   string
	url    string
	cmd    *exec.Cmd
	stderr *logBuf
	exited chan struct{}
	dead   atomic.Bool
}

// startNodeProc runs `herald serve` with args, on a free port, and returns
// once it listens. The test's cleanup kills it.
func startNodeProc(t *testing.T, name string, args ...string) *nodeProc {
	t.Helper()
	bin, err := heraldBinary()
	if err != nil {
		t.Fatal(err)
	}
	args = append([]string{"serve", "--addr", "127.0.0.1:0", "--node-name", name, "--open-publish",
		"--announce-connections=false", "--log-level", "warn"}, args...)
	n := &nodeProc{name: name, stderr: newLogBuf(), exited: make(chan struct{})}
	n.cmd = exec.Command(bin, args...)
	n.cmd.Stderr = n.stderr
	n.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdout, err := n.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := n.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { n.cmd.Wait(); close(n.exited) }()
	t.Cleanup(n.kill)
	line, err := bufio.NewReader(stdout).ReadString('\n')
	base, ok := strings.CutPrefix(strings.TrimSpace(line), "herald serving on ")
	if err != nil || !ok {
		<-n.exited
		t.Fatalf("node %s did not start: %q, %v; stderr:\n%s", name, line, err, n.stderr.String())
	}
	go io.Copy(io.Discard, stdout)
	n.url = base
	return n
}

// kill ends the process at once, as a crash would.
func (n *nodeProc) kill() {
	n.dead.Store(true)
	n.cmd.Process.Kill()
	<-n.exited
}

// waitReady waits until every node's /readyz answers 200.
func waitReady(t *testing.T, nodes []*nodeProc) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for _, n := range nodes {
		for {
			resp, err := http.Get(n.url + "/readyz")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					break
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("node %s not ready after 30 s: %v; stderr:\n%s", n.name, err, n.stderr.String())
			}
			time.Sleep(20 * time.Millisecond) // readiness is only observable by asking
		}
	}
}

// clusterRun is one run of the cluster scenario: subscribers spread over
// the nodes, events published round-robin through them, and what every
// subscriber received checked against the log.
type clusterRun struct {
	t      *testing.T
	nodes  []*nodeProc
	events int
	subs   []*clusterSub
	client *http.Client

	// What the scenario does mid-run: called once, by the publisher
	// that publishes event events/3, with publishing going on.
	midRun func()
	// moveAt, if set, returns after how many events subscriber i
	// reconnects to the next node with its last event ID.
	moveAt func(i int) int
	// idFor returns the publisher's ID of event k, or "" for one the
	// hub assigns. A publish retried after a failure must carry one, or
	// the retry could publish it twice.
	idFor func(k int) string

	// failOnly503, if set, requires every failed publish to be a 503
	// with a JSON error: the nodes are up, only the broker is not.
	failOnly503 bool

	acked     sync.Map // k → true: publishes acknowledged
	failures  atomic.Int64
	failedCh  chan struct{} // one signal per failed publish attempt, never blocking
	published atomic.Int64
}

const (
	clusterPublishers = 3
	clusterClasses    = 10 // event k goes to /all and /c/<k%10>
)

// clusterSub is one subscriber: its topic, where it is, what it got.
type clusterSub struct {
	i          int
	topic      string
	node       int
	lastID     string
	got        []string
	reconnects int
	err        error
}

func (s *clusterSub) matches(k int) bool {
	return s.topic == "/all" || s.topic == fmt.Sprintf("/c/%d", k%clusterClasses)
}

func newClusterRun(t *testing.T, nodes []*nodeProc, subscribers, events int) *clusterRun {
	r := &clusterRun{t: t, nodes: nodes, events: events, failedCh: make(chan struct{}, 1),
		client: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}},
		idFor:  func(k int) string { return "e" + strconv.Itoa(k) }}
	for i := range subscribers {
		topic := "/all"
		if i%clusterClasses != 0 {
			topic = fmt.Sprintf("/c/%d", i%clusterClasses)
		}
		r.subs = append(r.subs, &clusterSub{i: i, topic: topic, node: i % len(nodes)})
	}
	return r
}

// nextLive returns the first live node after from.
func (r *clusterRun) nextLive(from int) int {
	for d := 1; d <= len(r.nodes); d++ {
		if i := (from + d) % len(r.nodes); !r.nodes[i].dead.Load() {
			return i
		}
	}
	return from
}

// run runs the scenario and checks what everyone received.
func (r *clusterRun) run() {
	t := r.t
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	var subsDone sync.WaitGroup
	connected := make(chan struct{}, len(r.subs))
	for _, s := range r.subs {
		subsDone.Add(1)
		go func() {
			defer subsDone.Done()
			s.err = r.subscribe(ctx, s, connected)
		}()
	}
	for range r.subs {
		select {
		case <-connected:
		case <-ctx.Done():
			t.Fatal("subscribers did not all connect")
		}
	}

	var pubs sync.WaitGroup
	for p := range clusterPublishers {
		pubs.Add(1)
		go func() {
			defer pubs.Done()
			for k := p; k < r.events; k += clusterPublishers {
				if k == r.events/3 && r.midRun != nil {
					r.midRun()
				}
				r.publish(ctx, k, r.idFor(k), []string{"/all", fmt.Sprintf("/c/%d", k%clusterClasses)}, strconv.Itoa(k))
			}
		}()
	}
	pubs.Wait()
	all := []string{"/all"}
	for c := range clusterClasses {
		all = append(all, fmt.Sprintf("/c/%d", c))
	}
	r.publish(ctx, 0, "end", all, "end")
	subsDone.Wait()
	if ctx.Err() != nil {
		t.Fatalf("scenario did not finish in time")
	}

	// The log, as a subscriber of everything replaying it from a node.
	ref := &clusterSub{topic: "/all", lastID: "earliest", node: r.nextLive(-1)}
	if err := r.subscribe(ctx, ref, nil); err != nil {
		t.Fatalf("replaying the log: %v", err)
	}
	seen := map[string]bool{}
	for _, d := range ref.got {
		if seen[d] {
			t.Fatalf("event %s is in the log twice", d)
		}
		seen[d] = true
	}
	r.acked.Range(func(k, _ any) bool {
		if !seen[strconv.Itoa(k.(int))] {
			t.Errorf("acknowledged event %d is not in the log", k)
		}
		return true
	})
	for _, s := range r.subs {
		if s.err != nil {
			t.Errorf("subscriber %d: %v", s.i, s.err)
			continue
		}
		var want []string
		for _, d := range ref.got {
			k, err := strconv.Atoi(d)
			if err != nil || s.matches(k) {
				want = append(want, d)
			}
		}
		if !slices.Equal(s.got, want) {
			t.Errorf("subscriber %d (%s, %d reconnects) received %d events, want the log's %d matching ones in its order; first difference at %d",
				s.i, s.topic, s.reconnects, len(s.got), len(want), firstDiff(s.got, want))
		}
	}
	if t.Failed() {
		for _, n := range r.nodes {
			t.Logf("node %s stderr:\n%s", n.name, n.stderr.String())
		}
	}
}

func firstDiff(a, b []string) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// publish publishes one event, through the node its number picks, and
// retries through the next nodes until the cluster acknowledges it.
func (r *clusterRun) publish(ctx context.Context, k int, id string, topics []string, data string) {
	body, _ := json.Marshal(map[string]any{"id": id, "topics": topics, "data": data})
	for attempt := 0; ctx.Err() == nil; attempt++ {
		n := r.nodes[(k+attempt)%len(r.nodes)]
		if n.dead.Load() {
			continue
		}
		resp, err := r.client.Post(n.url+"/publish", "application/json", bytes.NewReader(body))
		status := 0
		var answer struct{ Error string }
		if err == nil {
			json.NewDecoder(resp.Body).Decode(&answer)
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			status = resp.StatusCode
		}
		if r.failOnly503 && status != http.StatusOK && status != http.StatusConflict &&
			(status != http.StatusServiceUnavailable || answer.Error == "") {
			r.t.Errorf("publishing event %d through %s: %d %q, %v; want 503 with an error", k, n.name, status, answer.Error, err)
		}
		switch {
		case status == http.StatusOK, status == http.StatusConflict && attempt > 0 && id != "":
			// A conflict on a retry: the failed attempt did publish.
			if data != "end" {
				r.acked.Store(k, true)
				r.published.Add(1)
			}
			return
		case status == http.StatusConflict:
			r.t.Errorf("publishing event %d: 409 on the first attempt", k)
			return
		}
		if id == "" {
			r.t.Errorf("publishing event %d without an ID failed (%d, %v): a retry could publish it twice", k, status, err)
			return
		}
		r.failures.Add(1)
		select {
		case r.failedCh <- struct{}{}:
		default:
		}
		time.Sleep(20 * time.Millisecond) // back off before retrying, as a publisher would
	}
}

// subscribe streams s's topic until the "end" event, reconnecting with
// its last event ID when the stream ends or s moves. connected, if not
// nil, is signalled once, when the first stream is open.
func (r *clusterRun) subscribe(ctx context.Context, s *clusterSub, connected chan<- struct{}) error {
	moveAt := -1
	if r.moveAt != nil && connected != nil {
		moveAt = r.moveAt(s.i)
	}
	for ctx.Err() == nil {
		n := r.nodes[s.node]
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, n.url+"/events?topic="+s.topic, nil)
		if s.lastID != "" {
			req.Header.Set("Last-Event-ID", s.lastID)
		}
		resp, err := r.client.Do(req)
		if err != nil || resp.StatusCode != http.StatusOK {
			if err == nil {
				resp.Body.Close()
			}
			s.node = r.nextLive(s.node)
			time.Sleep(20 * time.Millisecond) // back off, as EventSource would
			continue
		}
		if connected != nil {
			connected <- struct{}{}
			connected = nil
		}
		dec := sse.NewDecoder(resp.Body)
		moved := false
		for {
			m, err := dec.Next()
			if err != nil {
				break
			}
			if m.Type == "herald.reset" {
				resp.Body.Close()
				return fmt.Errorf("reset after %q on node %s: %s", s.lastID, n.name, m.Data)
			}
			s.lastID = m.LastEventID
			s.got = append(s.got, m.Data)
			if m.Data == "end" {
				resp.Body.Close()
				return nil
			}
			if len(s.got) == moveAt {
				moved = true
				break
			}
		}
		resp.Body.Close()
		s.reconnects++
		if moved || n.dead.Load() {
			s.node = r.nextLive(s.node)
		}
	}
	return ctx.Err()
}
