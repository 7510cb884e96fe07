package bolt

import (
	"errors"
	"fmt"
	"slices"

	bbolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// upgradeV1 converts a version 1 file: its per-topic marks (the highest
// position removed by a cap from a record carrying the topic) do not say
// which positions below them are gone, so they are folded into dropped,
// which is cautious: resumes from before the highest of them report a
// loss once.
func upgradeV1(tx *bbolt.Tx) error {
	meta := tx.Bucket(bucketMeta)
	dropped := getU64(meta.Get(keyDropped))
	if lost := tx.Bucket(bucketLost); lost != nil {
		if err := lost.ForEach(func(_, v []byte) error {
			dropped = max(dropped, getU64(v))
			return nil
		}); err != nil {
			return err
		}
	}
	for _, name := range [][]byte{bucketLost, bucketLostPos} {
		if err := tx.DeleteBucket(name); err != nil && !errors.Is(err, bolterrors.ErrBucketNotFound) {
			return err
		}
	}
	if err := meta.Put(keyDropped, u64(dropped)); err != nil {
		return err
	}
	if err := meta.Put(keyHoles, u64(0)); err != nil {
		return err
	}
	return meta.Put(keyVersion, u64(2))
}

// upgrade converts a file of an older format version, if it is one: a
// version 1 file to version 2, then a version 2 or 3 file's records to
// the current encoding, a bounded batch per transaction; the last position
// converted is kept in "meta" meanwhile, so a conversion interrupted by a
// crash resumes where it stopped. Only then is the version set.
func (h *History) upgrade() error {
	var version uint64
	err := h.db.Update(func(tx *bbolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if meta == nil {
			return nil // a new file
		}
		version = getU64(meta.Get(keyVersion))
		if version == 1 {
			if err := upgradeV1(tx); err != nil {
				return err
			}
			version = 2
		}
		return nil
	})
	for err == nil && (version == 2 || version == 3) {
		err = h.db.Update(func(tx *bbolt.Tx) error {
			done, err := upgradeStep(tx, int(version), maxTxRecords, maxTxBytes)
			if done {
				version = formatVersion
			}
			return err
		})
	}
	if err != nil {
		return fmt.Errorf("bolt: upgrading %s to format version %d: %w", h.path, formatVersion, err)
	}
	return nil
}

// upgradeStep re-encodes the next records of a file of version from (2
// or 3; at most maxRecords, and about maxBytes) in the current encoding,
// and sets the version when none are left.
func upgradeStep(tx *bbolt.Tx, from, maxRecords, maxBytes int) (done bool, err error) {
	meta := tx.Bucket(bucketMeta)
	records := tx.Bucket(bucketRecords)
	if records == nil {
		return true, meta.Put(keyVersion, u64(formatVersion))
	}
	type kv struct{ k, v []byte }
	var batch []kv
	size := 0
	c := records.Cursor()
	var k, v []byte
	if last := meta.Get(keyUpgraded); last != nil {
		k, v = c.Seek(u64(getU64(last) + 1))
	} else {
		k, v = c.First()
	}
	// Collect first: a bucket must not change under a cursor walking it.
	for ; k != nil && len(batch) < maxRecords && size < maxBytes; k, v = c.Next() {
		r, err := decodeVersion(getU64(k), v, from)
		if err != nil {
			return false, fmt.Errorf("record %d: %w", getU64(k), err)
		}
		r.Position = getU64(k)
		enc := encode(make([]byte, 0, len(v)+8), &r)
		batch = append(batch, kv{slices.Clone(k), enc})
		size += len(enc)
	}
	for _, e := range batch {
		if err := records.Put(e.k, e.v); err != nil {
			return false, err
		}
	}
	if k != nil {
		return false, meta.Put(keyUpgraded, batch[len(batch)-1].k)
	}
	if err := meta.Delete(keyUpgraded); err != nil {
		return false, err
	}
	// herald.Record.Size counts more since version 4: the byte total
	// must be what removing the records will subtract.
	var total int64
	rc := records.Cursor()
	for k, v := rc.First(); k != nil; k, v = rc.Next() {
		r, err := decode(getU64(k), v)
		if err != nil {
			return false, fmt.Errorf("record %d: %w", getU64(k), err)
		}
		total += int64(r.Size())
	}
	if err := meta.Put(keyBytes, u64(uint64(total))); err != nil {
		return false, err
	}
	return true, meta.Put(keyVersion, u64(formatVersion))
}
