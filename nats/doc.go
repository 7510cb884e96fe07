// Package nats is a [herald.Broker] on a NATS JetStream stream: the hubs
// of a cluster append their publishes to one stream and each follows it,
// so every node delivers the same events in the same order, with the
// same IDs.
//
// It needs nats-server 2.9 or later with JetStream enabled, and uses
// nothing newer (no stream metadata, subject transforms, several filter
// subjects or atomic batches), so that clusters may run on what
// distributions ship.
//
// # Layout
//
// [Options].Stream names a stream (HERALD by default) that captures the
// subjects <prefix>.t.> (the prefix is [Options].Subject, by default the
// stream name in lower case). A record is a message on
// <prefix>.t.<token>, where token encodes the record's first topic: its
// base64url form without padding (a topic may hold '.', '*', '>' and
// spaces, which a subject token cannot), or, for a topic longer than 96
// bytes, '~' and a hash of it ([Broker.Subject] computes it). NATS tools
// can so filter by topic (nats stream view, a consumer's filter subject)
// without decoding payloads; all of a record's topics are in its payload,
// the JSON of package internal/brokerwire. A record whose JSON would not
// fit in a message the server accepts (max_payload, 1 MiB by default;
// JSON escapes can make an event larger than its publish body) is stored
// gzipped instead, with the header Content-Encoding: gzip; one that does
// not fit even so is refused with an error wrapping
// [herald.ErrInvalidEvent].
//
// Each Follow reads with an ephemeral consumer of its own (in memory, one
// replica, no acks), which it deletes when it returns; the server deletes
// one left by a process that died after a minute.
//
// Two key-value buckets go with the stream: <stream>_nodes holds what
// each node announced (see [herald.NodeTTL]), and <stream>_ids indexes the
// publisher-supplied IDs of the duplicate window (see below).
//
// A node that finds the stream or a bucket missing (deleted by an
// operator) creates it again as [Open] would: a stream recreated is a new
// log, with a new epoch. On nats-server 2.9, a stream recreated within
// moments of its deletion can be left broken (the server still removes
// the old files in the background; calls then fail with "error opening
// msg block file"): stop the nodes before deleting their stream.
//
// # Positions and epoch
//
// A record's position is its stream sequence number. The epoch is derived
// from the stream's name and creation time, which JetStream keeps with the
// stream: every node computes the same one with no coordination, it is
// stable across server restarts, and it changes when the stream is deleted
// and created again, which is exactly when positions start over and what
// the log held is gone. Append, whose acknowledgements do not name the
// stream's incarnation, reads the epoch again when the one it has is a
// second old, or an acknowledgement's sequence shows a new stream; Follow
// reads it whenever it starts a consumer, and a stream's deletion ends
// its consumers. Sequences in a stream are consecutive, so a gap
// between what Follow reads is a record that retention (or an operator)
// removed: it is reported by [herald.Batch].Lost, as is a message whose
// payload Herald cannot decode (skipped, never delivered half understood).
// When nothing readable comes after such messages, the batch reporting
// them has no records and its Through is the last one's sequence, so that
// a node knows it has read up to the head.
//
// # Retention
//
// [herald.Retention] maps onto the stream's limits, oldest messages
// discarded first: MaxEvents is MaxMsgs, MaxBytes is MaxBytes (which
// JetStream counts over stored messages, subject and headers included, a
// little more than [herald.Record.Size]), MaxAge is MaxAge. PerTopic caps
// are not the stream's business: each node's copy of the log enforces
// them. [Open] updates an existing stream to the limits it is given, so
// the node started last sets them. A stream that MaxAge (or a purge) has
// emptied has a head of 0 (see [Broker.Head]).
//
// # Duplicate IDs
//
// A record with a publisher-supplied ID carries it in the Nats-Msg-Id
// header, and JetStream refuses a second message with the same one within
// the stream's duplicate window ([Options].DuplicateWindow, two minutes by
// default, at most MaxAge): Append then fails with an error wrapping
// [herald.ErrDuplicateID]. The window is the broker's promise; each node
// also refuses IDs its own copy of the log holds.
//
// For one record, the common case, this check is atomic. JetStream 2.9
// has no atomic batch, so for an Append of several records the IDs after
// the first are looked up first in the <stream>_ids bucket, where every
// acknowledged ID is indexed for the window, and the batch is refused
// before anything is published if one is there. Two cases remain where a
// batch is refused as a duplicate after some of its records were
// appended: the same ID published through another node between the
// lookup and the publish, or an ID whose record was acknowledged but not
// indexed because the connection failed in between. Both need a publisher
// that reuses an ID concurrently or retries a batch that partly failed.
// The first record of a batch is published alone. After it, records with
// publisher IDs are published one at a time, each after the previous
// one's acknowledgement: a batch that fails otherwise has a prefix of its
// records appended at most, and retrying it is refused as a duplicate if
// that prefix had IDs, though the rest is not in the log. Records without
// IDs are pipelined (sent without waiting, acknowledgements read in
// order), which is several times faster; a batch of them that fails part
// way may have any of them appended, and a retry may double those. Only a
// publish of one event retries exactly.
//
// # Durability and availability
//
// Append returns once JetStream acknowledged each record: it is stored in
// the stream's file storage, on a quorum of [Options].Replicas servers in
// a cluster. A server hands what it stores to its files as it stores it,
// so killing the server process loses nothing acknowledged (the outage
// test does that); when the files reach the disk is the server's sync
// policy, so a single server losing power may lose the last records,
// which replicas guard against.
//
// The connection reconnects forever, but buffers nothing while it is
// down: a publish during an outage fails at once (or after
// [Options].Timeout if the server stopped answering), with an error
// wrapping [herald.ErrBrokerUnavailable], so the publisher is told to
// retry instead of its event being sent minutes later. Follow returns
// such an error when the connection has been down for a second, or when
// the server stops sending its heartbeats; the hub calls it again from
// where it got to.
package nats
