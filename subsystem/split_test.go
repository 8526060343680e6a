package subsystem

import (
	"bytes"
	"context"
	"path/filepath"
	"testing"
	"time"

	"duplex/recordset"
	"duplex/sidefile"
	"duplex/timer"
	"duplex/volume"
)

func bigFixture(t *testing.T, limit, size int64) *fixture {
	t.Helper()
	v, err := volume.Open(filepath.Join(t.TempDir(), "v0.img"), size)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close() })
	tm := timer.New()
	side := sidefile.New(limit)
	vols := map[string]*volume.Volume{"v0": v}
	return &fixture{ss: New("ss1", tm, side, vols, []string{"v0"}), vols: vols, side: side, tm: tm}
}

func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i>>12)
	}
	return b
}

// checkPieces checks that us carry data at off as consecutive updates of at
// most max bytes each, in timestamp order.
func checkPieces(t *testing.T, us []recordset.Update, data []byte, off int64, max int) {
	t.Helper()
	var got []byte
	next := uint64(off)
	for i, u := range us {
		if len(u.Data) > max {
			t.Fatalf("update %d carries %d bytes, more than %d", i, len(u.Data), max)
		}
		if u.Offset != next || u.Length != uint64(len(u.Data)) || u.Kind != recordset.KindWrite {
			t.Fatalf("update %d: %v at %d, %d bytes (length %d), want the next piece at %d", i, u.Kind, u.Offset, len(u.Data), u.Length, next)
		}
		if i > 0 && u.Timestamp <= us[i-1].Timestamp {
			t.Fatalf("update %d stamped %d, not after %d", i, u.Timestamp, us[i-1].Timestamp)
		}
		next += u.Length
		got = append(got, u.Data...)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("the updates carry %d bytes that differ from the %d written", len(got), len(data))
	}
}

// A write larger than one update may carry is captured as several updates of
// consecutive ranges, so that every update fits a record set the secondary
// accepts.
func TestLargeWriteCapturedAsSeveralUpdates(t *testing.T) {
	f := bigFixture(t, 256<<20, 32<<20)
	data := pattern(10<<20 + 4096)
	if err := f.ss.Write(context.Background(), "v0", data, 1<<20); err != nil {
		t.Fatal(err)
	}
	us, _, _ := f.ss.Drain()
	if len(us) < 3 {
		t.Fatalf("a %d-byte write captured as %d update(s)", len(data), len(us))
	}
	checkPieces(t, us, data, 1<<20, MaxUpdate)
	if got := readVol(t, f.vols["v0"], 1<<20, int64(len(data))); !bytes.Equal(got, data) {
		t.Fatal("the primary volume does not hold the write")
	}
	releaseAll(f.side, us)
	if u := f.side.Stats().Used; u != 0 {
		t.Fatalf("Used = %d after releasing every piece", u)
	}
}

// A write larger than the whole sidefile streams through it in pieces while
// the mover drains and the secondary acknowledges.
func TestWriteLargerThanSidefileStreams(t *testing.T) {
	const limit = 1 << 20
	f := bigFixture(t, limit, 16<<20)
	data := pattern(8 << 20)
	done := make(chan error, 1)
	go func() { done <- f.ss.Write(context.Background(), "v0", data, 0) }()
	var us []recordset.Update
	deadline := time.After(20 * time.Second)
	for {
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("a write of %d bytes through a sidefile of %d: %v", len(data), limit, err)
			}
			rest, _, _ := f.ss.Drain()
			us = append(us, rest...)
			checkPieces(t, us, data, 0, limit)
			return
		case <-deadline:
			t.Fatalf("a write of %d bytes through a sidefile of %d did not finish; %d bytes captured", len(data), limit, len(us))
		case <-time.After(time.Millisecond):
			d, _, _ := f.ss.Drain()
			us = append(us, d...)
			releaseAll(f.side, d) // the secondary acknowledged them
		}
	}
}
