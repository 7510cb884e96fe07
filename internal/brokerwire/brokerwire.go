// Package brokerwire is how a record travels through a broker's log
// (Redis stream entries, JetStream messages): JSON, so that operators can
// read the log with the broker's own tools, with a version so that a node
// never delivers a record it does not fully understand.
package brokerwire

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/herald-sse/herald"
)

// Version is the format Encode writes. Decode refuses any other, and any
// field it does not know: a newer node's restriction on who may receive
// an event must never be ignored by an older one.
const Version = 1

type wire struct {
	V             int      `json:"v"`
	ID            string   `json:"id,omitempty"`
	Topics        []string `json:"topics"`
	Type          string   `json:"type,omitempty"`
	Data          string   `json:"data"`
	RetryMS       int64    `json:"retryMs,omitempty"`
	Time          int64    `json:"time"` // Unix nanoseconds
	Private       bool     `json:"private,omitempty"`
	ToUsers       []string `json:"toUsers,omitempty"`
	ToConnections []string `json:"toConnections,omitempty"`
}

// Encode returns r (all but its Position, which the log assigns) as an
// entry's payload.
func Encode(r *herald.Record) []byte {
	w := wire{V: Version, ID: r.ID, Topics: r.Topics, Type: r.Type, Data: r.Data,
		RetryMS: r.Retry.Milliseconds(), Time: r.Time.UnixNano(), Private: r.Private,
		ToUsers: r.ToUsers, ToConnections: r.ToConnections}
	b, err := json.Marshal(&w)
	if err != nil {
		// Only strings, numbers and bools: Marshal cannot fail.
		panic(fmt.Sprintf("brokerwire: %v", err))
	}
	return b
}

// ErrMalformed wraps every reason Decode refuses an entry.
var ErrMalformed = errors.New("malformed broker entry")

// Decode reads a record written by Encode. It checks the record as a
// publish would (an entry may have been written by anyone with access to
// the broker), so what it returns can be encoded onto an event stream.
func Decode(b []byte) (herald.Record, error) {
	var w wire
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(&w); err != nil {
		return herald.Record{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if d.More() {
		return herald.Record{}, fmt.Errorf("%w: trailing data", ErrMalformed)
	}
	if w.V != Version {
		return herald.Record{}, fmt.Errorf("%w: version %d, this herald reads %d", ErrMalformed, w.V, Version)
	}
	if w.RetryMS < 0 || w.RetryMS > int64(time.Duration(1<<62)/time.Millisecond) {
		return herald.Record{}, fmt.Errorf("%w: retry out of range", ErrMalformed)
	}
	if len(w.ToUsers) == 0 {
		w.ToUsers = nil // "toUsers":[] restricts nothing, like no list
	}
	if len(w.ToConnections) == 0 {
		w.ToConnections = nil
	}
	e := herald.Event{Topics: w.Topics, ID: w.ID, Type: w.Type, Data: w.Data,
		Retry: time.Duration(w.RetryMS) * time.Millisecond, Private: w.Private,
		ToUsers: w.ToUsers, ToConnections: w.ToConnections}
	if err := e.Validate(); err != nil {
		return herald.Record{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return herald.Record{ID: e.ID, Topics: e.Topics, Type: e.Type, Data: e.Data, Retry: e.Retry,
		Time: time.Unix(0, w.Time), Private: e.Private, ToUsers: e.ToUsers, ToConnections: e.ToConnections}, nil
}
