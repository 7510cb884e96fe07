package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

var publishLoad = flag.Int("publish-load", 300, "concurrent 1 MiB publishes of TestPublishMemoryBounded (docs/benchmarks.md: 1000)")

// publishRSSBound is the peak RSS a herald serve with default flags may
// reach under any number of concurrent 1 MiB publishes (see README,
// --max-publish-memory): publishes reserve their bodies' memory before
// reading them, and past the bound wait, then get 503.
const publishRSSBound = 300 << 20

// Concurrent publishes of the largest body allowed: the server's peak RSS
// stays under publishRSSBound, and each publish ends with 200 or 503 (with
// Retry-After) within 60 s.
func TestPublishMemoryBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("a load test")
	}
	n := startNodeProc(t, "load")
	payload := strings.Repeat("x", 1<<20-64)
	body := []byte(`{"topic":"load","data":"` + payload + `"}`)
	if len(body) > 1<<20 {
		t.Fatalf("body of %d bytes is over --max-body", len(body))
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: *publishLoad}}
	defer client.CloseIdleConnections()

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var mu sync.Mutex
	statuses := map[int]int{}
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range *publishLoad {
		wg.Go(func() {
			<-start
			status := -1
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, n.url+"/publish", bytes.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			resp, err := client.Do(req)
			if err == nil {
				status = resp.StatusCode
				if status == http.StatusServiceUnavailable && resp.Header.Get("Retry-After") == "" {
					status = -2
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			} else {
				t.Log(err)
			}
			mu.Lock()
			statuses[status]++
			mu.Unlock()
		})
	}
	began := time.Now()
	close(start)
	wg.Wait()
	took := time.Since(began)

	hwm := vmHWM(t, n.cmd.Process.Pid)
	t.Logf("%d concurrent publishes of %d bytes: %v in %v; server peak RSS %d MiB", *publishLoad, len(body), statuses, took.Round(time.Millisecond), hwm>>20)
	if statuses[http.StatusOK]+statuses[http.StatusServiceUnavailable] != *publishLoad {
		t.Errorf("statuses %v: every publish must end with 200 or 503 with Retry-After within 60 s (-1: no answer, -2: 503 without Retry-After)", statuses)
	}
	if statuses[http.StatusOK] == 0 {
		t.Errorf("no publish succeeded: %v", statuses)
	}
	if hwm > publishRSSBound {
		t.Errorf("server peak RSS %d MiB, over the %d MiB bound", hwm>>20, publishRSSBound>>20)
	}
}

func TestServeMaxPublishMemoryNegative(t *testing.T) {
	var errOut bytes.Buffer
	if code := run(context.Background(), []string{"serve", "--max-publish-memory", "-1"}, io.Discard, &errOut); code != 2 || !strings.Contains(errOut.String(), "--max-publish-memory") {
		t.Errorf("exit %d, stderr %q; want 2 naming the flag", code, errOut.String())
	}
}

// A single node names itself in GET /cluster: --node-name, else host:port.
func TestServeNodeNameWithoutCluster(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want func(node, port string) bool
	}{
		{[]string{"--node-name", "solo"}, func(node, _ string) bool { return node == "solo" }},
		{nil, func(node, port string) bool { return strings.HasSuffix(node, ":"+port) && len(node) > len(port)+1 }},
	} {
		s := startServe(t, append([]string{"--addr", "127.0.0.1:0"}, tc.args...)...)
		status, body := get(t, s.base+"/cluster")
		var c struct {
			Node  string
			Nodes []struct{ Node string }
		}
		if err := json.Unmarshal([]byte(body), &c); err != nil {
			t.Fatal(err)
		}
		port := s.base[strings.LastIndexByte(s.base, ':')+1:]
		if status != http.StatusOK || !tc.want(c.Node, port) || len(c.Nodes) != 1 || c.Nodes[0].Node != c.Node {
			t.Errorf("serve %q: GET /cluster %d %s", tc.args, status, body)
		}
	}
}

// vmHWM returns the peak resident set size of process pid, in bytes.
func vmHWM(t *testing.T, pid int) int64 {
	t.Helper()
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Skipf("peak RSS not measurable here: %v", err)
	}
	for line := range strings.SplitSeq(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				t.Fatalf("VmHWM %q: %v", v, err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmHWM in /proc/PID/status")
	return 0
}
