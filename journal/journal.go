package journal

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"duplex/crc32c"
	"duplex/disk"
)

// The on-disk format, described byte by byte in doc.go.
const (
	segmentMagic        = "DXJL"          // part of the on-disk format: never change
	segmentVersion1     = 1               // part of the on-disk format: never change
	segmentHeaderSizeV1 = 16              // part of the on-disk format: never change
	segmentVersion2     = 2               // part of the on-disk format: never change
	segmentVersion3     = 3               // part of the on-disk format: never change
	segmentVersion      = segmentVersion3 // the version of the segments Append creates
	segmentHeaderSize   = 24              // part of the on-disk format: never change
	saltSize            = 8               // part of the on-disk format: never change
	recordHeaderSize    = 16              // part of the on-disk format: never change
	recordAlign         = 8               // part of the on-disk format: never change
	gappedMark          = math.MaxUint32  // part of the on-disk format: never change
	gappedHeaderSize    = 32              // part of the on-disk format: never change
	gapEntrySize        = 8               // part of the on-disk format: never change
	maxGap              = 4096            // part of the on-disk format: never change
	segmentExt          = ".seg"          // part of the on-disk format: never change
	segmentNameDigits   = 16              // part of the on-disk format: never change
	spareName           = "spare"         // part of the directory layout: never change
)

// newSalt is a new segment's salt: random, so that no record of a file's
// earlier life, nor any copy of one in the data, can pass the checksum
// of its next (tests replace it to write golden bytes).
var newSalt = func() (salt [saltSize]byte) {
	binary.BigEndian.PutUint64(salt[:], rand.Uint64())
	return salt
}

// castagnoli is the CRC-32C table (part of the on-disk format: never change).
// Castagnoli rather than IEEE because it detects more error patterns at this
// record size and has hardware support on amd64 and arm64.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Defaults for the zero Options fields.
const (
	DefaultSegmentSize = 64 << 20
	DefaultMaxRecord   = 256 << 20
)

// lockName is a file inside the journal directory that Open holds an
// exclusive lock on, so two processes can never append to one journal.
const lockName = "LOCK"

// copyThreshold is the record size up to which Append copies the record into
// one buffer and issues a single write; above it the copy would cost more
// than the two extra system calls. A variable so that tests can make small
// records with gaps.
var copyThreshold = 64 << 10

// inPlaceMin is the smallest part of a record that a direct write takes
// from where it lies rather than copying it into the journal's aligned
// buffer (the grain's bytes at either end are copied all the same). A
// part written in place costs a gap of up to a grain on the disk, an entry
// in its record's gap table, the pinning of its pages by the kernel, and
// segments of its own in the requests to the device: a group of 800 4 KiB
// updates so written took 1.5-2 times as long to write and sync as
// copied, and 0.1-0.5 µs more CPU a write, and no less with each update on
// a 512-byte boundary of its frame, so that nothing of it is copied
// (BenchmarkAppendSyncGroup4KiB, -inplace and -inplace-aligned): below
// this size the copy is the cheaper way. A variable so that a benchmark
// can compare with a journal that copies every byte.
var inPlaceMin = 64 << 10

var (
	// ErrTornTail reports a record cut short by the end of its segment file.
	// Open never returns it: it truncates a torn tail of the last segment,
	// the only place an interrupted Append can leave one, and calls one
	// anywhere else ErrCorrupt. Replay returns it if a segment has been
	// shortened underneath the Journal since Open.
	ErrTornTail = errors.New("torn record at end of journal")
	// ErrCorrupt reports damage that a crash cannot explain: a bad record
	// before the last segment, an index discontinuity, or a malformed segment
	// header. Nothing is repaired: the caller must decide.
	ErrCorrupt = errors.New("journal corrupt")
)

var errClosed = errors.New("journal closed")

// Options tunes a Journal. The zero value selects the defaults.
type Options struct {
	// SegmentSize is the size at which the current segment is closed and a
	// new one begun (default 64 MiB). Smaller segments let Release return
	// space sooner; larger ones mean fewer files and directory fsyncs.
	SegmentSize int64
	// MaxRecord is the largest record Append accepts and Open and Replay
	// read back (default 256 MiB, at most 4 GiB-2). A length field above it
	// is treated as corruption, which bounds what a damaged file can make
	// the reader allocate. Reopening with a smaller MaxRecord than records
	// were written with makes Open fail rather than drop them.
	MaxRecord int
	// FS is the file system the journal lives on (default disk.OS).
	FS disk.FS
	// LargestRecord, if set, is the largest record the caller will append
	// in practice (MaxRecord only bounds what a damaged file can make the
	// reader allocate). Open then checks that the file system has room for
	// what the journal needs (see Needs) and, when SegmentSize is 0, sizes
	// segments to fit a small file system.
	LargestRecord int64
	// Buffered makes the journal write through the page cache even where
	// the file system takes direct writes (see doc.go, "Direct writes").
	Buffered bool
	// Logger says, once, that the file system refused a direct write and
	// the journal writes through the page cache from then on (default
	// slog.Default()).
	Logger *slog.Logger
}

// MinSegmentSize is the smallest segment that Open chooses when it sizes
// segments to fit the file system.
const MinSegmentSize = 1 << 20

// Needs is the space a journal must be able to allocate: the active segment,
// which is never released, and the one before it, which stays until the
// records in it are released, each up to segmentSize and overrunning it by up
// to one record (a segment is closed only once it reaches segmentSize) as it
// lies on the disk (RecordSpace), in whole blocks of the file system.
// Segments released at once leave nothing more behind.
func Needs(segmentSize, largestRecord int64) int64 {
	return 2 * (segmentSize + RecordSpace(largestRecord) + directAlign)
}

// RecordSpace bounds the room a record of n bytes of data takes in a
// segment: its header and padding and, for a record that can have gaps
// (see doc.go, "Records with gaps": only one of more than 64 KiB, a gap
// before each of its parts of at least 64 KiB), a gap table entry and a
// gap of the coarsest grain's (4095 bytes) for every 64 KiB of it, up to
// 6.3 % more than its data. A record of at most 64 KiB is charged no gap.
func RecordSpace(n int64) int64 {
	n = max(n, 0)
	plain := recordHeaderSize + n + int64(padding(int(n%recordAlign)))
	if n <= int64(copyThreshold) || inPlaceMin <= 0 {
		return plain
	}
	parts := n / int64(inPlaceMin)
	if parts == 0 {
		return plain
	}
	onDisk := n + parts*(maxGap-1)
	return max(plain, gappedHeaderSize+parts*gapEntrySize+onDisk+int64(padding(int(onDisk%recordAlign))))
}

// segment is one segment file as the Journal knows it.
type segment struct {
	first, last uint64 // indexes of its first and last record
	size        int64  // bytes on disk, header included
	path        string
	hdr         int64  // its header's size: where its first record starts
	seed        uint32 // its records' checksums start from: the salt's CRC
	gaps        bool   // its records may have gaps (version 3)
}

// header returns the segment header of a new segment whose first record is
// first, and the segment as it is before any record.
func newHeader(first uint64, path string) ([]byte, segment) {
	salt := newSalt()
	h := make([]byte, 0, segmentHeaderSize)
	h = append(h, segmentMagic...)
	h = binary.BigEndian.AppendUint32(h, segmentVersion)
	h = binary.BigEndian.AppendUint64(h, first)
	h = append(h, salt[:]...)
	return h, segment{first: first, last: first - 1, path: path, hdr: segmentHeaderSize, seed: crc32.Update(0, castagnoli, salt[:]), gaps: true}
}

// Journal is an open journal directory. Its methods are safe for concurrent
// use; Replay reads without holding the lock, so fn may call other methods.
type Journal struct {
	dir  string
	opts Options
	fs   disk.FS
	lock io.Closer

	// releasing is held by Release while it removes segments without mu,
	// and by Close, which waits for it: removals never overlap, nor
	// outlive the directory lock.
	releasing sync.Mutex
	// dirMu orders the fsyncs of the directory, Release's (without mu)
	// and syncLocked's (with it, taken after mu). dirErr, guarded by it,
	// is the first that failed: every later one fails with it, since one
	// that succeeds from a new descriptor proves nothing (see Sync).
	dirMu  sync.Mutex
	dirErr error
	mu     sync.Mutex
	segs   []segment // oldest first; the last one is the active segment
	// bytes is the total size of segs, kept apart from mu so that Bytes
	// (status) never waits for a write or fsync under way.
	bytes    atomic.Int64
	f        disk.File // the active segment, nil while the journal is empty
	parts    [][]byte  // append's pieces of a record, reused
	dirDirty bool      // a segment was created since the directory was last fsynced
	// synced is how much of the active segment the last fsync that
	// succeeded covered, through record syncedLast: a failed one cuts it
	// back to that (cutUnsynced).
	synced     int64
	syncedLast uint64
	buf        []byte
	err        error // sticky: set when the state on disk is no longer known
	// direct is set while f takes O_DIRECT writes. Those go through dbuf,
	// whose first tail bytes are always the active segment's bytes from the
	// last directAlign boundary to its end: each write starts at that
	// boundary and rewrites them unchanged.
	direct bool
	dbuf   []byte
	tail   int
	// grain is the alignment of the pieces of a direct write to f
	// (disk.DirectGrain), 0 while it takes none: a part of a record is
	// written from where it lies when it agrees with its place in the
	// file modulo the grain, which the gaps of a record see to.
	grain int
	iovs  [][]byte // write's pieces, reused
	// copied counts the bytes direct writes copied into dbuf rather than
	// taking them where they lay.
	copied int64
	// refused is set once the file system refused a direct write (EINVAL)
	// of a file it said takes them: no segment is written directly again.
	// refusedGrain is the grain the file system said it takes, for the log.
	refused      bool
	refusedGrain int
	closed       bool
	fit          bool // Open sized the segments to the file system
	// spare is set while the directory holds a released segment's file
	// under spareName, of spareSize bytes, its header zeroed and its name
	// durable: the next segment is that file renamed, written over in
	// place, rather than a new one (see doc.go, Recycling).
	spare     bool
	spareSize int64
	// long is set while the active segment's file may reach past its
	// records (it was a spare): it is cut to them before it is closed.
	long bool
}

// Open opens the journal in dir, creating dir if needed, and recovers it.
// A torn tail of the last segment is truncated away (it can only hold data
// that no Sync covered); any other damage makes Open fail with an error
// wrapping ErrCorrupt, because dropping data in the middle of the log would
// silently lose consistency groups that had been acknowledged.
//
// Open takes an exclusive lock on dir that lasts until Close, so a second
// Open of the same directory, from this process or another, fails.
func Open(dir string, opts Options) (*Journal, error) {
	if opts.SegmentSize < 0 {
		return nil, fmt.Errorf("journal %s: negative SegmentSize %d", dir, opts.SegmentSize)
	}
	if opts.LargestRecord < 0 {
		return nil, fmt.Errorf("journal %s: negative LargestRecord %d", dir, opts.LargestRecord)
	}
	fitSegments := opts.SegmentSize == 0 && opts.LargestRecord > 0
	if opts.SegmentSize == 0 {
		opts.SegmentSize = DefaultSegmentSize
	}
	// 4 GiB-1 is no length: it marks a record with gaps.
	if opts.MaxRecord < 0 || uint64(opts.MaxRecord) >= gappedMark {
		return nil, fmt.Errorf("journal %s: MaxRecord %d out of range [0, %d]", dir, opts.MaxRecord, uint64(gappedMark-1))
	}
	if opts.MaxRecord == 0 {
		opts.MaxRecord = DefaultMaxRecord
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}

	fsys := disk.Or(opts.FS)
	created := false
	if _, err := fsys.Stat(dir); errors.Is(err, os.ErrNotExist) {
		created = true
	}
	if err := fsys.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("journal %s: %w", dir, err)
	}
	if created {
		// Without this the directory entry, and with it every segment
		// synced into it, could vanish in a crash.
		if err := fsys.SyncDir(filepath.Dir(filepath.Clean(dir))); err != nil {
			return nil, fmt.Errorf("journal %s: %w", dir, err)
		}
	}

	lock, err := fsys.Lock(filepath.Join(dir, lockName))
	if err != nil {
		return nil, fmt.Errorf("journal %s: %w (is the journal already open?)", dir, err)
	}
	j := &Journal{dir: dir, opts: opts, fs: fsys, lock: lock, fit: fitSegments}
	if err := j.recover(); err != nil {
		if j.f != nil {
			j.f.Close()
		}
		lock.Close()
		return nil, err
	}
	j.countBytes()
	if opts.LargestRecord > 0 {
		if err := j.checkRoom(math.MaxUint64); err != nil {
			j.Close()
			return nil, err
		}
	}
	return j, nil
}

// checkRoom refuses a journal whose file system cannot hold what it needs and,
// if Open sizes segments, sizes them to the room there is. The segments but
// the active one all of whose records have index <= through count as room,
// since Release(through) would delete them; the active one never is.
func (j *Journal) checkRoom(through uint64) error {
	free, err := j.fs.Available(j.dir)
	if err != nil {
		return fmt.Errorf("journal %s: %w", j.dir, err)
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	var releasable int64
	for i := 0; i < len(j.segs)-1 && j.segs[i].last <= through; i++ {
		releasable += j.segs[i].size
	}
	if j.spare {
		// Taken by the next segment instead of new space.
		releasable += j.spareSize
	}
	room := free + releasable
	largest := j.opts.LargestRecord
	if j.fit {
		// A quarter of what is left after two records: the two segments
		// take half, and the other half is headroom for other users of the
		// file system and for segments not yet released.
		j.opts.SegmentSize = min(DefaultSegmentSize, max(MinSegmentSize, (room-2*largest)/4))
	}
	if need := Needs(j.opts.SegmentSize, largest); need > room {
		return fmt.Errorf("journal %s needs %s (2 segments of %s, the active one and the one before it, "+
			"plus room for 2 records of up to %s with their headers and gaps) but its file system has %s free and %s in segments to release: "+
			"free space, or put the journal on a larger file system",
			j.dir, mib(need), mib(j.opts.SegmentSize), mib(largest), mib(free), mib(releasable))
	}
	return nil
}

// CheckRoom is Open's check of the room the journal needs, for a caller that
// will release only the records with index <= through: segments holding a
// later record are not room, however long the journal. Open, which cannot
// know what its caller will keep, counts every segment but the active one.
// Without Options.LargestRecord there is nothing to check. If Open sized the
// segments, CheckRoom sizes them again to the room it finds.
func (j *Journal) CheckRoom(through uint64) error {
	j.mu.Lock()
	err := j.usable()
	j.mu.Unlock()
	if err != nil {
		return err
	}
	if j.opts.LargestRecord <= 0 {
		return nil
	}
	return j.checkRoom(through)
}

// SegmentSize is the size at which segments are closed, as Open chose it.
func (j *Journal) SegmentSize() int64 {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.opts.SegmentSize
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// recover scans every segment and leaves j describing the valid log. The
// last one, the only one that can hold records no fsync covered, is read
// from the device (O_DIRECT) where its file system takes that: pages
// whose writeback failed are clean in the page cache without being on the
// disk, and read through it their records would count as journaled (see
// doc.go, Recovery).
func (j *Journal) recover() error {
	firsts, err := listSegments(j.fs, j.dir)
	if err != nil {
		return fmt.Errorf("journal %s: %w", j.dir, err)
	}
	removed := false
	for i, first := range firsts {
		isLast := i == len(firsts)-1
		path := filepath.Join(j.dir, segmentName(first))
		var prev *segment
		if len(j.segs) > 0 {
			prev = &j.segs[len(j.segs)-1]
		}
		seg, ok, err := j.scanSegment(path, first, prev, isLast)
		if err != nil {
			return err
		}
		if !ok {
			// A last segment without a single complete record holds nothing
			// any Sync covered; keeping it would pin the first index of an
			// empty journal to whatever was being written when it crashed.
			if err := j.fs.Remove(path); err != nil {
				return fmt.Errorf("journal %s: %w", path, err)
			}
			removed = true
			continue
		}
		j.segs = append(j.segs, seg)
	}
	// A spare left by the last process may have been interrupted before
	// its header was zeroed: it is not used, only removed.
	spare := filepath.Join(j.dir, spareName)
	if _, err := j.fs.Stat(spare); err == nil {
		if err := j.fs.Remove(spare); err != nil {
			return fmt.Errorf("journal %s: %w", spare, err)
		}
		removed = true
	}
	if removed || len(j.segs) > 0 {
		// With the last segment's name, below: see its fsync.
		if err := j.fs.SyncDir(j.dir); err != nil {
			return fmt.Errorf("journal %s: %w", j.dir, err)
		}
	}
	if len(j.segs) > 0 {
		active := j.segs[len(j.segs)-1]
		f, err := j.fs.OpenFile(active.path, os.O_RDWR, 0)
		if err != nil {
			return fmt.Errorf("journal %s: %w", active.path, err)
		}
		j.f = f
		// A process killed between an Append and its Sync leaves the
		// record where this one reads it (the page cache, or a device's
		// volatile cache after a direct write) but not on the disk, in a
		// segment whose name may not be either. The caller takes every
		// record Open reports as journaled (the secondary welcomes its
		// primary at the last one, and the primary lets go of all before
		// it), so a power loss after Open must not take one back.
		if err := f.Sync(); err != nil {
			return fmt.Errorf("journal %s: %w", active.path, err)
		}
		j.synced, j.syncedLast = active.size, active.last
		if err := j.useDirect(active.size); err != nil {
			return fmt.Errorf("journal %s: %w", active.path, err)
		}
	}
	return nil
}

// useDirect switches j.f, the active segment with size bytes of records,
// to direct writes if its file system takes them, first reading into dbuf
// the bytes the next write must rewrite (a direct file is read aligned).
func (j *Journal) useDirect(size int64) error {
	j.direct, j.tail, j.grain = false, 0, 0
	if j.opts.Buffered || j.refused {
		return nil
	}
	tail := int(size % directAlign)
	if tail > 0 {
		j.growBuf(tail)
		if _, err := j.f.ReadAt(j.dbuf[:tail], size-int64(tail)); err != nil {
			return err
		}
	}
	grain := setDirect(j.f)
	if grain == 0 {
		j.dbuf = nil
		return nil
	}
	j.direct, j.tail, j.grain = true, tail, grain
	return nil
}

// scanSegment verifies one segment file. For the last segment it truncates
// a torn tail; ok is false when the last segment has no complete record and
// should be removed. prev, if not nil, is the segment this one must continue.
func (j *Journal) scanSegment(path string, nameFirst uint64, prev *segment, isLast bool) (seg segment, ok bool, err error) {
	corrupt := func(off int64, format string, args ...any) error {
		return fmt.Errorf("journal %s: offset %d: %w: %s", path, off, ErrCorrupt, fmt.Sprintf(format, args...))
	}
	flag := os.O_RDONLY
	if isLast {
		// From the device, not the page cache (see recover).
		flag = os.O_RDWR | oDirect
	}
	f, err := j.fs.OpenFile(path, flag, 0)
	if err != nil && flag&oDirect != 0 && errors.Is(err, syscall.EINVAL) {
		// A file system that refuses O_DIRECT at open.
		flag &^= oDirect
		f, err = j.fs.OpenFile(path, flag, 0)
	}
	if err != nil {
		return seg, false, fmt.Errorf("journal %s: %w", path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return seg, false, fmt.Errorf("journal %s: %w", path, err)
	}
	size := st.Size()
	var r io.ReaderAt = f
	if flag&oDirect != 0 && keepDirect(f) {
		r = newDeviceReader(f, size)
		_, err := r.ReadAt(make([]byte, 1), 0)
		switch {
		case errors.Is(err, syscall.EINVAL):
			// A file system that says it takes direct I/O and refuses it
			// is read through the page cache, as one that says it takes
			// none (see doc.go, Recovery).
			if err := setBuffered(f); err != nil {
				return seg, false, fmt.Errorf("journal %s: direct read refused, and O_DIRECT could not be cleared: %w", path, err)
			}
			r = f
		case err != nil && err != io.EOF:
			// Such as the failed writeback of its dirty pages that a
			// direct read makes first.
			return seg, false, fmt.Errorf("journal %s: %w", path, err)
		}
	}

	var hdr [segmentHeaderSize]byte
	if size < segmentHeaderSizeV1 {
		if isLast {
			return seg, false, nil
		}
		return seg, false, corrupt(0, "segment of %d bytes has no complete header", size)
	}
	if _, err := r.ReadAt(hdr[:min(size, segmentHeaderSize)], 0); err != nil {
		return seg, false, fmt.Errorf("journal %s: %w", path, err)
	}
	// The header is written in one piece, within one sector, before any
	// record, so a crash leaves it either whole or as it was before: never
	// written, or zeroed in a spare (see doc.go, Recycling).
	if isLast && [segmentHeaderSizeV1]byte(hdr[:segmentHeaderSizeV1]) == [segmentHeaderSizeV1]byte{} {
		return seg, false, nil
	}
	if string(hdr[0:4]) != segmentMagic {
		return seg, false, corrupt(0, "bad magic %q", hdr[0:4])
	}
	switch v := binary.BigEndian.Uint32(hdr[4:8]); v {
	case segmentVersion1:
		seg.hdr = segmentHeaderSizeV1
	case segmentVersion2, segmentVersion3:
		if size < segmentHeaderSize {
			if isLast {
				return seg, false, nil
			}
			return seg, false, corrupt(0, "segment of %d bytes has no complete header", size)
		}
		seg.hdr = segmentHeaderSize
		seg.seed = crc32.Update(0, castagnoli, hdr[segmentHeaderSizeV1:segmentHeaderSize])
		seg.gaps = v == segmentVersion3
	default:
		return seg, false, corrupt(4, "unsupported version %d", v)
	}
	first := binary.BigEndian.Uint64(hdr[8:16])
	if first != nameFirst {
		return seg, false, corrupt(8, "header first index %d does not match file name", first)
	}
	if first == 0 {
		return seg, false, corrupt(8, "first index 0")
	}
	if prev != nil && (prev.last == math.MaxUint64 || first != prev.last+1) {
		return seg, false, corrupt(8, "index discontinuity: segment starts at %d, previous segment ends at %d", first, prev.last)
	}

	rr := newRecordReader(r, seg, size, j.opts.MaxRecord)
	expect := first
	n := 0
	for {
		off := rr.off
		index, err := rr.verify()
		if err == io.EOF {
			break
		}
		var bad *badRecord
		if errors.As(err, &bad) {
			if bad.tooLong {
				// The record is complete and its checksum holds, so no
				// crash made it: only a smaller MaxRecord than it was
				// written with. Truncating would destroy real data.
				return seg, false, corrupt(off, "%s (record is intact: reopen with a larger MaxRecord)", bad.reason)
			}
			if !isLast {
				return seg, false, corrupt(off, "%s", bad.reason)
			}
			if err := f.Truncate(off); err != nil {
				return seg, false, fmt.Errorf("journal %s: %w", path, err)
			}
			if err := f.Sync(); err != nil {
				return seg, false, fmt.Errorf("journal %s: %w", path, err)
			}
			size = off
			break
		}
		if err != nil {
			return seg, false, fmt.Errorf("journal %s: offset %d: %w", path, off, err)
		}
		if index != expect {
			return seg, false, corrupt(off, "index discontinuity: record %d, want %d", index, expect)
		}
		if expect == math.MaxUint64 && rr.off < size {
			return seg, false, corrupt(rr.off, "record after index %d", uint64(math.MaxUint64))
		}
		expect++
		n++
	}
	if n == 0 {
		if isLast {
			return seg, false, nil
		}
		return seg, false, corrupt(seg.hdr, "segment has no records")
	}
	seg.first, seg.last, seg.size, seg.path = first, expect-1, size, path
	return seg, true, nil
}

// Append adds a record to the log. index must be LastIndex()+1, or any
// index but 0 when the journal is empty. The record is not durable until
// Sync returns. After a failed write the Journal refuses further writes, as
// after a failed Sync; reopen it to recover.
func (j *Journal) Append(index uint64, data []byte) error {
	return j.append(index, [][]byte{data}, len(data), crc32c.Checksum(data))
}

// AppendSum is Append for a caller that already has sum, the CRC-32C of
// data (crc32.Checksum(data, crc32.MakeTable(crc32.Castagnoli))): the
// record's checksum is combined from it, so the data is not read again. A
// wrong sum makes a record that Open drops or calls corrupt, so sum must
// come from the bytes themselves, as consistency.EncodeGroupSum's does.
func (j *Journal) AppendSum(index uint64, data []byte, sum uint32) error {
	return j.AppendParts(index, [][]byte{data}, sum)
}

// AppendParts is AppendSum for a record whose data is parts joined: they
// are written where they are, with one vectored write, rather than copied
// into one buffer first (consistency.EncodeGroupParts leaves the updates'
// data in the frames it arrived in). The record is the same as Append of
// the joined bytes; sum is their CRC-32C.
func (j *Journal) AppendParts(index uint64, parts [][]byte, sum uint32) error {
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	return j.append(index, parts, n, sum)
}

// append adds the record whose data is data joined, n bytes whose CRC-32C
// is sum.
func (j *Journal) append(index uint64, data [][]byte, n int, sum uint32) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	defer j.countBytes()
	if err := j.usable(); err != nil {
		return err
	}
	if n > j.opts.MaxRecord {
		return fmt.Errorf("journal %s: record %d of %d bytes exceeds MaxRecord %d", j.dir, index, n, j.opts.MaxRecord)
	}
	if index == 0 {
		// 0 is what FirstIndex and LastIndex report for an empty journal.
		return fmt.Errorf("journal %s: index 0 is reserved", j.dir)
	}
	if k := len(j.segs); k > 0 && index != j.segs[k-1].last+1 {
		return fmt.Errorf("journal %s: append of index %d, want %d", j.dir, index, j.segs[k-1].last+1)
	}

	k := len(j.segs)
	roll := k == 0 || j.segs[k-1].size >= j.opts.SegmentSize
	var (
		hdr  []byte
		next segment
	)
	if roll {
		hdr, next = newHeader(index, filepath.Join(j.dir, segmentName(index)))
	} else {
		next = j.segs[k-1]
	}

	// j.buf holds room for a segment header, then the record header and,
	// for small records, the data and padding.
	pad := padding(n)
	j.buf = j.buf[:0]
	j.buf = append(j.buf, make([]byte, segmentHeaderSize)...)
	parts := j.parts[:0]
	at := next.size
	if roll {
		at = segmentHeaderSize
	}
	if gaps := j.planGaps(next, data, at); gaps != nil {
		parts = j.appendGapped(parts, next.seed, index, data, n, sum, gaps)
	} else {
		j.buf = binary.BigEndian.AppendUint32(j.buf, uint32(n))
		j.buf = binary.BigEndian.AppendUint32(j.buf, recordSum(next.seed, index, nil, sum, n))
		j.buf = binary.BigEndian.AppendUint64(j.buf, index)
		if n <= copyThreshold {
			for _, p := range data {
				j.buf = append(j.buf, p...)
			}
			j.buf = append(j.buf, zeros[:pad]...)
			parts = append(parts, nil)
		} else {
			parts = append(parts, nil)
			parts = append(parts, data...)
			parts = append(parts, zeros[:pad])
		}
	}
	// Not kept past this call: the parts alias the caller's buffers.
	defer func() { clear(parts); j.parts = parts[:0] }()

	if roll {
		copy(j.buf, hdr)
		parts[0] = j.buf
		return j.startSegment(next, parts)
	}
	parts[0] = j.buf[segmentHeaderSize:]
	active := &j.segs[k-1]
	written, err := j.write(j.f, parts, active.size)
	if err != nil {
		// Sticky: a failed write may have left pages the kernel will
		// never write, whose loss only a later fsync would report, and a
		// disk that is full stays full until someone frees space. The
		// partial record is cut off so that a reopen finds a clean tail.
		j.err = fmt.Errorf("journal %s: %w", active.path, err)
		if terr := j.f.Truncate(active.size); terr != nil {
			j.err = fmt.Errorf("journal %s: append failed (%w) and could not be undone: %v", active.path, err, terr)
		}
		return j.err
	}
	active.size += written
	active.last = index
	return nil
}

// startSegment creates seg, a segment before its first record, and writes
// parts (segment header and first record) to it.
func (j *Journal) startSegment(seg segment, parts [][]byte) error {
	if j.f != nil {
		// Every segment but the last must be wholly on disk before its
		// successor can exist: that is what lets Open call a bad record in
		// an earlier segment corruption rather than a torn write. The
		// directory is synced too so that no segment's name is lost while
		// a later one's survives, which would look like a gap.
		if err := j.trimLocked(); err != nil {
			return err
		}
		if err := j.syncLocked(); err != nil {
			return err
		}
	}
	path := seg.path
	f, recycled, err := j.createSegment(path)
	if err != nil {
		// Sticky like a failed write (see Append).
		j.err = fmt.Errorf("journal %s: %w", path, err)
		return j.err
	}
	old, oldDirect, oldTail, oldLong, oldGrain := j.f, j.direct, j.tail, j.long, j.grain
	grain := 0
	if !j.opts.Buffered && !j.refused {
		grain = setDirect(f)
	}
	j.f, j.direct, j.tail, j.long, j.grain = f, grain != 0, 0, recycled, grain
	written, err := j.write(f, parts, 0)
	if err != nil {
		f.Close()
		j.f, j.direct, j.tail, j.long, j.grain = old, oldDirect, oldTail, oldLong, oldGrain
		j.err = fmt.Errorf("journal %s: %w", path, err)
		if rerr := j.fs.Remove(path); rerr != nil {
			j.err = fmt.Errorf("journal %s: creating segment failed (%w) and could not be undone: %v", path, err, rerr)
		}
		return j.err
	}
	if old != nil {
		// The old segment was just fsynced, so closing it can lose nothing.
		old.Close()
	}
	seg.last, seg.size = seg.first, written
	j.segs = append(j.segs, seg)
	j.dirDirty, j.synced, j.syncedLast = true, 0, seg.first-1
	return nil
}

// createSegment opens the file of a new segment at path: the spare renamed,
// if there is one (recycled), or a new file. Either way no fsync of the
// directory covers its name yet, and the first Sync makes one (dirDirty).
// A crash before that leaves the spare under its own name or under the
// new one; the header is written before any record, and the spare's was
// zeroed, so the segment is either well formed or has a zero header, and
// Open removes it. Called with j.mu held.
func (j *Journal) createSegment(path string) (f disk.File, recycled bool, err error) {
	if j.spare {
		j.spare = false
		err := j.fs.Rename(filepath.Join(j.dir, spareName), path)
		if err == nil {
			f, err := j.fs.OpenFile(path, os.O_RDWR, 0)
			return f, true, err
		}
		// A spare removed by hand (a file named spare on a full disk)
		// leaves a new file to make, as there would be without one.
		if !errors.Is(err, os.ErrNotExist) {
			return nil, false, err
		}
	}
	f, err = j.fs.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	return f, false, err
}

// Sync makes every appended record durable: it fsyncs the active segment,
// and the directory if a segment was created since the last Sync. After a
// failed Sync the Journal refuses further writes, because the kernel may
// have dropped the dirty pages and a retried fsync could then succeed
// without the data ever reaching the disk; reopen it to recover.
func (j *Journal) Sync() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if err := j.usable(); err != nil {
		return err
	}
	return j.syncLocked()
}

func (j *Journal) syncLocked() error {
	if j.f == nil {
		return nil
	}
	// fdatasync: the size and blocks of the file are in it, and a
	// recycled file, written over in place, then costs no commit of the
	// file system's journal for its modification time.
	if err := disk.Datasync(j.f); err != nil {
		j.err = j.cutUnsynced(j.synced, fmt.Errorf("journal %s: %w", j.f.Name(), err))
		return j.err
	}
	active := j.segs[len(j.segs)-1]
	j.synced, j.syncedLast = active.size, active.last
	if j.dirDirty {
		if err := j.syncDir(); err != nil {
			// The active segment is the one created since: its name
			// may not be on the disk, and its records with it.
			j.err = j.cutUnsynced(0, err)
			return j.err
		}
		j.dirDirty = false
	}
	return nil
}

// cutUnsynced truncates the active segment to size, the part of it that
// an fsync covered, after err, a failed fsync. The kernel may have marked
// the pages it could not write clean, and they read back as written until
// evicted: an Open before a reboot, in this process or another, that
// reads through the page cache (on a file system that takes no direct
// I/O; see recover) would find the records no fsync covered and report
// them journaled, and the caller would acknowledge what the disk does not
// hold. Truncated, they are gone from the page cache too; an empty segment
// is the last one, which Open removes. Called with j.mu held.
func (j *Journal) cutUnsynced(size int64, err error) error {
	active := &j.segs[len(j.segs)-1]
	if active.size == size {
		return err
	}
	if terr := j.f.Truncate(size); terr != nil {
		return fmt.Errorf("%w; the records it covered could not be cut off, and a reopen before a reboot may find them: %v", err, terr)
	}
	if size == 0 {
		// j.f stays open on it until Close: nothing is written any more.
		j.segs = j.segs[:len(j.segs)-1]
	} else {
		active.size, active.last = size, j.syncedLast
	}
	j.countBytes()
	return err
}

// syncDir fsyncs the directory, unless an fsync of it failed before.
func (j *Journal) syncDir() error {
	j.dirMu.Lock()
	defer j.dirMu.Unlock()
	if j.dirErr != nil {
		return j.dirErr
	}
	if err := j.fs.SyncDir(j.dir); err != nil {
		j.dirErr = fmt.Errorf("journal %s: %w", j.dir, err)
		return j.dirErr
	}
	return nil
}

// Replay calls fn, in index order, for every record with index > after,
// up to the LastIndex at the time of the call. Records before FirstIndex
// have been released and are not replayed: a caller that needs them all
// should check FirstIndex() <= after+1 first. fn may keep data. An error
// from fn stops the replay and is returned as is.
//
// Replay checks every record it returns against its checksum again, since
// the disk may have changed since Open. It does not hold the Journal's lock
// while reading or calling fn; a concurrent Release of records that Replay
// still has to read makes it fail.
func (j *Journal) Replay(after uint64, fn func(index uint64, data []byte) error) error {
	j.mu.Lock()
	if j.closed {
		j.mu.Unlock()
		return fmt.Errorf("journal %s: %w", j.dir, errClosed)
	}
	var segs []segment
	for _, s := range j.segs {
		if s.last > after {
			segs = append(segs, s)
		}
	}
	maxRecord := j.opts.MaxRecord
	j.mu.Unlock()

	for _, s := range segs {
		if err := replaySegment(j.fs, s, after, maxRecord, fn); err != nil {
			return err
		}
	}
	return nil
}

func replaySegment(fsys disk.FS, s segment, after uint64, maxRecord int, fn func(uint64, []byte) error) error {
	f, err := fsys.OpenFile(s.path, os.O_RDONLY, 0)
	if err != nil {
		return fmt.Errorf("journal %s: %w", s.path, err)
	}
	defer f.Close()
	rr := newRecordReader(f, s, s.size, maxRecord)
	for expect := s.first; ; expect++ {
		off := rr.off
		var (
			index uint64
			data  []byte
		)
		if expect > after {
			index, data, err = rr.read()
		} else {
			index, err = rr.skip()
		}
		var bad *badRecord
		switch {
		case err == io.ErrUnexpectedEOF || errors.As(err, &bad) && bad.short:
			return fmt.Errorf("journal %s: offset %d: %w", s.path, off, ErrTornTail)
		case errors.As(err, &bad):
			return fmt.Errorf("journal %s: offset %d: %w: %s", s.path, off, ErrCorrupt, bad.reason)
		case err == io.EOF:
			return fmt.Errorf("journal %s: offset %d: %w: segment ends before record %d", s.path, off, ErrTornTail, expect)
		case err != nil:
			return fmt.Errorf("journal %s: offset %d: %w", s.path, off, err)
		}
		if index != expect {
			return fmt.Errorf("journal %s: offset %d: %w: index discontinuity: record %d, want %d", s.path, off, ErrCorrupt, index, expect)
		}
		if expect > after {
			if err := fn(index, data); err != nil {
				return err
			}
		}
		if expect == s.last {
			return nil
		}
	}
}

// Release deletes every segment file, other than the active one, all of
// whose records have index <= through, and fsyncs the directory. Records
// are released a whole segment at a time, so some with index <= through
// may remain; FirstIndex says where the log now starts. While there is no
// spare and room for one, the first segment released is kept as the spare
// instead of deleted (see doc.go, Recycling).
//
// Appends and Syncs go on while it removes a segment and fsyncs the
// directory: a file system that discards a file's blocks as it frees them
// takes tens of milliseconds over a segment, and the directory's fsync
// waits for the device's cache flush, which the secondary's every
// acknowledgement would otherwise wait for too. Only the oldest segment is
// ever removed and never the active one, so nothing an Append touches is
// removed under it. The one Sync that waits is the first after a new
// segment, which fsyncs the directory too: never beside a failed fsync of
// it (see Sync), it waits for one of Release's under way.
func (j *Journal) Release(through uint64) error {
	j.releasing.Lock()
	defer j.releasing.Unlock()
	for {
		j.mu.Lock()
		if err := j.usable(); err != nil {
			j.mu.Unlock()
			return err
		}
		if len(j.segs) < 2 || j.segs[0].last > through {
			j.mu.Unlock()
			return nil
		}
		// Dropped before its file goes, so that FirstIndex, and the
		// segments a Replay starts with, never name a file that is gone: a
		// reader that finds one gone tells by FirstIndex that it was
		// released (history's read views do).
		oldest := j.segs[0]
		j.segs = append(j.segs[:0:0], j.segs[1:]...)
		j.countBytes()
		// Only Release makes a spare, one at a time (j.releasing): while
		// there is none, nothing uses the spare's name.
		recycle := !j.spare
		j.mu.Unlock()
		recycle = recycle && j.roomForSpare()
		// Oldest first, each removal made durable before the next: a crash
		// then leaves a suffix of the log, never a hole that the next Open
		// would have to call corruption. A segment kept as the spare is
		// removed from the log as surely, by its rename.
		var err error
		if recycle {
			err = j.fs.Rename(oldest.path, filepath.Join(j.dir, spareName))
			// A file already gone (removed by hand to free a full disk)
			// is released all the same, as by Remove: there is just
			// nothing to keep, and the next one released is kept.
			recycle = err == nil
		} else {
			err = j.fs.Remove(oldest.path)
		}
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			// Still there, so still held: a later removal of the next one
			// would otherwise leave it before a hole. It is still the
			// oldest: only Release removes segments, one at a time
			// (j.releasing), and Close waits for it.
			j.mu.Lock()
			j.segs = slices.Insert(j.segs, 0, oldest)
			j.countBytes()
			j.mu.Unlock()
			return fmt.Errorf("journal %s: %w", oldest.path, err)
		}
		// A Sync that fsyncs the directory meanwhile (the first after a
		// new segment) waits for this one, and fails if it does.
		if err := j.syncDir(); err != nil {
			// Sticky for the same reason as in Sync: whether the removal is
			// on disk is unknown, and removing the next segment on top of
			// that could leave a hole.
			j.mu.Lock()
			if j.err == nil {
				j.err = err
			}
			j.mu.Unlock()
			return err
		}
		if recycle {
			j.keepSpare(oldest.size)
		}
	}
}

// roomForSpare says whether the file system has room to keep a released
// segment as the spare: twice what the journal needs (Needs) free, so that
// the spare never stands between the journal, or a caller watching its
// room, and the space a full file system leaves. Without LargestRecord the
// journal knows no more than its segments' size and counts records of none.
func (j *Journal) roomForSpare() bool {
	free, err := j.fs.Available(j.dir)
	if err != nil {
		return false
	}
	j.mu.Lock()
	need := Needs(j.opts.SegmentSize, max(j.opts.LargestRecord, 0))
	j.mu.Unlock()
	return free >= 2*need
}

// keepSpare zeroes the header of the spare, a segment of size bytes whose
// rename to spareName is durable, makes that durable too, and only then
// offers it to the next segment: a crash after the spare is renamed again
// but before its new header reaches the disk leaves a last segment whose
// header is zero, which Open removes, rather than the header of its old
// life. A spare that cannot be zeroed is removed, or left for the next
// Open to remove: the log is not in it any more, so neither is an error
// of the journal's.
func (j *Journal) keepSpare(size int64) {
	path := filepath.Join(j.dir, spareName)
	err := j.zeroHeader(path)
	if err != nil {
		j.fs.Remove(path)
		return
	}
	j.mu.Lock()
	j.spare, j.spareSize = true, size
	j.mu.Unlock()
}

func (j *Journal) zeroHeader(path string) error {
	f, err := j.fs.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := f.WriteAt(make([]byte, segmentHeaderSize), 0); err != nil {
		return err
	}
	return disk.Datasync(f)
}

// FirstIndex is the index of the oldest record still held, 0 when empty.
func (j *Journal) FirstIndex() uint64 {
	j.mu.Lock()
	defer j.mu.Unlock()
	if len(j.segs) == 0 {
		return 0
	}
	return j.segs[0].first
}

// LastIndex is the index of the newest record appended, 0 when empty. It
// counts records that are not yet synced.
func (j *Journal) LastIndex() uint64 {
	j.mu.Lock()
	defer j.mu.Unlock()
	if len(j.segs) == 0 {
		return 0
	}
	return j.segs[len(j.segs)-1].last
}

// Bytes is the total size of the segment files. It never waits for a
// write or an fsync under way: it is what status reports.
func (j *Journal) Bytes() int64 { return j.bytes.Load() }

// countBytes records the size of the segments for Bytes. Called with j.mu
// held (or before the Journal is shared) after segs changed.
func (j *Journal) countBytes() {
	var n int64
	for _, s := range j.segs {
		n += s.size
	}
	j.bytes.Store(n)
}

// Close syncs the journal, as a clean shutdown should leave nothing to
// recover, and releases the directory lock. The Journal cannot be used
// afterwards, whatever Close returns.
func (j *Journal) Close() error {
	j.releasing.Lock()
	defer j.releasing.Unlock()
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.closed {
		return fmt.Errorf("journal %s: %w", j.dir, errClosed)
	}
	j.closed = true
	err := j.err
	if err == nil {
		err = j.trimLocked()
	}
	if err == nil {
		err = j.syncLocked()
	}
	if j.f != nil {
		if cerr := j.f.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("journal %s: %w", j.f.Name(), cerr)
		}
		j.f = nil
	}
	j.lock.Close()
	j.buf = nil
	j.dbuf = nil
	return err
}

func (j *Journal) usable() error {
	if j.closed {
		return fmt.Errorf("journal %s: %w", j.dir, errClosed)
	}
	return j.err
}

// zeros supplies record padding.
var zeros [recordAlign]byte

// padding is the number of zero bytes after n bytes of data.
func padding(n int) int { return (recordAlign - n%recordAlign) % recordAlign }

// recordSum is recordCRC of a record whose data, n bytes, has the CRC-32C
// sum, with extra (the header of a record with gaps from its offset 16, and
// its gap table) checksummed between the index and the data.
func recordSum(seed uint32, index uint64, extra []byte, sum uint32, n int) uint32 {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], index)
	return crc32c.Combine(crc32c.Update(crc32c.Update(seed, b[:]), extra), sum, int64(n))
}

// recordCRC is the checksum stored in a record header. The index is covered
// so that a record that is intact but in the wrong place (a stale block, a
// misdirected write) fails the check.
// seed is the CRC of the segment's salt (0 in a version 1 segment, which
// has none), so that a record of another segment, or of the same file in
// an earlier life, fails it too.
func recordCRC(seed uint32, index uint64, data []byte) uint32 {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], index)
	return crc32.Update(crc32.Update(seed, castagnoli, b[:]), castagnoli, data)
}

func segmentName(first uint64) string {
	return fmt.Sprintf("%0*x%s", segmentNameDigits, first, segmentExt)
}

// listSegments returns the first indexes of the segment files in dir, in
// order. Other files are ignored, so the directory can hold the lock file
// and whatever an operator leaves there.
func listSegments(fsys disk.FS, dir string) ([]uint64, error) {
	entries, err := fsys.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var firsts []uint64
	for _, e := range entries {
		name := e.Name()
		hex, ok := strings.CutSuffix(name, segmentExt)
		if !ok || len(hex) != segmentNameDigits || strings.ToLower(hex) != hex || !e.Type().IsRegular() {
			continue
		}
		first, err := strconv.ParseUint(hex, 16, 64)
		if err != nil {
			continue
		}
		firsts = append(firsts, first)
	}
	slices.Sort(firsts)
	return firsts, nil
}

// badRecord describes a record that does not decode. short means the file
// ends inside it; tooLong means its length exceeds MaxRecord but it is
// otherwise complete and its checksum holds.
type badRecord struct {
	reason  string
	short   bool
	tooLong bool
}

func (b *badRecord) Error() string { return b.reason }

// recordReader walks the records of one segment file sequentially. It never
// allocates for a record more than the record's length, which it has
// already checked against both MaxRecord and the bytes left in the file,
// and its gap table, at most 8 bytes a byte of data.
type recordReader struct {
	r    *bufio.Reader
	off  int64 // offset of the next record
	size int64 // bytes of the file to consider
	max  int
	seed uint32 // the segment's (see recordCRC)
	gaps bool   // the segment's records may have gaps (version 3)
}

func newRecordReader(f io.ReaderAt, seg segment, size int64, maxRecord int) *recordReader {
	return &recordReader{
		r:    bufio.NewReaderSize(io.NewSectionReader(f, seg.hdr, size-seg.hdr), 64<<10),
		off:  seg.hdr,
		size: size,
		max:  maxRecord,
		seed: seg.seed,
		gaps: seg.gaps,
	}
}

// recordHead is a record's header as read: length, checksum and index, and
// for a record with gaps, the header's bytes from offset 16 and its table.
type recordHead struct {
	length uint32
	crc    uint32
	index  uint64
	extra  []byte // what the checksum covers between index and data
	gaps   []gap
	total  int64 // bytes of its gaps
	frame  int64 // bytes on the disk, header and padding included
	// unread is set for a record too long to read back whose table,
	// too, is too large to read: it is not checked.
	unread bool
}

// header reads and checks the next record header. It returns io.EOF at the
// clean end of the file and a *badRecord for anything that ends the log.
// A record longer than max is streamed through the checksum, not read into
// memory, to tell an intact record (written with a larger MaxRecord) from
// a garbage length.
func (rr *recordReader) header() (h recordHead, err error) {
	rem := rr.size - rr.off
	if rem == 0 {
		return h, io.EOF
	}
	if rem < recordHeaderSize {
		return h, &badRecord{reason: fmt.Sprintf("incomplete record header (%d bytes left)", rem), short: true}
	}
	var b [recordHeaderSize]byte
	if _, err := io.ReadFull(rr.r, b[:]); err != nil {
		return h, noEOF(err)
	}
	h.length = binary.BigEndian.Uint32(b[0:4])
	h.crc = binary.BigEndian.Uint32(b[4:8])
	h.index = binary.BigEndian.Uint64(b[8:16])
	if rr.gaps && h.length == gappedMark {
		if err := rr.gapHeader(&h, rem); err != nil {
			return h, err
		}
	} else {
		h.frame = recordHeaderSize + int64(h.length) + int64(padding(int(h.length)))
		if h.frame > rem {
			return h, &badRecord{reason: fmt.Sprintf("incomplete record: %d bytes, %d left in file", h.frame, rem), short: true}
		}
	}
	if int64(h.length) > int64(rr.max) {
		if h.unread {
			return h, &badRecord{reason: fmt.Sprintf("record length %d exceeds MaxRecord %d", h.length, rr.max)}
		}
		sum, err := rr.streamCRC(h)
		if err != nil {
			return h, err
		}
		return h, &badRecord{
			reason:  fmt.Sprintf("record length %d exceeds MaxRecord %d", h.length, rr.max),
			tooLong: sum == h.crc,
		}
	}
	return h, nil
}

// gapHeader reads the rest of the header of a record with gaps, whose
// first 16 bytes h holds, rem bytes of the file left from its start, and
// checks that its table describes the bytes that follow.
func (rr *recordReader) gapHeader(h *recordHead, rem int64) error {
	if rem < gappedHeaderSize {
		return &badRecord{reason: fmt.Sprintf("incomplete record header (%d bytes left)", rem), short: true}
	}
	var b [gappedHeaderSize - recordHeaderSize]byte
	if _, err := io.ReadFull(rr.r, b[:]); err != nil {
		return noEOF(err)
	}
	be := binary.BigEndian
	h.length = be.Uint32(b[0:4])
	count := be.Uint32(b[4:8])
	total := be.Uint32(b[8:12])
	h.total = int64(total)
	disk := int64(h.length) + int64(total)
	h.frame = gappedHeaderSize + int64(count)*gapEntrySize + disk + int64(padding(int(disk%recordAlign)))
	if h.frame > rem {
		return &badRecord{reason: fmt.Sprintf("incomplete record: %d bytes, %d left in file", h.frame, rem), short: true}
	}
	bad := func(reason string) error {
		return &badRecord{reason: fmt.Sprintf("record %d: %s", h.index, reason)}
	}
	if be.Uint32(b[12:16]) != 0 || count == 0 || count > h.length {
		return bad(fmt.Sprintf("malformed gap header: %d gaps in %d bytes", count, h.length))
	}
	if int64(h.length) > int64(rr.max) && int64(count)*gapEntrySize > int64(rr.max) {
		h.unread = true
		return nil
	}
	h.extra = make([]byte, len(b)+int(count)*gapEntrySize)
	copy(h.extra, b[:])
	if _, err := io.ReadFull(rr.r, h.extra[len(b):]); err != nil {
		return noEOF(err)
	}
	h.gaps = make([]gap, count)
	// In 64 bits: a million gaps of 4095 bytes add up past 4 GiB, and a
	// sum wrapped to the header's would have pieces read past the frame.
	var sum uint64
	for i := range h.gaps {
		e := h.extra[len(b)+i*gapEntrySize:]
		g := gap{at: be.Uint32(e), n: be.Uint32(e[4:])}
		if g.at >= h.length || i > 0 && g.at <= h.gaps[i-1].at || g.n >= maxGap {
			return bad(fmt.Sprintf("malformed gap table: gap %d of %d bytes at %d", i, g.n, g.at))
		}
		h.gaps[i] = g
		sum += uint64(g.n)
	}
	if sum != uint64(total) {
		return bad(fmt.Sprintf("malformed gap table: gaps of %d bytes, header says %d", sum, total))
	}
	return nil
}

// pieces calls fn for the runs of the record's data between its gaps, in
// order, and steps over the gaps.
func (rr *recordReader) pieces(h recordHead, fn func(n int) error) error {
	var at uint32
	for _, g := range h.gaps {
		if err := fn(int(g.at - at)); err != nil {
			return err
		}
		if _, err := rr.r.Discard(int(g.n)); err != nil {
			return noEOF(err)
		}
		at = g.at
	}
	return fn(int(h.length - at))
}

// verify checks the next record without keeping its data.
func (rr *recordReader) verify() (uint64, error) {
	h, err := rr.header()
	if err != nil {
		return 0, err
	}
	sum, err := rr.streamCRC(h)
	if err != nil {
		return 0, err
	}
	if sum != h.crc {
		return 0, checksumMismatch(h.length, h.crc, h.index)
	}
	return h.index, rr.finish(h)
}

// read returns the next record, checked, in a new slice.
func (rr *recordReader) read() (uint64, []byte, error) {
	h, err := rr.header()
	if err != nil {
		return 0, nil, err
	}
	data := make([]byte, h.length)
	rest := data
	if err := rr.pieces(h, func(n int) error {
		if _, err := io.ReadFull(rr.r, rest[:n]); err != nil {
			return noEOF(err)
		}
		rest = rest[n:]
		return nil
	}); err != nil {
		return 0, nil, err
	}
	if recordSum(rr.seed, h.index, h.extra, crc32c.Checksum(data), len(data)) != h.crc {
		return 0, nil, checksumMismatch(h.length, h.crc, h.index)
	}
	return h.index, data, rr.finish(h)
}

// skip steps over the next record, checking only its header.
func (rr *recordReader) skip() (uint64, error) {
	h, err := rr.header()
	if err != nil {
		return 0, err
	}
	if _, err := rr.r.Discard(int(h.length) + int(h.total)); err != nil {
		return 0, noEOF(err)
	}
	return h.index, rr.finish(h)
}

// finish steps over the padding, whose content is not checked: it carries
// no information, and the checksum that matters has already passed.
func (rr *recordReader) finish(h recordHead) error {
	pad := padding(int((int64(h.length) + h.total) % recordAlign))
	if _, err := rr.r.Discard(pad); err != nil {
		return noEOF(err)
	}
	rr.off += h.frame
	return nil
}

// streamCRC reads the data of the record whose header h is and returns
// its checksum, without keeping it.
func (rr *recordReader) streamCRC(h recordHead) (uint32, error) {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], h.index)
	sum := crc32.Update(crc32.Update(rr.seed, castagnoli, b[:]), castagnoli, h.extra)
	err := rr.pieces(h, func(n int) error {
		for n > 0 {
			chunk, err := rr.r.Peek(min(n, rr.r.Size()))
			if err != nil {
				return noEOF(err)
			}
			sum = crc32.Update(sum, castagnoli, chunk)
			rr.r.Discard(len(chunk))
			n -= len(chunk)
		}
		return nil
	})
	return sum, err
}

func checksumMismatch(length, crc uint32, index uint64) *badRecord {
	if length == 0 && crc == 0 && index == 0 {
		return &badRecord{reason: "zeroed record header (preallocated or never written)"}
	}
	return &badRecord{reason: fmt.Sprintf("checksum mismatch in record %d", index)}
}

// noEOF turns an end of file met inside a record, which can only happen if
// the file shrank after its size was taken, into io.ErrUnexpectedEOF, so
// that io.EOF always means the clean end of a segment.
func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}
