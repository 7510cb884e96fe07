// Package redis is a [herald.Broker] on a Redis stream: the hubs of a
// cluster append their publishes to one stream and follow it, so every
// node delivers the same events in the same order under the same IDs.
//
// # What is stored where
//
// Every key of a log starts with the hash tag {Prefix} (Prefix defaults
// to "herald"), so all of them live in one slot and the Lua scripts that
// touch several at once also run on Redis Cluster:
//
//   - {Prefix}:log is the stream. Each entry has three fields: e, the
//     epoch of the log it belongs to; p, the ID of the entry appended
//     just before it ("0-0" for the first); r, the record, encoded by
//     internal/brokerwire (JSON, readable with redis-cli).
//   - {Prefix}:epoch holds the log's epoch (see [herald.NewEpoch]). The
//     stream and its epoch are made together: when either is missing the
//     log was wiped (FLUSHALL, a restart without persistence, a deleted
//     key), and the next call of any node starts a new, empty log under a
//     new epoch, which every follower notices (each entry carries its
//     epoch, and a quiet follower checks the key every second) and reads
//     from its start.
//   - {Prefix}:ids:<id> reserves a publisher-supplied event ID for
//     Retention.MaxAge (SET NX PX): an append carrying an ID reserved
//     there is refused with [herald.ErrDuplicateID], by whichever node it
//     reaches. So the duplicate window is MaxAge, even for an event that
//     MaxEvents has already trimmed from the stream.
//   - {Prefix}:nodes is a hash of node name to its last
//     [herald.NodeStatus] (JSON); it expires when no node announces.
//
// Redis must keep these keys: use maxmemory-policy noeviction (an evicted
// key reads as a wiped log, or a shorter duplicate window).
//
// # Positions
//
// A record's position is its stream entry ID ms-seq packed as
// ms<<22 | seq: increasing along the log as the contract wants, and
// readable back into an ID for XREAD. The append script picks the IDs
// itself, as XADD * would (the server's clock, or the last ID's
// millisecond with the next sequence number), but moves to the next
// millisecond rather than let seq reach 2^22 in one millisecond, so an ID
// that does not fit a position is never written; the milliseconds fit 42
// bits, which lasts until the year 2109. Positions are not consecutive.
//
// # Retention
//
// Each append trims the stream: Retention.MaxEvents with XTRIM MAXLEN ~
// and Retention.MaxAge with XTRIM MINID ~ (age counted from the entry's
// ID, the Redis clock when it was appended). Both are approximate: Redis
// trims whole internal nodes only, so it may keep around a hundred more
// entries than asked, never fewer. Retention.MaxBytes and PerTopic are
// not applied to the stream: each node's in-memory mirror applies them.
//
// A follower tells whether records were removed before it could read
// them from the p field: an entry whose p is not the entry the follower
// read last (or Follow's after) comes after a gap, and its batch is
// marked [herald.Batch].Lost. This is exact, costs no extra round trip,
// and also reports an entry this package cannot read (it is skipped and
// logged, never silently dropped) and a log rolled back by a Redis
// restart from an older snapshot. When nothing readable comes after
// skipped entries, the batch reporting them has no records and its
// Through is the last one's position, so that a node knows it has read
// up to the head.
//
// Trimming happens on append only, and never removes the newest entry:
// the head is the last entry the stream holds, however old, and a
// follower can always read up to it.
//
// # Durability and failures
//
// Append returns once Redis has run the script: the records are as
// durable as the server's persistence makes them. With appendonly yes
// and appendfsync always, an acknowledged publish survives a Redis crash;
// with everysec up to a second of publishes may be lost; with
// persistence off, a Redis restart loses the log and the nodes start
// over under a new epoch. Replication to replicas is asynchronous: a
// failover (Sentinel, Cluster) may lose the last acknowledged publishes.
// Nodes that had read them see the next entry's p name an entry other
// than the last they read, and report a gap, provided the new master's
// clock is not behind the old one's: entries whose IDs sort before what
// a node has read are never read by it.
//
// The client is set to fail fast (1 s to dial, 3 s to read or write, one
// retry), so that publishing during an outage returns an error wrapping
// [herald.ErrBrokerUnavailable] within seconds. An append is never
// retried by the client library, whatever the options say: one whose
// reply was lost may have run, and running it again would append its
// records twice.
//
// # Requirements
//
// Redis 6.2 or later (XTRIM MINID); tested on Redis 7.0. Cluster and
// Sentinel deployments are reached through the client options: see
// [Options].URL.
package redis
