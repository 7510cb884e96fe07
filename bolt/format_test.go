package bolt

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"testing"

	"github.com/herald-sse/herald"
	bbolt "go.etcd.io/bbolt"
)

// encodeV2 is the record encoding of format versions 1 and 2, kept to
// write old files: the data followed the topics, and who may receive a
// record was not stored.
func encodeV2(dst []byte, r *herald.Record) []byte {
	dst = binary.AppendVarint(dst, r.Time.Unix())
	dst = binary.AppendUvarint(dst, uint64(r.Time.Nanosecond()))
	dst = binary.AppendVarint(dst, int64(r.Retry))
	dst = appendString(dst, r.ID)
	dst = appendString(dst, r.Type)
	dst = binary.AppendUvarint(dst, uint64(len(r.Topics)))
	for _, t := range r.Topics {
		dst = appendString(dst, t)
	}
	return append(dst, r.Data...)
}

// toV2 turns the closed file at path into a version 2 file, as an older
// herald wrote it. Its records must be public.
func toV2(t testing.TB, path string) {
	t.Helper()
	db, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.Update(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketRecords)
		var keys, values [][]byte
		err := b.ForEach(func(k, v []byte) error {
			r, err := decode(getU64(k), v)
			if err != nil {
				return err
			}
			if r.Private || r.ToUsers != nil || r.ToConnections != nil {
				return fmt.Errorf("record %d is not public: version 2 cannot hold it", getU64(k))
			}
			keys = append(keys, slices.Clone(k))
			values = append(values, encodeV2(nil, &r))
			return nil
		})
		if err != nil {
			return err
		}
		for i := range keys {
			if err := b.Put(keys[i], values[i]); err != nil {
				return err
			}
		}
		return tx.Bucket(bucketMeta).Put(keyVersion, u64(2))
	})
	if err != nil {
		t.Fatal(err)
	}
}

// toV3 turns the closed file at path into a version 3 file, as an older
// herald wrote it: records without a checksum, no "gaps" bucket.
func toV3(t testing.TB, path string) {
	t.Helper()
	db, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.Update(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketRecords)
		var keys, values [][]byte
		err := b.ForEach(func(k, v []byte) error {
			if _, err := decode(getU64(k), v); err != nil {
				return err
			}
			keys = append(keys, slices.Clone(k))
			values = append(values, slices.Clone(v[:len(v)-4]))
			return nil
		})
		if err != nil {
			return err
		}
		for i := range keys {
			if err := b.Put(keys[i], values[i]); err != nil {
				return err
			}
		}
		if err := tx.DeleteBucket(bucketGaps); err != nil {
			return err
		}
		// Version 3 counted fewer bytes per record.
		if err := tx.Bucket(bucketMeta).Put(keyBytes, u64(uint64(len(keys)*100))); err != nil {
			return err
		}
		return tx.Bucket(bucketMeta).Put(keyVersion, u64(3))
	})
	if err != nil {
		t.Fatal(err)
	}
}

// A version 3 file (no checksums) is converted at Open, in several
// transactions: its records, private ones too, replay as before, now
// checksummed.
func TestUpgradeFromVersion3(t *testing.T) {
	defer setTuning(7, 1<<16)()
	path := dbPath(t)
	h := open(t, path, Options{})
	fillPublic(t, h, 30)
	add(t, h, herald.Record{Topics: []string{"all"}, Data: "secret", Private: true, ToUsers: []string{"alice"}, ToConnections: []string{"c1"}})
	before := collect(t, h, 0, herald.All{})
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	toV3(t, path)
	if _, err := decode(before[0].Position, mustGet(t, path, before[0].Position)); err == nil {
		t.Fatal("the version 3 record decodes as version 4: the test writes no old file")
	}
	h = open(t, path, Options{})
	if got := collect(t, h, 0, herald.All{}); !equalRecords(got, before) {
		t.Errorf("records after the upgrade differ:\n%v\nwant\n%v", got, before)
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	if v, upgrading := fileVersion(t, path); v != formatVersion || upgrading {
		t.Errorf("after the upgrade: version %d, upgrade mark %v", v, upgrading)
	}
	if _, err := decode(before[0].Position, mustGet(t, path, before[0].Position)); err != nil {
		t.Errorf("an upgraded record: %v", err)
	}
	// The byte total is recounted: Record.Size counts more since.
	var want int64
	for _, r := range before {
		want += int64(r.Size())
	}
	db, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	_ = db.View(func(tx *bbolt.Tx) error {
		if got := int64(getU64(tx.Bucket(bucketMeta).Get(keyBytes))); got != want {
			t.Errorf("bytes after the upgrade: %d, want %d", got, want)
		}
		return nil
	})
}

// fileVersion returns the version of the closed file at path, and
// whether an upgrade is under way.
func fileVersion(t testing.TB, path string) (version uint64, upgrading bool) {
	t.Helper()
	db, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	_ = db.View(func(tx *bbolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		version, upgrading = getU64(meta.Get(keyVersion)), meta.Get(keyUpgraded) != nil
		return nil
	})
	return version, upgrading
}

// fillPublic appends n public records with various fields and returns
// them as replayed.
func fillPublic(t *testing.T, h *History, n int) []herald.Record {
	t.Helper()
	for i := range n {
		add(t, h, herald.Record{ID: "id" + strconv.Itoa(i%50), Topics: []string{"t" + strconv.Itoa(i%3), "all"}, Type: "x", Data: "data " + strconv.Itoa(i), Retry: 1000})
	}
	return collect(t, h, 0, herald.All{})
}

// A version 2 file is converted at Open, in several transactions, and its
// records replay as before; new records keep who may receive them.
func TestUpgradeFromVersion2(t *testing.T) {
	defer setTuning(7, 1<<16)()
	path := dbPath(t)
	r := herald.Retention{PerTopic: map[string]int{"t2": 40}}
	h := open(t, path, Options{Retention: r})
	before := fillPublic(t, h, 100)
	head := h.Head()
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	toV2(t, path)
	if _, err := decode(before[0].Position, mustGet(t, path, before[0].Position)); err == nil {
		t.Fatal("the version 2 record decodes as version 3: the test writes no old file")
	}

	h = open(t, path, Options{Retention: r})
	if got := collect(t, h, 0, herald.All{}); !equalRecords(got, before) {
		t.Errorf("records after the upgrade differ:\n%v\nwant\n%v", got, before)
	}
	if got := collect(t, h, 0, herald.Topic("t1")); len(got) != 33 || !equalRecords(got, filterTopic(before, "t1")) {
		t.Errorf("topic t1 after the upgrade: %d records", len(got))
	}
	if pos, ok := h.Lookup("id7"); !ok || pos != 58 {
		t.Errorf("Lookup(id7) = %d, %v; want 58", pos, ok)
	}
	if h.Head() != head || h.Lost(before[0].Position-1, head, []herald.Selector{herald.Topic("t0")}) {
		t.Errorf("after the upgrade: head %d (want %d), or t0 lost", h.Head(), head)
	}
	private := herald.Record{Topics: []string{"all"}, Data: "secret", Private: true, ToUsers: []string{"alice"}, ToConnections: []string{"c1"}}
	private.Position = add(t, h, private)[0]
	private.Time = collect(t, h, head, herald.All{})[0].Time
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	if v, upgrading := fileVersion(t, path); v != formatVersion || upgrading {
		t.Errorf("after the upgrade: version %d, upgrade mark %v", v, upgrading)
	}

	h = open(t, path, Options{Retention: r})
	defer h.Close()
	got := collect(t, h, 0, herald.Topic("all"))
	if !equalRecords(got, append(before, private)) {
		t.Errorf("records after reopening the upgraded file differ: %d records, last %+v", len(got), got[len(got)-1])
	}
}

// An upgrade interrupted between two transactions resumes where it
// stopped, without decoding converted records as old ones.
func TestUpgradeFromVersion2Interrupted(t *testing.T) {
	path := dbPath(t)
	h := open(t, path, Options{})
	before := fillPublic(t, h, 40)
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	toV2(t, path)
	db, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bbolt.Tx) error {
		done, err := upgradeStep(tx, 2, 15, 1<<20)
		if done {
			return errors.New("one step of 15 converted all 40 records")
		}
		return err
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	if v, upgrading := fileVersion(t, path); v != 2 || !upgrading {
		t.Fatalf("interrupted upgrade: version %d, upgrade mark %v", v, upgrading)
	}
	h = open(t, path, Options{})
	defer h.Close()
	if got := collect(t, h, 0, herald.All{}); !equalRecords(got, before) {
		t.Errorf("records after a resumed upgrade differ:\n%v\nwant\n%v", got, before)
	}
}

// Private and the recipients survive a restart, and a crash (records
// committed, the process gone).
func TestRecipientsSurviveReopen(t *testing.T) {
	path := dbPath(t)
	h := open(t, path, Options{})
	in := []herald.Record{
		{Topics: []string{"a"}, Data: "1", Private: true},
		{Topics: []string{"a"}, Data: "2", ToUsers: []string{"u1", "u2"}},
		{Topics: []string{"a"}, Data: "3", ToConnections: []string{"c"}, Private: true},
		{Topics: []string{"a"}, Data: "4"},
	}
	add(t, h, in...)
	want := collect(t, h, 0, herald.All{})
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	h = open(t, path, Options{})
	got := collect(t, h, 0, herald.All{})
	if !equalRecords(got, want) || !got[0].Private || got[1].Private || !slices.Equal(got[1].ToUsers, []string{"u1", "u2"}) {
		t.Errorf("after reopen:\n%+v\nwant\n%+v", got, want)
	}
	h.crash()
	h = open(t, path, Options{})
	defer h.Close()
	if got := collect(t, h, 0, herald.Topic("a")); !equalRecords(got, want) {
		t.Errorf("after a crash:\n%+v\nwant\n%+v", got, want)
	}
}

// Append keeps its own copies of the recipients: the caller may reuse
// its slices, while the records are queued and after.
func TestAppendCopiesRecipients(t *testing.T) {
	h := open(t, dbPath(t), Options{})
	defer h.Close()
	users, conns, topics := []string{"alice"}, []string{"c1"}, []string{"a"}
	h.pause()
	wait, err := h.Append([]herald.Record{{Topics: topics, Private: true, ToUsers: users, ToConnections: conns}})
	if err != nil {
		t.Fatal(err)
	}
	users[0], conns[0], topics[0] = "mallory", "c2", "b"
	check := func(when string) {
		got := collect(t, h, 0, herald.All{})
		if len(got) != 1 || !got[0].Private || !slices.Equal(got[0].ToUsers, []string{"alice"}) ||
			!slices.Equal(got[0].ToConnections, []string{"c1"}) || !slices.Equal(got[0].Topics, []string{"a"}) {
			t.Errorf("%s: %+v", when, got)
		}
	}
	check("queued")
	h.resume()
	if err := wait(); err != nil {
		t.Fatal(err)
	}
	check("committed")
}

// A record with a flag this herald does not know is corrupt, not public.
func TestDecodeUnknownFlag(t *testing.T) {
	r := herald.Record{ID: "x", Topics: []string{"a"}}
	v := encodeV2(nil, &r)
	v = binary.AppendUvarint(v, flagPrivate|2)
	v = append(v, 0, 0)
	v = binary.BigEndian.AppendUint32(v, checksum(1, v)) // a sound checksum: the flag must be refused
	if _, err := decode(1, v); !errors.Is(err, errCorrupt) {
		t.Errorf("decode with an unknown flag: %v, want errCorrupt", err)
	}
	v = encode(nil, &herald.Record{ID: "x", Topics: []string{"a"}, Private: true, ToUsers: []string{"u"}, Data: "d"})
	v = v[:len(v)-4] // without the checksum, which would catch the cuts
	// Cut before the data: the recipients must not come back partial.
	for n := range len(v) - len("d") {
		if got, err := decodeVersion(0, v[:n], 3); err == nil {
			t.Errorf("decode of %d of %d bytes: %+v, nil", n, len(v), got)
		}
	}
}

func mustGet(t testing.TB, path string, pos uint64) []byte {
	t.Helper()
	db, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var v []byte
	_ = db.View(func(tx *bbolt.Tx) error {
		v = slices.Clone(tx.Bucket(bucketRecords).Get(u64(pos)))
		return nil
	})
	return v
}

func filterTopic(recs []herald.Record, topic string) []herald.Record {
	var out []herald.Record
	for _, r := range recs {
		if slices.Contains(r.Topics, topic) {
			out = append(out, r)
		}
	}
	return out
}
