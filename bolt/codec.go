package bolt

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"time"

	"github.com/herald-sse/herald"
)

// Record encoding: varint seconds, uvarint nanoseconds, varint retry,
// then uvarint-length-prefixed ID, type and each topic (after their
// count), uvarint flags (flagPrivate; other bits make the record
// corrupt), the recipients ToUsers and ToConnections (each a count, then
// each uvarint-length-prefixed), and the data to the end.
//
// Version 4 appends a CRC-32C (Castagnoli) of all that, big-endian: a
// record whose checksum fails is corrupt, never served. Version 3 had no
// checksum; version 2 neither the flags nor the recipients: the data
// followed the topics. The prefix up to the topics is the same in all,
// which decodeTime and decodeTopics read.

// flagPrivate is the flag of a record with Private set.
const flagPrivate = 1 << 0

func encode(dst []byte, r *herald.Record) []byte {
	start := len(dst)
	dst = binary.AppendVarint(dst, r.Time.Unix())
	dst = binary.AppendUvarint(dst, uint64(r.Time.Nanosecond()))
	dst = binary.AppendVarint(dst, int64(r.Retry))
	dst = appendString(dst, r.ID)
	dst = appendString(dst, r.Type)
	dst = encodeTopics(dst, r.Topics)
	var flags uint64
	if r.Private {
		flags |= flagPrivate
	}
	dst = binary.AppendUvarint(dst, flags)
	dst = encodeTopics(dst, r.ToUsers)
	dst = encodeTopics(dst, r.ToConnections)
	dst = append(dst, r.Data...)
	return binary.BigEndian.AppendUint32(dst, checksum(r.Position, dst[start:]))
}

// checksum is the CRC-32C of the position pos and the record body: a
// record moved to another key (a damaged key) fails it too.
func checksum(pos uint64, body []byte) uint32 {
	var p [8]byte
	binary.BigEndian.PutUint64(p[:], pos)
	return crc32.Update(crc32.Checksum(p[:], castagnoli), castagnoli, body)
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// verified returns the encoding of the version 4 record v at pos without
// its checksum, or errCorrupt if the checksum fails.
func verified(pos uint64, v []byte) ([]byte, error) {
	if len(v) < 4 {
		return nil, errCorrupt
	}
	body := v[:len(v)-4]
	if checksum(pos, body) != binary.BigEndian.Uint32(v[len(body):]) {
		return nil, errCorrupt
	}
	return body, nil
}

func appendString(dst []byte, s string) []byte {
	return append(binary.AppendUvarint(dst, uint64(len(s))), s...)
}

var errCorrupt = errors.New("corrupt record")

// corruptError is a record that does not decode (its checksum fails).
type corruptError struct {
	pos uint64
	err error
}

func (e *corruptError) Error() string { return fmt.Sprintf("record %d: %v", e.pos, e.err) }
func (e *corruptError) Unwrap() error { return e.err }

// decodeTime reads only a record's time.
func decodeTime(v []byte) time.Time {
	sec, n := binary.Varint(v)
	if n <= 0 {
		return time.Time{}
	}
	nsec, m := binary.Uvarint(v[n:])
	if m <= 0 {
		return time.Time{}
	}
	return time.Unix(sec, int64(nsec))
}

// decode copies the record at pos out of v, which is only valid in its
// transaction. Position is left zero.
func decode(pos uint64, v []byte) (herald.Record, error) {
	return decodeVersion(pos, v, formatVersion)
}

func decodeVersion(pos uint64, v []byte, version int) (herald.Record, error) {
	var r herald.Record
	if version >= 4 {
		var err error
		if v, err = verified(pos, v); err != nil {
			return r, err
		}
	}
	d := decoder{b: v}
	sec := d.varint()
	nsec := d.uvarint()
	r.Time = time.Unix(sec, int64(nsec))
	r.Retry = time.Duration(d.varint())
	r.ID = d.string()
	r.Type = d.string()
	r.Topics = d.strings(false)
	if version >= 3 {
		flags := d.uvarint()
		if flags&^flagPrivate != 0 {
			return r, errCorrupt // a restriction this herald does not know
		}
		r.Private = flags&flagPrivate != 0
		r.ToUsers = d.strings(true)
		r.ToConnections = d.strings(true)
	}
	if d.bad {
		return r, errCorrupt
	}
	r.Data = string(d.b)
	return r, nil
}

// decodeTopics appends the topics of the record v to dst, as strings
// from names (adding those missing), without decoding the rest (but
// checking the whole record's checksum).
func decodeTopics(dst []string, pos uint64, v []byte, names map[string]string) ([]string, error) {
	v, err := verified(pos, v)
	if err != nil {
		return dst, err
	}
	d := decoder{b: v}
	d.varint()
	d.uvarint()
	d.varint()
	d.skip()
	d.skip()
	if d.bad {
		return dst, errCorrupt
	}
	return decodeTopicList(dst, d.b, names)
}

// encodeTopics appends a hole's value: the count of topics, then each.
func encodeTopics(dst []byte, topics []string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(topics)))
	for _, t := range topics {
		dst = appendString(dst, t)
	}
	return dst
}

// decodeTopicList appends the topics encoded at the start of v (as
// encodeTopics does) to dst, as strings from names (adding those
// missing), or if names is nil as substrings of one copy of v.
func decodeTopicList(dst []string, v []byte, names map[string]string) ([]string, error) {
	d := decoder{b: v}
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		return dst, errCorrupt
	}
	var all string
	if names == nil {
		all = string(d.b) // one allocation for all the topics
	}
	for range n {
		b := d.bytes()
		if d.bad {
			return dst, errCorrupt
		}
		if names == nil {
			end := len(all) - len(d.b)
			dst = append(dst, all[end-len(b):end])
			continue
		}
		s, ok := names[string(b)]
		if !ok {
			s = string(b)
			names[s] = s
		}
		dst = append(dst, s)
	}
	return dst, nil
}

type decoder struct {
	b   []byte
	bad bool
}

func (d *decoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.bad, d.b = true, nil
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.bad, d.b = true, nil
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) string() string { return string(d.bytes()) }

// strings reads a count, then that many strings; nil for none if
// nilIfNone, else an empty slice.
func (d *decoder) strings(nilIfNone bool) []string {
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.bad, d.b = true, nil
		return nil
	}
	if n == 0 && nilIfNone {
		return nil
	}
	s := make([]string, n)
	for i := range s {
		s[i] = d.string()
	}
	return s
}

func (d *decoder) skip() { d.bytes() }

func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.bad, d.b = true, nil
		return nil
	}
	b := d.b[:n]
	d.b = d.b[n:]
	return b
}

func u64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

func getU64(b []byte) uint64 {
	if len(b) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(b)
}

func topicPrefix(t string) []byte { return append([]byte(t), 0) }

// indexKey is name + 0x00 + the big-endian position pos.
func indexKey(name string, pos []byte) []byte {
	k := make([]byte, 0, len(name)+9)
	return append(append(append(k, name...), 0), pos...)
}

// isTopicKey reports whether k is prefix followed by a position.
func isTopicKey(k, prefix []byte) bool {
	return len(k) == len(prefix)+8 && bytes.HasPrefix(k, prefix)
}
