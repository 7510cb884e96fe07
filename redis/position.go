package redis

import (
	"fmt"
	"strconv"
	"strings"
)

// A position packs a stream entry ID ms-seq as ms<<seqBits | seq.
const (
	seqBits = 22
	maxSeq  = 1<<seqBits - 1
	maxMS   = 1<<(64-seqBits) - 1
)

// position returns the position of the stream entry ID id, or an error
// if id is not one or does not fit: a position must never stand for two
// IDs.
func position(id string) (uint64, error) {
	a, b, ok := strings.Cut(id, "-")
	ms, err1 := strconv.ParseUint(a, 10, 64)
	seq, err2 := strconv.ParseUint(b, 10, 64)
	if !ok || err1 != nil || err2 != nil {
		return 0, fmt.Errorf("herald/redis: %q is not a stream ID", id)
	}
	if ms > maxMS || seq > maxSeq {
		return 0, fmt.Errorf("herald/redis: stream ID %q does not fit a position (%d bits of milliseconds, %d of sequence)", id, 64-seqBits, seqBits)
	}
	return ms<<seqBits | seq, nil
}

// streamID is the stream entry ID of position p.
func streamID(p uint64) string {
	return strconv.FormatUint(p>>seqBits, 10) + "-" + strconv.FormatUint(p&maxSeq, 10)
}
