package secondary

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"duplex/recordset"
	"duplex/volume"
)

// A read view holds at most MaxViewBytes of before images (one NBD
// connection to a secondary export pins one), and the views together
// ViewsBudget. keepForViews reads the before images of everything a group
// overwrites into memory first, all of it, and only then finds the view
// over its bound: a trim or zeroing of a whole volume (mkfs discards the
// device) carries no data in the group, yet makes the secondary read and
// keep the volume's data in memory while any connection is open. A 768 MiB
// volume with data in every MiB takes the heap past 768 MiB, three times a
// view's bound; a volume of a few TiB would have the secondary killed for
// memory, and again at each restart's replay once a client reconnects.
func TestReadViewOfAWholeVolumeTrimStaysWithinItsBound(t *testing.T) {
	const size = 768 << 20
	dir := t.TempDir()
	img := filepath.Join(dir, "vol1.img")
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	// One byte of data in every MiB: the file stays sparse, and every MiB
	// read reads as data.
	for off := int64(0); off < size; off += 1 << 20 {
		if _, err := f.WriteAt([]byte{0xEE}, off); err != nil {
			t.Fatal(err)
		}
	}
	f.Close()
	v, err := volume.Open(img, size)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	sec, err := Open(Config{Session: "s", Subsystems: []string{"ss1"}, Volumes: map[string]*volume.Volume{"vol1": v},
		JournalDir: filepath.Join(dir, "journal"), StatePath: filepath.Join(dir, "state.json"),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer sec.Close()
	r := linkRig(t, sec, v, size)
	defer r.wg.Wait()
	defer r.cancel()

	view, err := sec.Pin()
	if err != nil {
		t.Fatal(err)
	}
	defer view.Close()
	runtime.GC()
	var base runtime.MemStats
	runtime.ReadMemStats(&base)
	var peak atomic.Uint64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peak.Load() {
				peak.Store(ms.HeapInuse)
			}
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
		}
	}()
	r.sendSet(t, 1, []recordset.Update{{Volume: "vol1", Kind: recordset.KindTrim, Offset: 0, Length: size}})
	waitGate(t, "the trim applied", func() bool { return sec.Stats().Group == 1 || sec.Stats().Stopped != "" })
	close(stop)
	<-sampled
	grew := int64(peak.Load()) - int64(base.HeapInuse)
	t.Logf("heap grew by %d MiB while the trim of a %d MiB volume was applied with one view open", grew>>20, size>>20)
	if limit := int64(MaxViewBytes + 128<<20); grew > limit {
		t.Fatalf("applying a trim of the whole volume with a read view open took %d MiB of heap, past a view's bound of %d MiB (and past the %d MiB allowed here)",
			grew>>20, MaxViewBytes>>20, limit>>20)
	}
}
