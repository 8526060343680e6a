package journal

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"

	"duplex/disk"
)

// A roll to a new segment fsyncs the old one first, and the directory if
// the old one is new since the last Sync: when that fails, the records of
// the old one that no Sync covered are cut off as a failed Sync cuts them
// (the whole segment when its name may not be on the disk), and those a
// Sync covered stay.
func TestRecordsARollsFailedSyncCoveredDoNotReopen(t *testing.T) {
	for _, c := range []struct {
		name    string
		segSize int64
		op      disk.Op
		synced  uint64 // records synced before the fault
		pending uint64 // then appended, no Sync covering them, before the roll
	}{
		{"the old segment's fsync", 400, disk.OpSync, 3, 2},
		// Segments of one record each: the segment of record 11, new
		// since the last Sync, is fsynced with the directory at the roll
		// to record 12's.
		{"the directory's fsync for an old segment new since the last Sync", 1, disk.OpSyncDir, 10, 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			in := disk.NewInjector(nil)
			j := openT(t, dir, Options{SegmentSize: c.segSize, FS: in})
			appendRange(t, j, 1, c.synced)
			if err := j.Sync(); err != nil {
				t.Fatal(err)
			}
			appendRange(t, j, c.synced+1, c.synced+c.pending)
			in.Inject(disk.Fault{Op: c.op, Under: dir, Once: true})
			var err error
			i := c.synced + c.pending + 1
			for segs := len(j.segs); err == nil && len(j.segs) == segs; i++ {
				err = j.Append(i, payload(i))
			}
			if !errors.Is(err, disk.EIO) {
				t.Fatalf("Append(%d) rolling with a failing %v: %v, want EIO", i-1, c.op, err)
			}
			j.Close()
			j = openT(t, dir, Options{SegmentSize: c.segSize})
			defer j.Close()
			wantRange(t, replayAll(t, j, 0), 1, c.synced)
			appendRange(t, j, c.synced+1, i)
			if err := j.Sync(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// Release removes the oldest segments beside Appends and Syncs: a Sync
// that fails meanwhile, whatever it cuts, leaves every record a Sync
// covered that was not released.
func TestAFailedSyncBesideReleaseKeepsWhatSyncsCovered(t *testing.T) {
	for round := range 20 {
		dir := t.TempDir()
		in := disk.NewInjector(nil)
		j := openT(t, dir, Options{SegmentSize: 100, FS: in})
		var synced atomic.Uint64
		var wg sync.WaitGroup
		stop := make(chan struct{})
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if j.Release(synced.Load()) != nil {
					return
				}
			}
		}()
		// Every fsync fails from some point on, at a roll or a Sync.
		in.Inject(disk.Fault{Op: disk.OpSync, Under: dir, Skip: 20 + round})
		for i := uint64(1); i < 1000; i++ {
			if j.Append(i, payload(i)) != nil {
				break
			}
			if i%3 == 0 {
				if j.Sync() != nil {
					break
				}
				synced.Store(i)
			}
		}
		close(stop)
		wg.Wait()
		j.Close()
		j = openT(t, dir, Options{SegmentSize: 100})
		got := replayAll(t, j, 0)
		// Empty only if Release took every record a Sync covered: it
		// keeps the active segment, and a failed Sync cuts that to
		// nothing only if it is new since the last Sync.
		if s := synced.Load(); s == 0 || len(got) > 0 {
			if last := j.LastIndex(); last < s {
				t.Errorf("round %d: records through %d after reopen, want through %d, synced", round, last, s)
			}
			if len(got) > 0 {
				wantRange(t, got, got[0].index, j.LastIndex())
			}
		}
		j.Close()
	}
}
