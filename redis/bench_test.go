package redis_test

import (
	"testing"

	"github.com/herald-sse/herald/internal/brokertest"
	"github.com/herald-sse/herald/internal/servicetest"
	"github.com/herald-sse/herald/redis"
)

// BenchmarkAppendFollow measures a publish's round trip through Redis:
// append one record, and wait until a follower has read it back.
//
//	HERALD_TEST_REDIS_URL=redis://127.0.0.1:6379 go test -run '^$' -bench BenchmarkAppendFollow ./redis/
func BenchmarkAppendFollow(b *testing.B) {
	url := servicetest.RedisURL(b)
	brokertest.BenchAppendFollow(b, open(b, redis.Options{URL: url, Prefix: newPrefix(b, url)}))
}
