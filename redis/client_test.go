package redis

import (
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// TestClientKinds checks which client each URL form makes, and that the
// fail-fast defaults apply unless the URL says otherwise. No server is
// needed: clients connect lazily.
func TestClientKinds(t *testing.T) {
	for _, c := range []struct {
		url     string
		kind    string
		addrs   []string
		read    time.Duration
		retries int
	}{
		{url: "redis://127.0.0.1:6379", kind: "single", addrs: []string{"127.0.0.1:6379"}, read: ioTimeout, retries: maxRetries},
		{url: "redis://127.0.0.1:6379/2?read_timeout=7s&max_retries=2", kind: "single", addrs: []string{"127.0.0.1:6379"}, read: 7 * time.Second, retries: 2},
		{url: "redis://a:7000?addr=b:7001&addr=c:7002", kind: "cluster", addrs: []string{"a:7000", "b:7001", "c:7002"}, read: ioTimeout, retries: maxRetries},
		{url: "rediss://config.example:6379?cluster=true", kind: "cluster", addrs: []string{"config.example:6379"}, read: ioTimeout, retries: maxRetries},
		{url: "redis://s1:26379?master_name=mymaster&addr=s2:26379", kind: "sentinel", read: ioTimeout, retries: maxRetries},
		{url: "unix:///run/redis.sock?db=1", kind: "single", addrs: []string{"/run/redis.sock"}, read: ioTimeout, retries: maxRetries},
	} {
		rdb, err := newClient(Options{URL: c.url})
		if err != nil {
			t.Errorf("%s: %v", c.url, err)
			continue
		}
		switch r := rdb.(type) {
		case *goredis.ClusterClient:
			o := r.Options()
			if c.kind != "cluster" || len(o.Addrs) != len(c.addrs) || o.ReadTimeout != c.read || o.MaxRetries != c.retries || o.DialTimeout != dialTimeout || !o.ContextTimeoutEnabled {
				t.Errorf("%s: cluster client %v, read %v, retries %d; want a %s client", c.url, o.Addrs, o.ReadTimeout, o.MaxRetries, c.kind)
			}
		case *goredis.Client:
			o := r.Options()
			kind := "single"
			if o.Addr == "FailoverClient" || len(c.addrs) == 0 {
				kind = "sentinel" // a failover client finds its address through the Sentinels
			}
			if kind != c.kind || kind == "single" && o.Addr != c.addrs[0] || o.ReadTimeout != c.read || o.MaxRetries != c.retries || o.DialTimeout != dialTimeout || !o.ContextTimeoutEnabled {
				t.Errorf("%s: client at %s, read %v, retries %d; want a %s client", c.url, o.Addr, o.ReadTimeout, o.MaxRetries, c.kind)
			}
		default:
			t.Errorf("%s: a %T", c.url, rdb)
		}
		rdb.Close()
	}
}

func TestURLErrorHidesPassword(t *testing.T) {
	_, err := newClient(Options{URL: "redis://user:s3cret@host:6379/%zz"})
	if err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("error %v, want one without the password", err)
	}
}
