package redis_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/herald-sse/herald"
	"github.com/herald-sse/herald/internal/brokertest"
	"github.com/herald-sse/herald/internal/servicetest"
	"github.com/herald-sse/herald/redis"
)

// TestCluster runs the conformance suite on a three-node Redis Cluster
// of the test's own: the log's keys must share a slot for its scripts to
// run, and the client must follow them there.
func TestCluster(t *testing.T) {
	var addrs []string
	for range 3 {
		addrs = append(addrs, startServer(t, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"))
	}
	ctx := ctxT(t)
	for i, a := range addrs {
		c := goredis.NewClient(&goredis.Options{Addr: a})
		defer c.Close()
		lo, hi := i*16384/len(addrs), (i+1)*16384/len(addrs)-1
		if err := c.Do(ctx, "CLUSTER", "ADDSLOTSRANGE", lo, hi).Err(); err != nil {
			t.Fatalf("CLUSTER ADDSLOTSRANGE: %v", err)
		}
		host, port, _ := net.SplitHostPort(addrs[0])
		if err := c.Do(ctx, "CLUSTER", "MEET", host, port).Err(); err != nil {
			t.Fatalf("CLUSTER MEET: %v", err)
		}
	}
	for _, a := range addrs {
		c := goredis.NewClient(&goredis.Options{Addr: a})
		defer c.Close()
		waitFor(t, "the cluster to form", func() bool {
			info, err := c.ClusterInfo(ctx).Result()
			return err == nil && strings.Contains(info, "cluster_state:ok") && strings.Contains(info, "cluster_known_nodes:3")
		})
	}
	url := "redis://" + addrs[0] + "?addr=" + addrs[1] + "&addr=" + addrs[2]
	brokertest.Run(t, func(t *testing.T, r herald.Retention) (herald.Broker, func() herald.Broker) {
		opts := redis.Options{URL: url, Prefix: fmt.Sprintf("%s-%d", t.Name(), time.Now().UnixNano()), Retention: r}
		return open(t, opts), func() herald.Broker { return open(t, opts) }
	})
}

// TestSentinel runs the conformance suite on a Redis found through a
// Sentinel.
func TestSentinel(t *testing.T) {
	master := startServer(t)
	host, port, _ := net.SplitHostPort(master)
	conf := filepath.Join(t.TempDir(), "sentinel.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf("sentinel monitor herald %s %s 1\n", host, port)), 0o600); err != nil {
		t.Fatal(err)
	}
	sentinel := startServer(t, conf, "--sentinel")
	url := "redis://" + sentinel + "?master_name=herald"
	brokertest.Run(t, func(t *testing.T, r herald.Retention) (herald.Broker, func() herald.Broker) {
		opts := redis.Options{URL: url, Prefix: fmt.Sprintf("%s-%d", t.Name(), time.Now().UnixNano()), Retention: r}
		return open(t, opts), func() herald.Broker { return open(t, opts) }
	})
}

// startServer runs a redis-server of the test's own, with args (a config
// file must come first), and returns its address. Its data, in a
// temporary directory, goes with the test.
func startServer(t *testing.T, args ...string) string {
	t.Helper()
	bin := os.Getenv(servicetest.RedisServerEnv)
	if bin == "" {
		t.Skipf("%s not set: this test runs redis-server", servicetest.RedisServerEnv)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	_, port, _ := net.SplitHostPort(addr)
	dir := t.TempDir()
	args = append(args, "--port", port, "--bind", "127.0.0.1", "--dir", dir, "--save", "", "--appendonly", "no",
		"--daemonize", "no", "--logfile", filepath.Join(dir, "redis.log"))
	cmd := exec.Command(bin, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	c := goredis.NewClient(&goredis.Options{Addr: addr, MaxRetries: -1})
	defer c.Close()
	waitFor(t, "redis-server to start", func() bool { return c.Ping(context.Background()).Err() == nil })
	return addr
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond) // polling servers that cannot notify us
	}
}
