package secondary

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"duplex/disk"
	"duplex/recordset"
	"duplex/volume"
)

// scaledFS is a file system of capacity bytes, of which every byte written
// under root takes scale: a large disk (hundreds of MiB, where the
// journal's segments and its reserve take their full size) at a small
// fraction of the real writes.
type scaledFS struct {
	disk.FS
	root     string
	scale    int64
	capacity int64
	mu       sync.Mutex
}

func (q *scaledFS) used() int64 {
	var n int64
	filepath.WalkDir(q.root, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n * q.scale
}

func (q *scaledFS) Available(string) (int64, error) { return max(0, q.capacity-q.used()), nil }

func (q *scaledFS) OpenFile(name string, flag int, perm fs.FileMode) (disk.File, error) {
	f, err := q.FS.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return &scaledFile{File: f, q: q}, nil
}

func (q *scaledFS) CreateTemp(dir, pattern string) (disk.File, error) {
	f, err := q.FS.CreateTemp(dir, pattern)
	if err != nil {
		return nil, err
	}
	return &scaledFile{File: f, q: q}, nil
}

type scaledFile struct {
	disk.File
	q *scaledFS
}

func (f *scaledFile) full(n int) bool {
	f.q.mu.Lock()
	defer f.q.mu.Unlock()
	return f.q.used()+int64(n)*f.q.scale > f.q.capacity
}

func (f *scaledFile) Write(p []byte) (int, error) {
	if f.full(len(p)) {
		return 0, &os.PathError{Op: "write", Path: f.Name(), Err: syscall.ENOSPC}
	}
	return f.File.Write(p)
}

func (f *scaledFile) WriteAt(p []byte, off int64) (int, error) {
	if f.full(len(p)) {
		return 0, &os.PathError{Op: "write", Path: f.Name(), Err: syscall.ENOSPC}
	}
	return f.File.WriteAt(p, off)
}

// A resync the secondary reports room for, and holds to its end without
// giving the hold up, is applied at its end: with history kept beside the
// journal, as the site keeps it, the held groups' before images need about
// as much room again as the resync took in the journal, and neither the
// free space reported to the primary (net of the journal's reserve only)
// nor the hold's own check counts it. On a file system that the journal's
// reserve does not fill half of (here a 450 MiB one at a 1/1024 scale:
// 64 MiB segments, a 130 MiB reserve, a 256 MiB resync that the primary
// finds room for), the capture of the before images runs out of space
// part-way through the held groups: the secondary stops with some of
// them applied (the volumes at no group the primary ever held), and every
// restart fails the same way while the journal keeps the resync.
func TestResyncHeldWithHistoryFitsWhereItWasAccepted(t *testing.T) {
	const (
		scale    = 1024
		capacity = 450 << 20
		largest  = 1 << 20 // the largest group, virtual
		chunk    = 64 << 10
		resync   = 4 * chunk // 256 KiB real: 256 MiB on the virtual disk
	)
	q := newScaledRig(t, 1<<20, scale, capacity, 1<<40, largest)
	open := func() (*Secondary, *volume.Volume, error) { return q.open(t) }
	sec, v, err := open()
	if err != nil {
		t.Fatal(err)
	}
	free := sec.reportedFree()
	t.Logf("reported free %d MiB (reserve %d MiB, capacity %d MiB)", free>>20, sec.holdReserve()>>20, capacity>>20)
	if free < uint64(resync*scale) {
		t.Fatalf("the secondary reports %d bytes free, less than the resync's %d: the primary would not start it", free, resync*scale)
	}

	r := linkRig(t, sec, v, 1<<20)

	// Group 1: vol1's first copy, whole (one block).
	r.sendSet(t, 1, wholeCopy(200, 1))
	// Groups 2 to 5: a resync of the first 256 KiB, held.
	for i := uint64(0); i < 4; i++ {
		var ups []recordset.Update
		if i == 0 {
			ups = append(ups, recordset.Marker{State: recordset.StateResync, Bytes: resync}.Update("vol1"))
		}
		ups = append(ups, recordset.Update{Volume: "vol1", Kind: recordset.KindCopy, Offset: i * chunk, Length: chunk,
			Data: bytes.Repeat([]byte{byte(0x20 + i)}, chunk)})
		r.sendSet(t, 2+i, ups)
	}
	waitGate(t, "groups 2 to 5 journaled", func() bool { return sec.Stats().JournaledGroup >= 5 })
	if st := sec.Stats(); st.HoldsReleased != 0 || st.HeldGroups != 4 {
		t.Fatalf("the hold was not kept: %d held groups, %d holds released", st.HeldGroups, st.HoldsReleased)
	}
	// Group 6 ends the resync.
	r.sendSet(t, 6, []recordset.Update{recordset.Marker{State: recordset.StateCopyEnd}.Update("vol1")})
	deadline := time.Now().Add(30 * time.Second)
	for {
		st := sec.Stats()
		if st.Group >= 6 {
			break
		}
		if st.Stopped != "" || time.Now().After(deadline) {
			var b [1]byte
			rerr := sec.ReadAt("vol1", b[:], 0)
			r.stop()
			_, _, oerr := open()
			t.Fatalf("the end of a resync the secondary had room for did not apply: applied group %d, stopped: %q; "+
				"reading the volumes: %v; a restart: %v", st.Group, st.Stopped, rerr, oerr)
		}
		time.Sleep(5 * time.Millisecond)
	}
	r.stop()
}

// The history's files are bounded by history_bytes (MaxBytes, "the log may
// exceed it by up to two segments"), but one group's undo is kept whole,
// whatever its size: a trim of a whole volume (mkfs discards the device
// first) captures the before image of every block of it that holds data.
// Here a 32 MiB volume full of data, a 4 MiB history bound and a 30 MiB
// file system for the journal, its reserve and the history: the discard
// of the volume fills the file system while its undo is captured, the
// secondary stops before applying it, and every restart stops on the same
// capture, the trim journaled and acknowledged.
func TestHistoryOfAWholeVolumeTrimStaysWithinItsBound(t *testing.T) {
	const (
		size     = 32 << 20
		capacity = 30 << 20
		histMax  = 4 << 20
	)
	q := newScaledRig(t, size, 1, capacity, histMax, 1<<20)
	open := func() (*Secondary, *volume.Volume, error) { return q.open(t) }
	sec, v, err := open()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("journal reserve %.1f MiB, history bound %d MiB, file system %d MiB", float64(sec.holdReserve())/(1<<20), histMax>>20, capacity>>20)
	r := linkRig(t, sec, v, size)
	r.sendSet(t, 1, wholeCopy(0, 1))
	r.sendSet(t, 2, []recordset.Update{{Volume: "vol1", Kind: recordset.KindTrim, Offset: 0, Length: size}})
	deadline := time.Now().Add(30 * time.Second)
	for {
		st := sec.Stats()
		if st.Group >= 2 {
			break
		}
		if st.Stopped != "" || time.Now().After(deadline) {
			r.stop()
			_, _, oerr := open()
			t.Fatalf("a discard of the whole volume was not applied: applied group %d, stopped: %q; a restart: %v", st.Group, st.Stopped, oerr)
		}
		time.Sleep(5 * time.Millisecond)
	}
	r.cancel()
	r.wg.Wait()
	if got := sec.Stats().HistoryBytes; got > histMax+2<<20 {
		t.Errorf("history holds %d bytes, bound %d", got, histMax)
	}
	sec.Close()
	v.Close()
}

// A hold given up because the journal's file system runs short is the
// secondary's way to go on when a resync and the writes made during it
// outgrow its journal: the held groups are applied and the resyncing
// volume is declared inconsistent, the others staying current. With history
// kept beside the journal, applying them captures their before images, as
// much again as the held groups, on the file system that was just found
// short: the capture fails, the secondary stops with part of the held
// groups applied, and every restart stops the same way. (450 MiB file
// system at a 1/1024 scale, a 130 MiB reserve; a resync of 256 MiB the
// primary finds room for, regions copied again as writes dirty them.)
func TestHoldGivenUpWithHistoryGoesOn(t *testing.T) {
	const (
		scale    = 1024
		capacity = 450 << 20
		chunk    = 32 << 10 // 32 MiB virtual per group
	)
	q := newScaledRig(t, 1<<20, scale, capacity, 1<<40, 1<<20)
	open := func() (*Secondary, *volume.Volume, error) { return q.open(t) }
	sec, v, err := open()
	if err != nil {
		t.Fatal(err)
	}
	r := linkRig(t, sec, v, 1<<20)
	r.sendSet(t, 1, wholeCopy(255, 1))
	waitGate(t, "group 1 applied", func() bool { return sec.Stats().Group == 1 })
	if free, resync := sec.reportedFree(), uint64(8*chunk*scale); free < resync {
		t.Fatalf("reported free %d, less than the resync's %d", free, resync)
	}
	// A resync of 8 chunks (256 MiB virtual) from group 2 on, regions
	// copied again as writes dirty them, until the secondary gives the
	// hold up.
	seq := uint64(2)
	for ; seq < 30 && sec.Stats().HoldsReleased == 0 && sec.Stats().Stopped == ""; seq++ {
		var ups []recordset.Update
		if seq == 2 {
			ups = append(ups, recordset.Marker{State: recordset.StateResync, Bytes: 8 * chunk}.Update("vol1"))
		}
		k := (seq - 2) % 8
		ups = append(ups, recordset.Update{Volume: "vol1", Kind: recordset.KindCopy, Offset: k * chunk, Length: chunk,
			Data: bytes.Repeat([]byte{byte(seq)}, chunk)})
		r.sendSet(t, seq, ups)
		waitGate(t, "journaled", func() bool { st := sec.Stats(); return st.JournaledGroup >= seq || st.Stopped != "" })
	}
	st := sec.Stats()
	t.Logf("after group %d: %d holds released (%s), held %d groups, applied group %d, stopped %q", seq-1, st.HoldsReleased, st.LastHoldRelease, st.HeldGroups, st.Group, st.Stopped)
	if st.HoldsReleased == 0 {
		t.Fatalf("the hold was never given up")
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		st := sec.Stats()
		if st.Group >= seq-1 {
			break
		}
		if st.Stopped != "" || time.Now().After(deadline) {
			r.stop()
			_, _, oerr := open()
			t.Fatalf("after the hold was given up the held groups were not applied: applied group %d of %d, stopped: %q; a restart: %v",
				st.Group, seq-1, st.Stopped, oerr)
		}
		time.Sleep(5 * time.Millisecond)
	}
	r.stop()
}
