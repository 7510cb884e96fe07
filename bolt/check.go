package bolt

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"time"

	bbolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// checkLocked checks the structure of the existing file at path (see
// checkStructure) under a shared lock, which fails while another process
// writes it.
func checkLocked(path string, timeout time.Duration) (err error) {
	ro, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true, Timeout: timeout})
	switch {
	case errors.Is(err, bolterrors.ErrTimeout):
		return fmt.Errorf("bolt: %s is locked by another process (or another Open)", path)
	case err != nil:
		return fmt.Errorf("bolt: opening %s: %w (if the file is damaged, restore it from a backup, or delete it to start a fresh history)", path, err)
	}
	defer ro.Close()
	if err := checkStructure(path); err != nil {
		return fmt.Errorf("bolt: %s is damaged (%w): restore it from a backup, or delete it to start a fresh history", path, err)
	}
	return nil
}

// check reads every record and returns the positions of those whose
// checksum fails that no gap covers yet.
func (h *History) check() (corrupt []uint64, err error) {
	err = h.db.View(func(tx *bbolt.Tx) error {
		c := tx.Bucket(bucketRecords).Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if len(k) != 8 {
				return fmt.Errorf("a record key of %d bytes", len(k))
			}
			if _, err := verified(getU64(k), v); err != nil && !lostIn(tx, getU64(k)-1, getU64(k), nil, nil) {
				corrupt = append(corrupt, getU64(k))
			}
		}
		return nil
	})
	return corrupt, err
}

// checkStructure reads the bbolt file at path page by page, as bbolt
// would reach them from the newest sound meta page, and reports the first
// damage: a page out of the file or referenced twice, of the wrong type,
// an element outside its page, keys out of order. bbolt panics on such
// damage (in Open, when it rebuilds the free list, on a goroutine of its
// own that nothing can recover), so Open calls this first, under a shared
// lock of the file. It reads through ReadAt, never a mapping: a cut file
// is an error, not a fault.
func checkStructure(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	c := &checker{f: f, size: fi.Size(), seen: make(map[uint64]bool)}
	return c.run()
}

// bbolt's on-disk layout (go.etcd.io/bbolt/internal/common), in the
// machine's byte order as bbolt writes it.
const (
	pageHeaderSize  = 16 // id u64, flags u16, count u16, overflow u32
	elementSize     = 16 // leaf: flags, pos, ksize, vsize u32; branch: pos, ksize u32, pgid u64
	metaSize        = 64 // magic, version, pageSize, flags u32; root, sequence, freelist, pgid, txid, checksum u64
	bucketHeader    = 16 // root pgid u64, sequence u64
	flagBranch      = 0x01
	flagLeaf        = 0x02
	flagFreelist    = 0x10
	flagBucketEntry = 0x01
	boltMagic       = 0xED0CDAED
	boltVersion     = 2
	noFreelist      = ^uint64(0)
)

var order = binary.NativeEndian

type checker struct {
	f        *os.File
	size     int64
	pageSize int64
	hwm      uint64 // pages below it are allocated
	seen     map[uint64]bool
}

type meta struct {
	pageSize            uint32
	root, freelist, hwm uint64
	txid                uint64
}

// readMeta reads the meta page at off, if it is sound.
func (c *checker) readMeta(off int64) (meta, bool) {
	b := make([]byte, pageHeaderSize+metaSize)
	if _, err := c.f.ReadAt(b, off); err != nil {
		return meta{}, false
	}
	m := b[pageHeaderSize:]
	sum := fnv.New64a()
	sum.Write(m[:56])
	if order.Uint32(m[0:]) != boltMagic || order.Uint32(m[4:]) != boltVersion || sum.Sum64() != order.Uint64(m[56:]) {
		return meta{}, false
	}
	return meta{pageSize: order.Uint32(m[8:]), root: order.Uint64(m[16:]), freelist: order.Uint64(m[32:]), hwm: order.Uint64(m[40:]), txid: order.Uint64(m[48:])}, true
}

func (c *checker) run() error {
	m0, ok0 := c.readMeta(0)
	var m1 meta
	ok1 := false
	if ok0 {
		m1, ok1 = c.readMeta(int64(m0.pageSize))
	} else {
		// Page 0 is damaged: find page 1 as bbolt does, at the usual
		// page sizes.
		for ps := int64(1024); ps <= 1<<16 && !ok1; ps *= 2 {
			m1, ok1 = c.readMeta(ps)
			ok1 = ok1 && int64(m1.pageSize) == ps
		}
	}
	var m meta
	switch {
	case ok0 && ok1 && m1.pageSize == m0.pageSize:
		m = m0
		if m1.txid > m0.txid {
			m = m1
		}
	case ok0:
		m = m0
	case ok1:
		m = m1
	default:
		return errors.New("no sound meta page: not a bbolt file, or both its meta pages are damaged")
	}
	c.pageSize, c.hwm = int64(m.pageSize), m.hwm
	if c.pageSize < 512 || c.pageSize&(c.pageSize-1) != 0 {
		return fmt.Errorf("page size %d", c.pageSize)
	}
	if m.hwm < 2 || int64(m.hwm)*c.pageSize > c.size {
		// bbolt allocates pages in the file before using them: a file
		// shorter than its allocated pages was cut.
		return fmt.Errorf("%d pages allocated, the file holds %d: it was cut", m.hwm, c.size/c.pageSize)
	}
	if m.freelist != noFreelist {
		p, err := c.page(m.freelist)
		if err != nil {
			return err
		}
		if p.flags != flagFreelist {
			return fmt.Errorf("page %d: not a free list", m.freelist)
		}
		n, start := uint64(p.count), pageHeaderSize
		if n == 0xFFFF {
			if len(p.b) < pageHeaderSize+8 {
				return fmt.Errorf("page %d: free list cut", m.freelist)
			}
			n, start = order.Uint64(p.b[pageHeaderSize:]), pageHeaderSize+8
		}
		if n > uint64(len(p.b)-start)/8 {
			return fmt.Errorf("page %d: free list of %d pages does not fit", m.freelist, n)
		}
	}
	_, err := c.walk(m.root, nil, nil)
	return err
}

type page struct {
	flags, count uint16
	b            []byte // the page and its overflow
}

// page reads page id, once: a page reached twice is damage.
func (c *checker) page(id uint64) (page, error) {
	if id < 2 || id >= c.hwm {
		return page{}, fmt.Errorf("page %d: out of bounds (%d pages)", id, c.hwm)
	}
	h := make([]byte, pageHeaderSize)
	if _, err := c.f.ReadAt(h, int64(id)*c.pageSize); err != nil {
		return page{}, fmt.Errorf("page %d: %w", id, cut(err))
	}
	overflow := uint64(order.Uint32(h[12:]))
	if order.Uint64(h) != id || id+overflow >= c.hwm {
		return page{}, fmt.Errorf("page %d: damaged header", id)
	}
	for i := id; i <= id+overflow; i++ {
		if c.seen[i] {
			return page{}, fmt.Errorf("page %d: referenced twice", i)
		}
		c.seen[i] = true
	}
	b := make([]byte, int64(overflow+1)*c.pageSize)
	if _, err := c.f.ReadAt(b, int64(id)*c.pageSize); err != nil {
		return page{}, fmt.Errorf("page %d: %w", id, cut(err))
	}
	return page{flags: order.Uint16(b[8:]), count: order.Uint16(b[10:]), b: b}, nil
}

func cut(err error) error {
	if errors.Is(err, io.EOF) {
		return errors.New("past the end of the file: it was cut")
	}
	return err
}

// walk checks the subtree at page id, whose keys must be >= lo and < hi
// (nil: no bound), and returns its last key.
func (c *checker) walk(id uint64, lo, hi []byte) ([]byte, error) {
	p, err := c.page(id)
	if err != nil {
		return nil, err
	}
	switch p.flags {
	case flagBranch:
		last := lo
		for i := range int(p.count) {
			key, child, err := branchElement(p.b, i)
			if err != nil {
				return nil, fmt.Errorf("page %d: %w", id, err)
			}
			if err := inOrder(i, key, last, hi); err != nil {
				return nil, fmt.Errorf("page %d: %w", id, err)
			}
			next := hi
			if i+1 < int(p.count) {
				if next, _, err = branchElement(p.b, i+1); err != nil {
					return nil, fmt.Errorf("page %d: %w", id, err)
				}
			}
			if last, err = c.walk(child, key, next); err != nil {
				return nil, err
			}
		}
		return last, nil
	case flagLeaf:
		return c.leaf(p.b, int(p.count), lo, hi, fmt.Sprintf("page %d", id))
	}
	return nil, fmt.Errorf("page %d: not a branch nor a leaf (flags %#x)", id, p.flags)
}

// leaf checks the count elements of the leaf page b (a page of the file
// or an inline bucket's), and the buckets they hold.
func (c *checker) leaf(b []byte, count int, lo, hi []byte, where string) ([]byte, error) {
	last := lo
	for i := range count {
		off := pageHeaderSize + i*elementSize
		if off+elementSize > len(b) {
			return nil, fmt.Errorf("%s: element %d outside the page", where, i)
		}
		e := b[off:]
		flags, pos, ksize, vsize := order.Uint32(e), uint64(order.Uint32(e[4:])), uint64(order.Uint32(e[8:])), uint64(order.Uint32(e[12:]))
		start := uint64(off) + pos
		if start+ksize+vsize > uint64(len(b)) {
			return nil, fmt.Errorf("%s: element %d outside the page", where, i)
		}
		key, value := b[start:start+ksize], b[start+ksize:start+ksize+vsize]
		if err := inOrder(i, key, last, hi); err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		last = key
		if flags&flagBucketEntry == 0 {
			continue
		}
		if len(value) < bucketHeader {
			return nil, fmt.Errorf("%s: bucket %q: header cut", where, key)
		}
		if root := order.Uint64(value); root != 0 {
			if _, err := c.walk(root, nil, nil); err != nil {
				return nil, fmt.Errorf("bucket %q: %w", key, err)
			}
			continue
		}
		inline := value[bucketHeader:]
		if len(inline) < pageHeaderSize || order.Uint16(inline[8:]) != flagLeaf {
			return nil, fmt.Errorf("%s: bucket %q: damaged inline page", where, key)
		}
		if _, err := c.leaf(inline, int(order.Uint16(inline[10:])), nil, nil, fmt.Sprintf("bucket %q", key)); err != nil {
			return nil, err
		}
	}
	return last, nil
}

func branchElement(b []byte, i int) (key []byte, child uint64, err error) {
	off := pageHeaderSize + i*elementSize
	if off+elementSize > len(b) {
		return nil, 0, fmt.Errorf("element %d outside the page", i)
	}
	e := b[off:]
	pos, ksize := uint64(order.Uint32(e)), uint64(order.Uint32(e[4:]))
	start := uint64(off) + pos
	if start+ksize > uint64(len(b)) {
		return nil, 0, fmt.Errorf("element %d outside the page", i)
	}
	return b[start : start+ksize], order.Uint64(e[8:]), nil
}

// inOrder checks the key of element i against the previous key (or the
// lower bound, for the first) and the upper bound, as bbolt's own check
// does.
func inOrder(i int, key, prev, hi []byte) error {
	switch {
	case i == 0 && prev != nil && bytes.Compare(prev, key) > 0,
		i > 0 && bytes.Compare(prev, key) >= 0,
		hi != nil && bytes.Compare(key, hi) >= 0:
		return fmt.Errorf("key %d (%x) out of order", i, key)
	}
	return nil
}
