package bolt_test

import (
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strings"

	"github.com/herald-sse/herald"
	"github.com/herald-sse/herald/bolt"
)

// A hub whose history is on disk: a subscriber that saw the first event
// before a restart resumes after it and misses nothing.
func ExampleOpen() {
	dir, _ := os.MkdirTemp("", "herald")
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "herald.db")

	history, err := bolt.Open(path, bolt.Options{Retention: herald.Retention{MaxEvents: 1_000_000}})
	if err != nil {
		log.Fatal(err)
	}
	hub := &herald.Hub{History: history}
	if err := hub.Open(); err != nil {
		log.Fatal(err)
	}
	ids, _ := hub.Publish(herald.Event{Topics: []string{"news"}, Data: "first"})
	hub.Publish(herald.Event{Topics: []string{"news"}, Data: "second"}) // on disk when Publish returns
	hub.Close()
	history.Close() // the hub does not close its history

	// After the restart: the same file, the same IDs.
	history, err = bolt.Open(path, bolt.Options{Retention: herald.Retention{MaxEvents: 1_000_000}})
	if err != nil {
		log.Fatal(err)
	}
	defer history.Close()
	hub = &herald.Hub{History: history}
	if err := hub.Open(); err != nil {
		log.Fatal(err)
	}
	defer hub.Close()
	sub, _ := hub.SubscribeWith(herald.SubscribeOptions{
		Selectors:   []herald.Selector{herald.Topic("news")},
		LastEventID: ids[0],
	})
	defer sub.Close()
	sub.Replay(func(frames [][]byte) error {
		for _, f := range frames {
			fmt.Print(strings.ReplaceAll(string(f), history.Epoch(), "<epoch>"))
		}
		return nil
	})
	// Output:
	// id: <epoch>-2
	// data: second
}
