package herald_test

import (
	"fmt"
	"os"

	"github.com/herald-sse/herald"
)

// A subscriber to two topics receives an event published to both once;
// the writer drains everything queued in one go.
func ExampleHub() {
	hub := &herald.Hub{}
	if err := hub.Open(); err != nil {
		fmt.Println(err)
		return
	}
	defer hub.Close()

	sub, _ := hub.Subscribe(herald.Topic("news"), herald.Topic("sports"))
	defer sub.Close()

	hub.Publish(herald.Event{Topics: []string{"news", "sports"}, ID: "1", Data: "both"})
	hub.Publish(herald.Event{Topics: []string{"weather"}, ID: "2", Data: "not selected"})
	hub.Publish(herald.Event{Topics: []string{"news"}, ID: "3", Type: "update", Data: "line 1\nline 2"})

	<-sub.Ready()
	for _, frame := range sub.Drain(nil) {
		os.Stdout.Write(frame) // a stream writer sends them in one write
	}
	// Output:
	// id: 1
	// data: both
	//
	// id: 3
	// event: update
	// data: line 1
	// data: line 2
}

func ExampleParseSelector() {
	for _, s := range []string{"*", "orders/42", ""} {
		sel, err := herald.ParseSelector(s)
		if err != nil {
			fmt.Println("error:", err)
			continue
		}
		fmt.Printf("%s matches orders/42: %v\n", sel, sel.Match("orders/42"))
	}
	// Output:
	// * matches orders/42: true
	// orders/42 matches orders/42: true
	// error: invalid topic selector: empty topic
}

// Two hubs sharing a broker are the nodes of one cluster: an event
// published through one is delivered by both, with the same ID. A real
// cluster uses the redis or nats package's Broker the same way.
func ExampleMemoryBroker() {
	broker := &herald.MemoryBroker{}
	a := &herald.Hub{Broker: broker, NodeID: "a"}
	b := &herald.Hub{Broker: broker, NodeID: "b"}
	for _, h := range []*herald.Hub{a, b} {
		if err := h.Open(); err != nil {
			fmt.Println(err)
			return
		}
		defer h.Close()
	}

	sub, _ := b.Subscribe(herald.Topic("news"))
	defer sub.Close()
	ids, _ := a.Publish(herald.Event{Topics: []string{"news"}, ID: "n1", Data: "through a"})

	<-sub.Ready() // delivered once node b has read it from the log
	for _, frame := range sub.Drain(nil) {
		os.Stdout.Write(frame)
	}
	fmt.Println("published as", ids[0])
	// Output:
	// id: n1
	// data: through a
	//
	// published as n1
}

// Rights are checked per topic: every topic of an event must be
// publishable; a subscription to "*" needs the "*" right.
func ExampleIdentity() {
	id := herald.Identity{
		Publish:   []herald.Selector{herald.Topic("news")},
		Subscribe: []herald.Selector{herald.Topic("news"), herald.Topic("alerts")},
	}
	fmt.Println(id.CanPublish([]string{"news"}), id.CanPublish([]string{"news", "alerts"}))
	fmt.Println(id.CanSubscribe(herald.Topic("alerts")), id.CanSubscribe(herald.All{}))
	fmt.Println(id.CanSee([]string{"sport", "alerts"}))
	// Output:
	// true false
	// true false
	// true
}
