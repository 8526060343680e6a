package subsystem

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"duplex/bitmap"
	"duplex/recordset"
	"duplex/sidefile"
	"duplex/timer"
	"duplex/volume"
)

const volSize = 64 << 10

type fixture struct {
	ss   *Subsystem
	vols map[string]*volume.Volume
	side *sidefile.Sidefile
	tm   *timer.Timer
}

func newFixture(t testing.TB, limit int64, names ...string) *fixture {
	t.Helper()
	if len(names) == 0 {
		names = []string{"v0"}
	}
	dir := t.TempDir()
	vols := map[string]*volume.Volume{}
	for _, n := range names {
		v, err := volume.Open(filepath.Join(dir, n+".img"), volSize)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { v.Close() })
		vols[n] = v
	}
	tm := timer.New()
	side := sidefile.New(limit)
	return &fixture{ss: New("ss1", tm, side, vols, names), vols: vols, side: side, tm: tm}
}

func readVol(t *testing.T, v *volume.Volume, off, n int64) []byte {
	t.Helper()
	b := make([]byte, n)
	if err := v.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	return b
}

// replay applies updates in timestamp order to an in-memory image: what
// the secondary will hold.
func replay(size int64, us []recordset.Update, vol string) []byte {
	img := make([]byte, size)
	for _, u := range us {
		if u.Volume != vol {
			continue
		}
		switch u.Kind {
		case recordset.KindWrite:
			copy(img[u.Offset:], u.Data)
		case recordset.KindZeroes, recordset.KindTrim:
			clear(img[u.Offset : u.Offset+u.Length])
		}
	}
	return img
}

func releaseAll(side *sidefile.Sidefile, us []recordset.Update) {
	var n int64
	for _, u := range us {
		n += sidefile.Cost(len(u.Data))
	}
	side.Release(n)
}

// Concurrent overlapping writes land on the primary volume in timestamp
// order: afterwards every byte holds what the update with the highest
// timestamp covering it wrote, which is what the secondary will hold.
func TestOverlappingConcurrentWritesAgreeWithSidefile(t *testing.T) {
	const block = 4096
	f := newFixture(t, 64<<20, "v0", "v1")
	ctx := context.Background()
	rounds := 80
	if testing.Short() {
		rounds = 10
	}
	var history []recordset.Update
	for round := range rounds {
		const writers = 16
		var wg sync.WaitGroup
		errs := make(chan error, writers*8)
		start := make(chan struct{}) // all writers start together
		for g := range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				rng := rand.New(rand.NewPCG(uint64(round), uint64(g)))
				for i := range 8 {
					vol := "v0"
					if rng.IntN(4) == 0 {
						vol = "v1"
					}
					fill := byte(g*8 + i + 1)
					var err error
					switch k := rng.IntN(10); {
					case k < 3: // the whole block
						err = f.ss.Write(ctx, vol, bytes.Repeat([]byte{fill}, block), block)
					case k < 4: // a long write over it, slow enough to be overtaken
						err = f.ss.Write(ctx, vol, bytes.Repeat([]byte{fill}, 16*block), 0)
					case k < 8: // a partly overlapping range around it
						off := block - 512 + rng.Int64N(block)
						n := 1 + rng.IntN(block)
						err = f.ss.Write(ctx, vol, bytes.Repeat([]byte{fill}, n), off)
					case k < 9:
						err = f.ss.WriteZeroes(ctx, vol, block+rng.Int64N(block/2), 1+rng.Int64N(block/2))
					default:
						err = f.ss.Trim(ctx, vol, block+rng.Int64N(block/2), 1+rng.Int64N(block/2))
					}
					if err != nil {
						errs <- err
					}
				}
			}()
		}
		close(start)
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		us, _, _ := f.ss.Drain()
		if len(us) != writers*8 {
			t.Fatalf("round %d: drained %d updates, want %d", round, len(us), writers*8)
		}
		// Each round starts from what the previous ones left, so the
		// expected image is the replay of every round so far.
		history = append(history, us...)
		for _, name := range []string{"v0", "v1"} {
			want := replay(volSize, history, name)
			got := readVol(t, f.vols[name], 0, volSize)
			if !bytes.Equal(got, want) {
				i := firstDiff(got, want)
				t.Fatalf("round %d: volume %s byte %d is %d on the primary, but the update with the highest timestamp covering it wrote %d",
					round, name, i, got[i], want[i])
			}
		}
		releaseAll(f.side, us)
	}
}

func firstDiff(a, b []byte) int {
	for i := range a {
		if a[i] != b[i] {
			return i
		}
	}
	return -1
}

// Timestamps in the sidefile strictly increase, update sequence numbers are
// contiguous from 1, and each Drain's horizon lies after every update it
// drained and before every update captured later.
func TestDrainOrderAndHorizon(t *testing.T) {
	f := newFixture(t, 64<<20, "v0", "v1")
	ctx := context.Background()
	const writers, perWriter = 8, 300
	var wg sync.WaitGroup
	for g := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perWriter {
				vol := []string{"v0", "v1"}[(g+i)%2]
				var err error
				if i%5 == 4 {
					err = f.ss.WriteZeroes(ctx, vol, int64(g*512), 512)
				} else {
					err = f.ss.Write(ctx, vol, []byte{byte(g), byte(i)}, int64(g*512+i%256))
				}
				if err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	type batch struct {
		us      []recordset.Update
		horizon int64
	}
	var batches []batch
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	for finished := false; !finished; {
		select {
		case <-done:
			finished = true
		default:
		}
		us, h, _ := f.ss.Drain()
		batches = append(batches, batch{us, h})
		releaseAll(f.side, us)
	}
	var all []recordset.Update
	for i, b := range batches {
		for _, u := range b.us {
			if u.Timestamp >= b.horizon {
				t.Fatalf("batch %d: update stamped %d at or after the drain's horizon %d", i, u.Timestamp, b.horizon)
			}
		}
		if i > 0 && b.horizon <= batches[i-1].horizon {
			t.Fatalf("batch %d: horizon %d not after the previous %d", i, b.horizon, batches[i-1].horizon)
		}
		for _, later := range batches[i+1:] {
			for _, u := range later.us {
				if u.Timestamp <= b.horizon {
					t.Fatalf("batch %d's horizon %d, but a later batch holds update %d", i, b.horizon, u.Timestamp)
				}
			}
		}
		all = append(all, b.us...)
	}
	if len(all) != writers*perWriter {
		t.Fatalf("drained %d updates, want %d", len(all), writers*perWriter)
	}
	for i, u := range all {
		if u.Seq != uint64(i+1) {
			t.Fatalf("update %d has sequence number %d, want %d", i, u.Seq, i+1)
		}
		if i > 0 && u.Timestamp <= all[i-1].Timestamp {
			t.Fatalf("update %d stamped %d, not after %d", i, u.Timestamp, all[i-1].Timestamp)
		}
		if u.Kind == recordset.KindWrite && u.Length != uint64(len(u.Data)) {
			t.Fatalf("update %d: length %d with %d bytes of data", i, u.Length, len(u.Data))
		}
	}
	if got := f.side.Stats().Used; got != 0 {
		t.Fatalf("sidefile holds %d bytes after every update was released", got)
	}
	// A write after the last drain is stamped after its horizon.
	last := batches[len(batches)-1].horizon
	if err := f.ss.Write(ctx, "v0", []byte{1}, 0); err != nil {
		t.Fatal(err)
	}
	us, _, _ := f.ss.Drain()
	if len(us) != 1 || us[0].Timestamp <= last {
		t.Fatalf("write after the last drain: %v, want one update after %d", us, last)
	}
}

func TestDrainCapturesWhatWasWritten(t *testing.T) {
	f := newFixture(t, 1<<20, "a", "b")
	ctx := context.Background()
	data := []byte("hello, secondary")
	if err := f.ss.Write(ctx, "b", data, 100); err != nil {
		t.Fatal(err)
	}
	data[0] = 'J' // Write copied it
	if err := f.ss.WriteZeroes(ctx, "a", 4096, 8192); err != nil {
		t.Fatal(err)
	}
	if err := f.ss.Trim(ctx, "a", 0, 512); err != nil {
		t.Fatal(err)
	}
	us, h, read := f.ss.Drain()
	want := []recordset.Update{
		{Volume: "b", Kind: recordset.KindWrite, Offset: 100, Length: 16, Seq: 1, Data: []byte("hello, secondary")},
		{Volume: "a", Kind: recordset.KindZeroes, Offset: 4096, Length: 8192, Seq: 2},
		{Volume: "a", Kind: recordset.KindTrim, Offset: 0, Length: 512, Seq: 3},
	}
	if len(us) != len(want) {
		t.Fatalf("drained %d updates, want %d", len(us), len(want))
	}
	for i := range want {
		got := us[i]
		got.Timestamp = 0
		if want[i].Kind == recordset.KindWrite {
			want[i].Checksum() // at capture, for the mover
		}
		if fmt.Sprint(got) != fmt.Sprint(want[i]) {
			t.Errorf("update %d: got %+v, want %+v", i, got, want[i])
		}
	}
	if h <= us[2].Timestamp || h > f.tm.Last() {
		t.Errorf("horizon %d, want after %d and at most the timer's last stamp %d", h, us[2].Timestamp, f.tm.Last())
	}
	if read.IsZero() {
		t.Error("zero read time")
	}
	if got := readVol(t, f.vols["b"], 100, 16); string(got) != "hello, secondary" {
		t.Errorf("primary volume holds %q", got)
	}
	wantUsed := sidefile.Cost(16) + 2*sidefile.Cost(0)
	if got := f.side.Stats().Used; got != wantUsed {
		t.Errorf("sidefile Used = %d after drain, want %d: bytes stay reserved until released", got, wantUsed)
	}
	if us, _, _ := f.ss.Drain(); len(us) != 0 {
		t.Errorf("second Drain returned %d updates", len(us))
	}
}

// TestWriteOwnedKeepsTheBuffer: WriteOwned captures the caller's buffer
// itself, not a copy, and a write larger than a piece as updates that are
// each a slice of it, in order; the volume holds the data all the same.
func TestWriteOwnedKeepsTheBuffer(t *testing.T) {
	f := newFixture(t, 64<<10, "a") // pieces of 16 KiB - overhead, rounded down to 12 KiB
	ctx := context.Background()
	data := make([]byte, 40<<10)
	for i := range data {
		data[i] = byte(i * 7)
	}
	want := bytes.Clone(data)
	if err := f.ss.WriteOwned(ctx, "a", data, 4096); err != nil {
		t.Fatal(err)
	}
	us, _, _ := f.ss.Drain()
	if len(us) < 2 {
		t.Fatalf("a write of %d bytes captured as %d updates, want pieces", len(data), len(us))
	}
	at := 0
	for i, u := range us {
		if u.Offset != uint64(4096+at) || len(u.Data) == 0 || &u.Data[0] != &data[at] {
			t.Fatalf("update %d at %d of %d bytes does not hold the caller's buffer at %d", i, u.Offset, len(u.Data), at)
		}
		at += len(u.Data)
	}
	if at != len(data) {
		t.Fatalf("updates hold %d bytes, want %d", at, len(data))
	}
	if got := readVol(t, f.vols["a"], 4096, int64(len(want))); !bytes.Equal(got, want) {
		t.Error("the volume does not hold the data written")
	}
}

// A request the primary cannot perform is refused before it is captured:
// the secondary must never receive it.
func TestOutOfRangeRejectedBeforeCapture(t *testing.T) {
	f := newFixture(t, 1<<20)
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		do   func() error
	}{
		{"write past end", func() error { return f.ss.Write(ctx, "v0", make([]byte, 2), volSize-1) }},
		{"write at end", func() error { return f.ss.Write(ctx, "v0", []byte{1}, volSize) }},
		{"write bigger than volume", func() error { return f.ss.Write(ctx, "v0", make([]byte, volSize+1), 0) }},
		{"negative offset", func() error { return f.ss.Write(ctx, "v0", []byte{1}, -1) }},
		{"zeroes past end", func() error { return f.ss.WriteZeroes(ctx, "v0", volSize-10, 11) }},
		{"trim past end", func() error { return f.ss.Trim(ctx, "v0", 0, volSize+1) }},
		{"zeroes negative length", func() error { return f.ss.WriteZeroes(ctx, "v0", 0, -1) }},
		{"trim negative length", func() error { return f.ss.Trim(ctx, "v0", 100, -50) }},
		{"huge offset", func() error { return f.ss.Write(ctx, "v0", []byte{1}, 1<<62) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.do()
			if !errors.Is(err, volume.ErrOutOfRange) {
				t.Errorf("err = %v, want ErrOutOfRange", err)
			}
			st := f.side.Stats()
			if st.Captured != 0 || st.Used != 0 {
				t.Errorf("sidefile after a refused request: %d captured, %d bytes used; want none", st.Captured, st.Used)
			}
			us, _, _ := f.ss.Drain()
			for _, u := range us {
				t.Errorf("captured %v update [%d, +%d)", u.Kind, u.Offset, u.Length)
			}
			releaseAll(f.side, us)
		})
	}
	// Edges that are in range are accepted.
	if err := f.ss.Write(ctx, "v0", []byte{1}, volSize-1); err != nil {
		t.Errorf("last byte: %v", err)
	}
	if err := f.ss.WriteZeroes(ctx, "v0", 0, volSize); err != nil {
		t.Errorf("whole volume: %v", err)
	}
	if err := f.ss.Write(ctx, "v0", nil, volSize); err != nil {
		t.Errorf("empty write at the end: %v", err)
	}
}

func TestUnknownVolumeRejected(t *testing.T) {
	f := newFixture(t, 1<<20)
	if err := f.ss.Write(context.Background(), "nope", []byte{1}, 0); err == nil {
		t.Fatal("write to an unknown volume succeeded")
	}
	if err := f.ss.Flush("nope"); err == nil {
		t.Fatal("flush of an unknown volume succeeded")
	}
	if st := f.side.Stats(); st.Captured != 0 || st.Used != 0 {
		t.Fatalf("sidefile %+v after a refused write", st)
	}
}

// waitFor polls cond until it holds or a deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// A full sidefile makes writers wait, before they are stamped or captured,
// until the mover releases bytes.
func TestFullSidefileMakesWritersWait(t *testing.T) {
	const n = 1000
	f := newFixture(t, 2*sidefile.Cost(n))
	ctx := context.Background()
	for i := range 2 {
		if err := f.ss.Write(ctx, "v0", bytes.Repeat([]byte{1}, n), int64(i*n)); err != nil {
			t.Fatal(err)
		}
	}
	done := make(chan error, 1)
	go func() { done <- f.ss.Write(ctx, "v0", bytes.Repeat([]byte{3}, n), 5000) }()
	waitFor(t, "the third writer to wait", func() bool { return f.side.Stats().Waiting == 1 })
	select {
	case err := <-done:
		t.Fatalf("write into a full sidefile returned %v without waiting", err)
	default:
	}
	stampBefore := f.tm.Last()
	if got := f.side.Stats().Captured; got != 2 {
		t.Fatalf("%d updates captured while the third waits, want 2", got)
	}
	if got := readVol(t, f.vols["v0"], 5000, 1); got[0] != 0 {
		t.Fatal("waiting write reached the volume")
	}
	us, _, _ := f.ss.Drain() // the mover reads, but has not released yet
	if len(us) != 2 {
		t.Fatalf("drained %d", len(us))
	}
	if got := f.side.Stats().Waiting; got != 1 {
		t.Fatalf("Waiting = %d after Drain; Drain must not free space", got)
	}
	f.side.Release(sidefile.Cost(n)) // one acknowledged
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("writer still waiting after Release")
	}
	us, _, _ = f.ss.Drain()
	if len(us) != 1 || us[0].Timestamp <= stampBefore {
		t.Fatalf("third update %v, want one stamped after %d (after its wait)", us, stampBefore)
	}
	if got := readVol(t, f.vols["v0"], 5000, 1); got[0] != 3 {
		t.Fatal("released write did not reach the volume")
	}
	if st := f.side.Stats(); st.Waits != 1 || st.Used != 2*sidefile.Cost(n) {
		t.Fatalf("Stats %+v, want 1 wait and two updates' bytes used", st)
	}
}

func TestWaitingWriterHonoursContext(t *testing.T) {
	f := newFixture(t, sidefile.Cost(10))
	if err := f.ss.Write(context.Background(), "v0", make([]byte, 10), 0); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.ss.Write(ctx, "v0", []byte{7}, 100) }()
	waitFor(t, "the writer to wait", func() bool { return f.side.Stats().Waiting == 1 })
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled wait: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("writer did not give up on cancel")
	}
	if st := f.side.Stats(); st.Captured != 1 || st.Used != sidefile.Cost(10) {
		t.Fatalf("after a cancelled write: %+v, want only the first update", st)
	}
	if got := readVol(t, f.vols["v0"], 100, 1); got[0] != 0 {
		t.Fatal("cancelled write reached the volume")
	}
}

func TestAccessors(t *testing.T) {
	f := newFixture(t, 1<<20, "x", "y")
	if f.ss.ID() != "ss1" || f.ss.Sidefile() != f.side {
		t.Fatal("ID or Sidefile wrong")
	}
	if got := f.ss.VolumeNames(); len(got) != 2 || got[0] != "x" || got[1] != "y" {
		t.Fatalf("VolumeNames = %v", got)
	}
	if v, ok := f.ss.Volume("y"); !ok || v != f.vols["y"] {
		t.Fatal("Volume(y)")
	}
	if _, ok := f.ss.Volume("z"); ok {
		t.Fatal("Volume(z) found")
	}
	if err := f.ss.Flush("x"); err != nil {
		t.Fatal(err)
	}
}

// A copy update holds its region's content as of its timestamp: replaying
// every drained update in timestamp order finds, at each copy, exactly the
// bytes the copy carries, and a copy sent as zeroes (a hole on the primary)
// only where the replay holds zeroes. The replay ends at the primary's
// content.
func TestCopyCapturesContentAsOfItsTimestamp(t *testing.T) {
	const region = 16 << 10
	rounds := 20
	if testing.Short() {
		rounds = 4
	}
	for round := range rounds {
		f := newFixture(t, 64<<20)
		ctx := context.Background()
		var wg sync.WaitGroup
		start := make(chan struct{})
		for g := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				rng := rand.New(rand.NewPCG(uint64(round), uint64(g)))
				for i := range 30 {
					off := rng.Int64N(region - 4096)
					var err error
					if rng.IntN(5) == 0 {
						// Odd lengths tell a user's zeroes from a copied hole.
						err = f.ss.WriteZeroes(ctx, "v0", off, 2*rng.Int64N(2048)+1)
					} else {
						err = f.ss.Write(ctx, "v0", bytes.Repeat([]byte{byte(g*30 + i + 1)}, 1+rng.IntN(4096)), off)
					}
					if err != nil {
						t.Error(err)
					}
				}
			}()
		}
		for c := range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				rng := rand.New(rand.NewPCG(uint64(round), uint64(100+c)))
				for range 15 {
					off := 512 * rng.Int64N(region/512-8)
					if err := f.ss.Copy(ctx, "v0", off, 512*(1+rng.Int64N(8))*2); err != nil {
						t.Error(err)
					}
				}
			}()
		}
		var all []recordset.Update
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		close(start)
		for finished := false; !finished; {
			select {
			case <-done:
				finished = true
			default:
			}
			us, _, _ := f.ss.Drain()
			// The mover encodes what it drained at once: a copy's data must
			// be complete when Drain returns.
			for i := range us {
				us[i].Data = bytes.Clone(us[i].Data)
			}
			all = append(all, us...)
			releaseAll(f.side, us)
		}
		img := make([]byte, volSize)
		for i, u := range all {
			if i > 0 && u.Timestamp <= all[i-1].Timestamp {
				t.Fatalf("round %d: updates out of timestamp order", round)
			}
			r := img[u.Offset : u.Offset+u.Length]
			switch {
			case u.Kind == recordset.KindCopy:
				if !bytes.Equal(u.Data, r) {
					t.Fatalf("round %d: copy [%d, +%d) at %d carries bytes that differ from the content as of its timestamp at byte %d",
						round, u.Offset, u.Length, u.Timestamp, firstDiff(u.Data, r))
				}
			case u.Kind == recordset.KindZeroes && u.Length%2 == 0:
				if !bytes.Equal(r, make([]byte, len(r))) {
					t.Fatalf("round %d: copy of [%d, +%d) sent as a hole, but the region held data at %d", round, u.Offset, u.Length, u.Timestamp)
				}
			}
			if u.Kind.HasData() {
				copy(r, u.Data)
			} else {
				clear(r)
			}
		}
		if got := readVol(t, f.vols["v0"], 0, volSize); !bytes.Equal(got, img) {
			t.Fatalf("round %d: primary differs from the replay at byte %d", round, firstDiff(got, img))
		}
	}
}

func TestCopyRejectsBadRange(t *testing.T) {
	f := newFixture(t, 1<<20)
	ctx := context.Background()
	for _, r := range [][2]int64{{-1, 10}, {0, 0}, {0, -5}, {volSize - 1, 2}, {0, volSize + 1}} {
		if err := f.ss.Copy(ctx, "v0", r[0], r[1]); !errors.Is(err, volume.ErrOutOfRange) {
			t.Errorf("Copy(%d, %d) = %v, want ErrOutOfRange", r[0], r[1], err)
		}
	}
	if err := f.ss.Copy(ctx, "nope", 0, 1); err == nil {
		t.Error("Copy of an unknown volume succeeded")
	}
	if st := f.side.Stats(); st.Captured != 0 || st.Used != 0 {
		t.Fatalf("sidefile %+v after refused copies", st)
	}
}

// While a volume is suspended its writes are not captured, only marked in
// the bitmap (before they reach the volume); after Resume they are captured
// again.
func TestSuspendTracksInsteadOfCapturing(t *testing.T) {
	f := newFixture(t, 1<<20, "a", "b")
	ctx := context.Background()
	bm := bitmap.New(volSize, 4096)
	f.ss.Suspend("a", bm)
	if f.ss.Tracking("a") != bm || f.ss.Tracking("b") != nil {
		t.Fatal("Tracking does not report the suspension")
	}
	if err := f.ss.Write(ctx, "a", []byte("suspended"), 5000); err != nil {
		t.Fatal(err)
	}
	if err := f.ss.WriteZeroes(ctx, "a", 20000, 10000); err != nil {
		t.Fatal(err)
	}
	if err := f.ss.Write(ctx, "b", []byte("shadowed"), 0); err != nil {
		t.Fatal(err)
	}
	us, _, _ := f.ss.Drain()
	if len(us) != 1 || us[0].Volume != "b" {
		t.Fatalf("captured %v while a was suspended, want only b's write", us)
	}
	releaseAll(f.side, us)
	if got := readVol(t, f.vols["a"], 5000, 9); string(got) != "suspended" {
		t.Fatalf("suspended write did not reach the primary: %q", got)
	}
	var marked []int64
	for r, _, _, ok := bm.Next(0); ok; r, _, _, ok = bm.Next(r + 1) {
		marked = append(marked, r)
	}
	// [5000, 5009) is region 1; [20000, 30000) regions 4..7.
	if want := []int64{1, 4, 5, 6, 7}; fmt.Sprint(marked) != fmt.Sprint(want) {
		t.Fatalf("marked regions %v, want %v", marked, want)
	}
	if got := f.ss.Resume("a"); got != bm {
		t.Fatal("Resume did not return the bitmap")
	}
	if f.ss.Resume("a") != nil {
		t.Fatal("second Resume returned a bitmap")
	}
	if err := f.ss.Write(ctx, "a", []byte("again"), 0); err != nil {
		t.Fatal(err)
	}
	if us, _, _ := f.ss.Drain(); len(us) != 1 || us[0].Volume != "a" {
		t.Fatalf("after Resume: captured %v, want a's write", us)
	}
	if bm.Count() != 5 {
		t.Fatalf("bitmap changed after Resume: %d regions", bm.Count())
	}
}

// countingLog is an activity log that counts what is marked and not yet
// acknowledged; hook, if set, runs inside Mark and MarkCopy.
type countingLog struct {
	mu      sync.Mutex
	counted int
	sticky  int
	hook    func(copy bool)
	// stickHook, if set, runs inside Stick, once.
	stickHook func()
}

func (l *countingLog) Mark(vol string, off, length int64) error     { return l.mark(false) }
func (l *countingLog) MarkCopy(vol string, off, length int64) error { return l.mark(true) }

func (l *countingLog) mark(copy bool) error {
	l.mu.Lock()
	l.counted++
	h := l.hook
	l.hook = nil
	l.mu.Unlock()
	if h != nil {
		h(copy)
	}
	return nil
}

func (l *countingLog) Stick(vol string, off, length int64) error {
	l.mu.Lock()
	l.sticky++
	h := l.stickHook
	l.stickHook = nil
	l.mu.Unlock()
	if h != nil {
		h()
	}
	return nil
}

func (l *countingLog) Wrote(vol string, off, length int64) {}

func (l *countingLog) Done(vol string, off, length int64) {
	l.mu.Lock()
	l.counted--
	l.mu.Unlock()
}

func (l *countingLog) outstanding() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.counted
}

// A write that finds its volume suspended after it was marked is tracked
// instead of captured, and leaves no count behind in the activity log.
func TestRetriedWriteLeavesNoActivityLogCount(t *testing.T) {
	f := newFixture(t, 1<<20)
	al := &countingLog{}
	f.ss.SetActivityLog(al)
	bm := bitmap.New(volSize, 4096)
	al.hook = func(bool) { f.ss.Suspend("v0", bm) }
	if err := f.ss.Write(context.Background(), "v0", []byte("x"), 8192); err != nil {
		t.Fatal(err)
	}
	if us, _, _ := f.ss.Drain(); len(us) != 0 {
		t.Fatalf("captured %v for a suspended volume", us)
	}
	if bm.Count() != 1 {
		t.Fatalf("bitmap marks %d regions, want 1", bm.Count())
	}
	if n := al.outstanding(); n != 0 {
		t.Fatalf("activity log holds %d counts with nothing captured", n)
	}
	if got := f.side.Stats().Used; got != 0 {
		t.Fatalf("sidefile holds %d bytes with nothing captured", got)
	}
}

// A hole copy abandoned because a write came in leaves no count behind.
func TestAbortedHoleCopyLeavesNoActivityLogCount(t *testing.T) {
	f := newFixture(t, 1<<20)
	al := &countingLog{}
	f.ss.SetActivityLog(al)
	al.hook = func(copy bool) {
		if err := f.ss.Write(context.Background(), "v0", []byte("racing write"), 100); err != nil {
			t.Error(err)
		}
	}
	hole, err := f.ss.CopyHole(context.Background(), "v0", 0, volSize)
	if err != nil || hole {
		t.Fatalf("CopyHole with a write coming in: %v, %v; want false, nil", hole, err)
	}
	us, _, _ := f.ss.Drain()
	if len(us) != 1 || us[0].Kind != recordset.KindWrite {
		t.Fatalf("captured %v, want the write only", us)
	}
	if n := al.outstanding(); n != 1 {
		t.Fatalf("activity log holds %d counts for 1 captured update", n)
	}
}

// A copy of a volume suspended while the copy was being marked is refused:
// the secondary copy of a suspended volume stays as it was when suspended.
func TestCopyOfSuspendedVolumeRefused(t *testing.T) {
	for _, hole := range []bool{false, true} {
		t.Run(fmt.Sprint("hole=", hole), func(t *testing.T) {
			f := newFixture(t, 1<<20)
			if !hole {
				if err := f.vols["v0"].WriteAt([]byte("data"), 0); err != nil {
					t.Fatal(err)
				}
			}
			al := &countingLog{}
			f.ss.SetActivityLog(al)
			al.hook = func(bool) { f.ss.Suspend("v0", bitmap.New(volSize, 4096)) }
			err := f.ss.Copy(context.Background(), "v0", 0, volSize)
			if !errors.Is(err, ErrSuspended) {
				t.Fatalf("copy of a suspended volume: %v, want ErrSuspended", err)
			}
			if us, _, _ := f.ss.Drain(); len(us) != 0 {
				t.Fatalf("captured %v for a suspended volume", us)
			}
			if n := al.outstanding(); n != 0 {
				t.Fatalf("activity log holds %d counts with nothing captured", n)
			}
			if got := f.side.Stats().Used; got != 0 {
				t.Fatalf("sidefile holds %d bytes with nothing captured", got)
			}
		})
	}
}
