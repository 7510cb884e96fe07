package redis_test

import (
	"bytes"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herald-sse/herald"
	"github.com/herald-sse/herald/internal/servicetest"
	"github.com/herald-sse/herald/redis"
)

// TestAppendNotRetried breaks the connection after an append's script
// reached Redis and before its reply came back, as a network failure
// would: the append fails, and the client library must not have sent
// it again, which would have appended the record twice.
func TestAppendNotRetried(t *testing.T) {
	url := servicetest.RedisURL(t)
	prefix := newPrefix(t, url)
	target := strings.TrimPrefix(url, "redis://")
	if i := strings.IndexAny(target, "/?"); i >= 0 {
		target = target[:i]
	}
	var broke atomic.Bool
	proxy := startProxy(t, target, func(fromClient []byte) bool {
		return bytes.Contains(bytes.ToLower(fromClient), []byte("eval")) && broke.CompareAndSwap(false, true)
	})
	b := open(t, redis.Options{URL: "redis://" + proxy, Prefix: prefix})
	_, err := b.Append(ctxT(t), []herald.Record{rec("once")})
	if !broke.Load() {
		t.Fatal("the proxy saw no script")
	}
	if !errors.Is(err, herald.ErrBrokerUnavailable) {
		t.Errorf("Append on a broken connection = %v, want ErrBrokerUnavailable", err)
	}
	n, err := rawClient(t, url).XLen(ctxT(t), "{"+prefix+"}:log").Result()
	if err != nil || n != 1 {
		t.Errorf("the log holds %d entries (%v), want the one the script appended before the connection broke", n, err)
	}
}

// startProxy forwards connections to target until breakAfter, shown what
// a client sent, says to break: that is still forwarded, but no reply is
// and the connection is closed soon after.
func startProxy(t *testing.T, target string, breakAfter func([]byte) bool) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { l.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			var mute atomic.Bool
			wg.Add(2)
			go func() { // server to client, until muted
				defer wg.Done()
				buf := make([]byte, 32<<10)
				for {
					n, err := s.Read(buf)
					if n > 0 && !mute.Load() {
						c.Write(buf[:n])
					}
					if err != nil {
						c.Close()
						return
					}
				}
			}()
			go func() { // client to server
				defer wg.Done()
				defer s.Close()
				buf := make([]byte, 32<<10)
				for {
					n, err := c.Read(buf)
					if n > 0 {
						if breakAfter(buf[:n]) {
							mute.Store(true)
							s.Write(buf[:n])
							time.Sleep(200 * time.Millisecond) // let Redis run it
							c.Close()
							return
						}
						s.Write(buf[:n])
					}
					if err != nil {
						if !errors.Is(err, io.EOF) {
							c.Close()
						}
						return
					}
				}
			}()
		}
	}()
	return l.Addr().String()
}
