package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"strconv"
	"testing"
	"time"

	"github.com/herald-sse/herald/internal/servicetest"
	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	goredis "github.com/redis/go-redis/v9"
)

// long runs the soak-sized variants of the scenario tests.
var long = flag.Bool("long", false, "run the cluster and chaos scenarios at soak size (slow)")

const clusterNodes = 3

// clusterSize returns the subscribers and events of a cluster scenario.
// The default run has subscribers of every topic on every node and
// thousands of events, enough for each property (both kinds of ID, a
// move from every subscriber, a kill and an outage mid-run); -long runs
// the size the cluster issue asked for.
func clusterSize() (subscribers, events int) {
	if *long {
		return 300, 10_000
	}
	return 90, 2_000
}

// clusterBroker is how the scenarios reach one kind of broker.
type clusterBroker struct {
	// shared returns the flags joining a node to a fresh log on the
	// machine's shared server, or skips.
	shared func(t *testing.T) []string
	// private starts a server of the test's own, which the test may
	// stop, and returns the flags joining a node to it, or skips.
	private func(t *testing.T) ([]string, *servicetest.Server)
}

func randomName(prefix string) string {
	b := make([]byte, 6)
	rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

var redisBroker = clusterBroker{
	shared: func(t *testing.T) []string {
		url := servicetest.RedisURL(t)
		prefix := randomName("herald-test-")
		t.Cleanup(func() { deleteRedisLog(t, url, prefix) })
		return []string{"--redis-url", url, "--redis-prefix", prefix}
	},
	private: func(t *testing.T) ([]string, *servicetest.Server) {
		srv := servicetest.StartRedis(t)
		return []string{"--redis-url", srv.URL}, srv
	},
}

var natsBroker = clusterBroker{
	shared: func(t *testing.T) []string {
		url := servicetest.NATSURL(t)
		stream := randomName("HERALD_TEST_")
		t.Cleanup(func() { deleteNATSLog(t, url, stream) })
		return []string{"--nats-url", url, "--nats-stream", stream}
	},
	private: func(t *testing.T) ([]string, *servicetest.Server) {
		srv := servicetest.StartNATS(t)
		return []string{"--nats-url", srv.URL}, srv
	},
}

func TestClusterRedis(t *testing.T) { testCluster(t, redisBroker) }
func TestClusterNATS(t *testing.T)  { testCluster(t, natsBroker) }

func startCluster(t *testing.T, flags []string) []*nodeProc {
	t.Helper()
	var nodes []*nodeProc
	for i := range clusterNodes {
		nodes = append(nodes, startNodeProc(t, "node"+strconv.Itoa(i), flags...))
	}
	waitReady(t, nodes)
	return nodes
}

func testCluster(t *testing.T, b clusterBroker) {
	subscribers, events := clusterSize()
	t.Run("Steady", func(t *testing.T) {
		nodes := startCluster(t, b.shared(t))
		r := newClusterRun(t, nodes, subscribers, events)
		// Half the events carry the publisher's ID, half one the
		// cluster assigns: both must resume alike.
		r.idFor = func(k int) string {
			if k%2 == 0 {
				return "e" + strconv.Itoa(k)
			}
			return ""
		}
		r.run()
	})
	t.Run("SubscribersMove", func(t *testing.T) {
		nodes := startCluster(t, b.shared(t))
		r := newClusterRun(t, nodes, subscribers, events)
		r.idFor = func(k int) string {
			if k%2 == 0 {
				return "e" + strconv.Itoa(k)
			}
			return ""
		}
		// Each moves once, at its own point of the run, so that moves
		// land after generated IDs and publishers' IDs alike.
		r.moveAt = func(i int) int {
			expected := events / clusterClasses
			if i%clusterClasses == 0 {
				expected = events
			}
			return 1 + (i*7919)%(expected/2)
		}
		r.run()
		for _, s := range r.subs {
			if s.reconnects < 1 {
				t.Errorf("subscriber %d never moved", s.i)
			}
		}
	})
	t.Run("NodeKilled", func(t *testing.T) {
		nodes := startCluster(t, b.shared(t))
		r := newClusterRun(t, nodes, subscribers, events)
		r.midRun = func() { nodes[2].kill() }
		r.run()
		moved, want := 0, 0
		for _, s := range r.subs {
			if s.i%clusterNodes == 2 {
				want++
				if s.node != 2 {
					moved++
				}
			}
		}
		if moved != want {
			t.Errorf("%d subscribers of the killed node moved, want %d", moved, want)
		}
	})
	t.Run("BrokerOutage", func(t *testing.T) {
		flags, srv := b.private(t)
		nodes := startCluster(t, flags)
		r := newClusterRun(t, nodes, subscribers, events)
		r.failOnly503 = true
		r.midRun = func() {
			srv.Stop()
			// Down until publishers have been refused a few times, and
			// at least long enough for the nodes to notice.
			for r.failures.Load() < 20 {
				<-r.failedCh
			}
			time.Sleep(500 * time.Millisecond) // an outage lasts a while
			srv.Start()
		}
		r.run()
		if r.failures.Load() < 20 {
			t.Errorf("%d publishes failed during the outage, want them refused", r.failures.Load())
		}
		for _, s := range r.subs {
			if s.reconnects > 0 {
				t.Errorf("subscriber %d's stream ended %d times during the outage; streams must stay open", s.i, s.reconnects)
			}
		}
	})
}

// deleteRedisLog removes the keys of the cluster with prefix from the
// shared Redis.
func deleteRedisLog(t *testing.T, url, prefix string) {
	opts, err := goredis.ParseURL(url)
	if err != nil {
		t.Errorf("cleanup: %v", err)
		return
	}
	c := goredis.NewClient(opts)
	defer c.Close()
	ctx := context.Background()
	iter := c.Scan(ctx, 0, "*"+prefix+"*", 1000).Iterator()
	for iter.Next(ctx) {
		c.Del(ctx, iter.Val())
	}
	if err := iter.Err(); err != nil {
		t.Errorf("cleanup of %s: %v", prefix, err)
	}
}

// deleteNATSLog removes the cluster's stream and buckets from the shared
// NATS server.
func deleteNATSLog(t *testing.T, url, stream string) {
	nc, err := natsgo.Connect(url)
	if err != nil {
		t.Errorf("cleanup: %v", err)
		return
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Errorf("cleanup: %v", err)
		return
	}
	ctx := context.Background()
	if err := js.DeleteStream(ctx, stream); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Errorf("cleanup of stream %s: %v", stream, err)
	}
	for _, b := range []string{stream + "_nodes", stream + "_ids"} {
		if err := js.DeleteKeyValue(ctx, b); err != nil && !errors.Is(err, jetstream.ErrBucketNotFound) {
			t.Errorf("cleanup of bucket %s: %v", b, err)
		}
	}
}
