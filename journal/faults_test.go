package journal

import (
	"errors"
	"strings"
	"testing"

	"duplex/disk"
)

// fakeRoom is a file system that reports a fixed amount of free space.
type fakeRoom struct {
	disk.FS
	free int64
}

func (f fakeRoom) Available(string) (int64, error) { return f.free, nil }

// After a failed fsync the journal never reports a record durable again, even
// when the disk would now accept the fsync: the kernel may have dropped the
// pages it could not write. Records synced before the failure survive reopen.
func TestSyncFailureIsSticky(t *testing.T) {
	dir := t.TempDir()
	in := disk.NewInjector(nil)
	j := openT(t, dir, Options{FS: in})
	appendRange(t, j, 1, 10)
	if err := j.Sync(); err != nil {
		t.Fatal(err)
	}
	in.Inject(disk.Fault{Op: disk.OpSync, Under: dir, Once: true})
	appendRange(t, j, 11, 11)
	if err := j.Sync(); !errors.Is(err, disk.EIO) {
		t.Fatalf("Sync with a failing fsync: %v, want EIO", err)
	}
	if got := in.Injected(disk.OpSync); got != 1 {
		t.Fatalf("%d fsyncs failed, want 1", got)
	}
	if err := j.Sync(); !errors.Is(err, disk.EIO) {
		t.Fatalf("Sync retried after a failed fsync: %v, want the sticky EIO", err)
	}
	if err := j.Append(12, payload(12)); err == nil {
		t.Fatal("Append accepted a record after a failed fsync")
	}
	if err := j.Close(); err == nil {
		t.Fatal("Close reported success after a failed fsync")
	}
	j = openT(t, dir, Options{})
	defer j.Close()
	got := replayAll(t, j, 0)
	if len(got) < 10 {
		t.Fatalf("after reopen %d records, want at least the 10 synced", len(got))
	}
	wantRange(t, got[:10], 1, 10)
}

// A write that fails (a full disk, EIO) is sticky too: the journal does not
// know what reached the page cache, and its user must stop rather than go on
// acknowledging. Once space is freed, reopening recovers every synced record
// and appends go on from there.
func TestWriteFailureIsSticky(t *testing.T) {
	for _, tc := range []struct {
		name    string
		segSize int64
	}{
		{"append to segment", 1 << 20},
		{"new segment", 64},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			in := disk.NewInjector(nil)
			j := openT(t, dir, Options{FS: in, SegmentSize: tc.segSize})
			appendRange(t, j, 1, 10)
			if err := j.Sync(); err != nil {
				t.Fatal(err)
			}
			in.Inject(disk.Fault{Op: disk.OpWrite, Under: dir, Err: disk.ENOSPC})
			if tc.segSize == 64 {
				in.Inject(disk.Fault{Op: disk.OpCreate, Under: dir, Err: disk.ENOSPC})
			}
			if err := j.Append(11, payload(11)); !disk.IsFull(err) {
				t.Fatalf("Append on a full disk: %v, want ENOSPC", err)
			}
			in.Clear()
			if err := j.Append(11, payload(11)); !disk.IsFull(err) {
				t.Fatalf("Append after a failed write: %v, want the sticky ENOSPC", err)
			}
			if err := j.Sync(); err == nil {
				t.Fatal("Sync reported success after a failed write")
			}
			j.Close()
			j = openT(t, dir, Options{FS: in, SegmentSize: tc.segSize})
			defer j.Close()
			wantRange(t, replayAll(t, j, 0), 1, 10)
			appendRange(t, j, 11, 12)
			if err := j.Sync(); err != nil {
				t.Fatalf("Sync after reopen with space freed: %v", err)
			}
			wantRange(t, replayAll(t, j, 0), 1, 12)
		})
	}
}

// A journal whose file system cannot hold what it needs is refused at Open
// with the numbers, instead of filling the disk with a segment it can never
// release.
func TestOpenRefusesTooLittleRoom(t *testing.T) {
	const mib = 1 << 20
	_, err := Open(t.TempDir(), Options{FS: fakeRoom{disk.OS, 60 * mib}, LargestRecord: 256 * mib})
	if err == nil {
		t.Fatal("Open succeeded with 60 MiB free for records of up to 256 MiB")
	}
	for _, want := range []string{"needs", "60.0 MiB", "256.0 MiB"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

// Segments shrink to fit a small file system, so the segment that is never
// released while it is active cannot take the whole disk.
func TestSegmentsSizeToFit(t *testing.T) {
	const mib = 1 << 20
	for _, tc := range []struct {
		free, largest, want int64
	}{
		{64 * mib, 16 * mib, 8 * mib},
		{100 << 30, 256 * mib, DefaultSegmentSize},
		{20 * mib, 8 * mib, MinSegmentSize},
	} {
		j, err := Open(t.TempDir(), Options{FS: fakeRoom{disk.OS, tc.free}, LargestRecord: tc.largest})
		if err != nil {
			t.Fatalf("free %d, largest record %d: %v", tc.free, tc.largest, err)
		}
		if got := j.SegmentSize(); got != tc.want {
			t.Errorf("free %d, largest record %d: segment size %d, want %d", tc.free, tc.largest, got, tc.want)
		}
		if need := Needs(j.SegmentSize(), tc.largest); need > tc.free {
			t.Errorf("free %d: the journal needs %d", tc.free, need)
		}
		j.Close()
	}
}

// The active segment is never released, so its bytes are no room for what
// comes next: a journal reopened on a full disk is refused even when its
// active segment is large.
func TestOpenOnFullDiskRefusedDespiteActiveSegment(t *testing.T) {
	const mib = 1 << 20
	dir := t.TempDir()
	j := openT(t, dir, Options{})
	big := make([]byte, mib)
	for i := uint64(1); i <= 8; i++ {
		if err := j.Append(i, big); err != nil {
			t.Fatal(err)
		}
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	j, err := Open(dir, Options{FS: fakeRoom{disk.OS, 0}, LargestRecord: mib})
	if err == nil {
		j.Close()
		t.Fatal("Open succeeded on a full disk because the active segment was counted as room")
	}
	if !strings.Contains(err.Error(), "0.0 MiB free") {
		t.Fatalf("error %q does not say the file system has nothing free", err)
	}
}

// Segments holding a record after the one the caller will release through
// are not room: CheckRoom refuses a journal that Open, counting every segment
// but the active one, accepted.
func TestCheckRoomCountsOnlyReleasableSegments(t *testing.T) {
	const mib = 1 << 20
	dir := t.TempDir()
	j := openT(t, dir, Options{SegmentSize: mib})
	big := make([]byte, mib)
	for i := uint64(1); i <= 8; i++ {
		if err := j.Append(i, big); err != nil {
			t.Fatal(err)
		}
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	j, err := Open(dir, Options{SegmentSize: mib, FS: fakeRoom{disk.OS, mib}, LargestRecord: mib})
	if err != nil {
		t.Fatalf("Open with 7 segments to release: %v", err)
	}
	defer j.Close()
	if err := j.CheckRoom(7); err != nil {
		t.Fatalf("CheckRoom through the last record but the active one's: %v", err)
	}
	err = j.CheckRoom(1)
	if err == nil {
		t.Fatal("CheckRoom(1) counted segments of records 2-7, which are not to be released, as room")
	}
	if !strings.Contains(err.Error(), "1.0 MiB free") {
		t.Fatalf("error %q does not say what is free", err)
	}
}
