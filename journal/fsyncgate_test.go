package journal

import (
	"errors"
	"testing"

	"duplex/disk"
)

// After a failed fsync the kernel may have marked the pages it could not
// write clean, so that they read back as written until evicted, while the
// disk never got them: a reopen without a reboot (the same process, or a
// restarted one) would read the records no Sync covered as journaled, and
// the secondary would welcome its primary past them, which then lets go of
// groups the disk does not hold. The failed Sync cuts them off, so no Open
// finds them; they were never acknowledged, and the primary sends them
// again.
func TestRecordsAFailedSyncCoveredDoNotReopen(t *testing.T) {
	for _, c := range []struct {
		name string
		opts Options
		last uint64 // appended after record 10, before the failing Sync
		op   disk.Op
		skip int
	}{
		{"the active segment's fsync", Options{}, 12, disk.OpSync, 0},
		// Segments of one record each: record 11 starts a new segment,
		// fsyncing record 10's again first.
		{"a new segment's fsync", Options{SegmentSize: 1}, 11, disk.OpSync, 1},
		{"the directory's fsync after a new segment", Options{SegmentSize: 1}, 11, disk.OpSyncDir, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			in := disk.NewInjector(nil)
			opts := c.opts
			opts.FS = in
			j := openT(t, dir, opts)
			appendRange(t, j, 1, 10)
			if err := j.Sync(); err != nil {
				t.Fatal(err)
			}
			in.Inject(disk.Fault{Op: c.op, Under: dir, Skip: c.skip, Once: true})
			appendRange(t, j, 11, c.last)
			if err := j.Sync(); !errors.Is(err, disk.EIO) {
				t.Fatalf("Sync with a failing %v: %v, want EIO", c.op, err)
			}
			if err := j.Close(); err == nil {
				t.Fatal("Close reported success after a failed fsync")
			}
			j = openT(t, dir, Options{SegmentSize: c.opts.SegmentSize})
			wantRange(t, replayAll(t, j, 0), 1, 10)
			if got := j.LastIndex(); got != 10 {
				t.Errorf("LastIndex %d after reopen, want 10: records no Sync covered count as journaled", got)
			}
			// The primary sends them again.
			appendRange(t, j, 11, c.last)
			if err := j.Sync(); err != nil {
				t.Fatal(err)
			}
			if err := j.Close(); err != nil {
				t.Fatal(err)
			}
			j = openT(t, dir, Options{})
			defer j.Close()
			wantRange(t, replayAll(t, j, 0), 1, c.last)
		})
	}
}
