// Package herald is a Server-Sent Events hub.
//
// Data flows one way: an [Event] is published to a [Hub], which encodes it
// once, and appends the shared bytes to the bounded queue of every
// [Subscriber] whose [Selector]s match one of the event's topics. A stream
// writer (package httpapi, or any other transport) drains a subscriber's
// queue and writes everything queued in one write.
//
// The hub never waits for a subscriber: a subscriber whose queue would grow
// past its byte limit is dropped (see [ErrSlowSubscriber]) so that publishers
// and every other subscriber go on at full speed.
package herald
