// Package sse implements the Server-Sent Events wire format
// ("text/event-stream") as the WHATWG HTML standard defines it: an
// allocation-free encoder for servers and a streaming decoder that sees a
// stream exactly as a browser's EventSource would.
//
// The encoder exists because the format is easy to get subtly wrong: a
// payload has to be split on CR as well as LF, or a bare CR in user data
// injects fields; an empty payload still needs a data line, or the browser
// dispatches nothing; and an id must never carry a line break or NUL. Both
// halves follow the spec's "Interpreting an event stream" algorithm, and the
// tests walk through its rules one by one (E1–E10 for the encoder, P1–P29 for
// the parser, as listed in docs/sse-wire.md).
//
// The decoder deliberately does not use bufio.Scanner: a scanner's token
// limit silently drops long events, while the decoder here grows its buffer
// to hold any line, bounded only by Decoder.MaxEventSize when the caller asks
// for a bound.
package sse
