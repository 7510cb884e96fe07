package redis_test

import (
	"context"
	"log"

	"github.com/herald-sse/herald"
	"github.com/herald-sse/herald/redis"
)

// Every hub whose broker is opened on the same Redis with the same
// Prefix is a node of one cluster: it delivers what any of them
// publishes, and a subscriber may resume on any of them.
func Example() {
	ctx := context.Background()
	b, err := redis.Open(ctx, redis.Options{
		URL:       "redis://127.0.0.1:6379",
		Prefix:    "chat",
		Retention: herald.Retention{MaxEvents: 10_000},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer b.Close() // after the hub: it does not close its broker

	hub := &herald.Hub{Broker: b}
	if err := hub.Open(); err != nil {
		log.Fatal(err)
	}
	defer hub.Close()
	// Serve hub as usual; publishing through it now goes through Redis.
}
