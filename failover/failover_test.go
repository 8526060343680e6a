package failover

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"duplex/bitmap"
	"duplex/disk"
	"duplex/transport"
)

var sizes = map[string]int64{"a": 8 << 20, "b": 3<<20 + 4096}

// write is the write path of a promoted site: the region on disk first,
// then the bitmap (and then the volume).
func write(t *testing.T, c *Changes, vol string, off, length int64) {
	t.Helper()
	if err := c.Stick(vol, off, length); err != nil {
		t.Fatal(err)
	}
	c.Bitmap(vol).Set(off, length)
}

// crash drops c as a kill -9 would: nothing saved, nothing closed but the
// lock, which the kernel releases with the process.
func crash(c *Changes) { c.lock.Close() }

func regions(bm *bitmap.Bitmap) []int64 {
	var rs []int64
	for r, _, _, ok := bm.Next(0); ok; r, _, _, ok = bm.Next(r + 1) {
		rs = append(rs, r)
	}
	return rs
}

// want returns the regions [off, off+length) ranges touch.
func want(ranges ...[2]int64) []int64 {
	var rs []int64
	for _, rg := range ranges {
		for r := rg[0] / Region; r*Region < rg[0]+rg[1]; r++ {
			if !slices.Contains(rs, r) {
				rs = append(rs, r)
			}
		}
	}
	slices.Sort(rs)
	return rs
}

func open(t *testing.T, fsys disk.FS, dir string) *Changes {
	t.Helper()
	c, err := OpenChanges(fsys, dir, sizes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Every region a write touched is among the changed regions after a kill -9,
// exactly those, and again after a second kill -9 of the run that recovered
// them: the log's marks stay until a rejoin copies them.
func TestChangesSurviveKill(t *testing.T) {
	dir := t.TempDir()
	a1, a2, b1 := [2]int64{0, 4096}, [2]int64{Region - 512, 1024}, [2]int64{3 << 20, 4096}
	c := open(t, nil, dir)
	write(t, c, "a", a1[0], a1[1])
	write(t, c, "a", a2[0], a2[1]) // straddles two regions
	write(t, c, "b", b1[0], b1[1]) // the volume's last, partial region
	crash(c)

	c = open(t, nil, dir)
	if got, w := regions(c.Bitmap("a")), want(a1, a2); !slices.Equal(got, w) {
		t.Fatalf("after kill -9, a's changed regions are %v, want %v", got, w)
	}
	if got, w := regions(c.Bitmap("b")), want(b1); !slices.Equal(got, w) {
		t.Fatalf("after kill -9, b's changed regions are %v, want %v", got, w)
	}
	// The reopen wrote the recovered regions into the bitmap files.
	data, err := os.ReadFile(filepath.Join(dir, "a.bitmap"))
	if err != nil {
		t.Fatal(err)
	}
	onDisk, err := bitmap.Decode(data, sizes["a"])
	if err != nil {
		t.Fatal(err)
	}
	if got, w := regions(onDisk), want(a1, a2); !slices.Equal(got, w) {
		t.Fatalf("a.bitmap holds %v after the restart, want %v", got, w)
	}
	a3 := [2]int64{5 << 20, 2 * Region}
	write(t, c, "a", a3[0], a3[1])
	crash(c)

	c = open(t, nil, dir)
	if got, w := regions(c.Bitmap("a")), want(a1, a2, a3); !slices.Equal(got, w) {
		t.Fatalf("after a second kill -9, a's changed regions are %v, want %v", got, w)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	c = open(t, nil, dir)
	defer c.Close()
	if got, w := regions(c.Bitmap("a")), want(a1, a2, a3); !slices.Equal(got, w) {
		t.Fatalf("after a clean stop, a's changed regions are %v, want %v", got, w)
	}
}

// A write whose region is on disk but that crashed before it reached the
// bitmap in memory (or the volume) is counted changed: it may have reached
// the volume, and a rejoin copying a region too many costs only time.
func TestChangesKillBetweenLogAndBitmap(t *testing.T) {
	dir := t.TempDir()
	c := open(t, nil, dir)
	if err := c.Stick("a", 7<<20, 4096); err != nil {
		t.Fatal(err)
	}
	crash(c)
	c = open(t, nil, dir)
	defer c.Close()
	if got, w := regions(c.Bitmap("a")), want([2]int64{7 << 20, 4096}); !slices.Equal(got, w) {
		t.Fatalf("changed regions %v, want %v", got, w)
	}
}

// A region whose mark did not reach the disk is refused to the write (which
// then fails, unacknowledged), and marked again by the next write there.
func TestChangesFailedMarkRefusesTheWrite(t *testing.T) {
	for _, op := range []disk.Op{disk.OpWrite, disk.OpSync} {
		t.Run(op.String(), func(t *testing.T) {
			dir := t.TempDir()
			in := disk.NewInjector(nil)
			c := open(t, in, dir)
			in.Inject(disk.Fault{Op: op, Under: filepath.Join(dir, "changes.log"), Once: true})
			if err := c.Stick("a", 1<<20, 4096); err == nil {
				t.Fatalf("Stick succeeded although the log's %s failed", op)
			}
			if in.Injected(op) != 1 {
				t.Fatalf("the %s fault did not fire", op)
			}
			write(t, c, "a", 1<<20, 4096)
			crash(c)
			c = open(t, nil, dir)
			defer c.Close()
			if got, w := regions(c.Bitmap("a")), want([2]int64{1 << 20, 4096}); !slices.Equal(got, w) {
				t.Fatalf("changed regions %v, want %v", got, w)
			}
		})
	}
}

// A bitmap that does not decode is refused with the way out: the regions
// it held are unknown, and the log holds only those written since.
func TestChangesCorruptBitmapRefused(t *testing.T) {
	dir := t.TempDir()
	c := open(t, nil, dir)
	write(t, c, "a", 0, 4096)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "a.bitmap")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)-1] ^= 1
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = OpenChanges(nil, dir, sizes)
	if !errors.Is(err, bitmap.ErrCorrupt) {
		t.Fatalf("OpenChanges over a corrupt bitmap: %v, want bitmap.ErrCorrupt", err)
	}
}

// A failed save at open (the rename of a bitmap) fails the open and loses
// nothing: the next open finds the log's marks again.
func TestChangesFailedSaveLosesNothing(t *testing.T) {
	dir := t.TempDir()
	c := open(t, nil, dir)
	write(t, c, "b", 2<<20, 4096)
	crash(c)
	in := disk.NewInjector(nil)
	in.Inject(disk.Fault{Op: disk.OpRename, Under: dir, Once: true})
	if _, err := OpenChanges(in, dir, sizes); err == nil {
		t.Fatal("OpenChanges succeeded although saving a bitmap failed")
	}
	c = open(t, nil, dir)
	defer c.Close()
	if got, w := regions(c.Bitmap("b")), want([2]int64{2 << 20, 4096}); !slices.Equal(got, w) {
		t.Fatalf("changed regions %v, want %v", got, w)
	}
}

// Two processes never track one site's changes at once.
func TestChangesLocked(t *testing.T) {
	dir := t.TempDir()
	c := open(t, nil, dir)
	defer c.Close()
	if _, err := OpenChanges(nil, dir, sizes); err == nil {
		t.Fatal("a second OpenChanges of the same directory succeeded")
	}
}

// Changes opened without the LOCK keep it their caller's: their Close
// saves them and leaves it held, for a promoted site to let go once its
// volumes' writes have ended too, and the next holder reads what they
// saved.
func TestChangesLeaveTheCallersLockHeld(t *testing.T) {
	dir := t.TempDir()
	lock, err := LockChanges(nil, dir)
	if err != nil {
		t.Fatal(err)
	}
	c, err := OpenLockedChanges(nil, dir, sizes, nil)
	if err != nil {
		lock.Close()
		t.Fatal(err)
	}
	write(t, c, "a", 1<<20, 4096)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if again, err := OpenChanges(nil, dir, sizes); err == nil {
		again.Close()
		t.Fatal("the changes let their caller's LOCK go at their Close")
	}
	lock.Close()
	again := open(t, nil, dir)
	defer again.Close()
	if again.Bitmap("a").DirtyBytes() == 0 {
		t.Error("the region written before the Close is not among the changes the next holder opens")
	}
}

func TestPromotionRoundTrip(t *testing.T) {
	dir := t.TempDir()
	if _, err := ReadPromotion(nil, dir); !errors.Is(err, ErrNotPromoted) {
		t.Fatalf("ReadPromotion of a site never promoted: %v, want ErrNotPromoted", err)
	}
	p := Promotion{Session: "s", At: 5, ConsistencyTime: 4, Group: 3, Generation: transport.Generation(2), Follows: transport.Generation(1),
		Volumes: map[string]string{"a": "consistent as of x"}}
	if err := WritePromotion(nil, dir, p); err != nil {
		t.Fatal(err)
	}
	got, err := ReadPromotion(nil, dir)
	if err != nil {
		t.Fatal(err)
	}
	if got.Session != p.Session || got.At != p.At || got.ConsistencyTime != p.ConsistencyTime || got.Group != p.Group ||
		got.Generation != p.Generation || got.Follows != p.Follows || got.Volumes["a"] != p.Volumes["a"] {
		t.Fatalf("read back %+v, want %+v", got, p)
	}
}

// maxFuzzPromotion bounds the record FuzzReadPromotion reads: a longer
// input is written as its first maxFuzzPromotion bytes. The engine
// minimizes every input that finds new coverage at a cost that grows as
// the square of its length (golang/go#51484), and each try here writes a
// file: mutations of the seeds reach kilobytes within seconds, and the
// workers then minimize instead of fuzzing. A promotion of two volumes,
// every field set, is under it (TestFuzzReadPromotionSeedsAreWhole), and
// the JSON decoder's paths, which a longer record only repeats, are
// reached in a few bytes each.
const maxFuzzPromotion = 512

// promotionSeeds are FuzzReadPromotion's seeds: records WritePromotion
// writes, and records it never does.
func promotionSeeds(t testing.TB) [][]byte {
	t.Helper()
	dir := t.TempDir()
	p := Promotion{Session: "session-1", At: 1_765_000_000_000_000_000, ConsistencyTime: 1_764_999_999_000_000_000, Group: 123456,
		Generation: transport.Generation(0xfeedfacecafe), Follows: transport.Generation(0xbeef), HeldGroups: 7,
		Volumes: map[string]string{"vol1": "consistent as of 2026-12-06T15:00:00.123456789Z", "vol2": "not consistent: its copy was under way"}}
	if err := WritePromotion(nil, dir, p); err != nil {
		t.Fatal(err)
	}
	full, err := os.ReadFile(filepath.Join(dir, promotionFile))
	if err != nil {
		t.Fatal(err)
	}
	return [][]byte{
		full,
		[]byte(`{"session":"s","promoted_at_ns":1,"generation":"0000000000000002"}`),
		[]byte(`{`),
	}
}

// Every seed of FuzzReadPromotion is read whole: none is longer than
// what it reads.
func TestFuzzReadPromotionSeedsAreWhole(t *testing.T) {
	for i, b := range promotionSeeds(t) {
		if len(b) > maxFuzzPromotion {
			t.Errorf("seed %d: %d bytes, FuzzReadPromotion reads %d", i, len(b), maxFuzzPromotion)
		}
	}
}

func FuzzReadPromotion(f *testing.F) {
	for _, b := range promotionSeeds(f) {
		f.Add(b)
	}
	// One directory for every input of this process: a directory made
	// and removed for each costs more than reading the record. Each input
	// writes the record over the last one's; the engine runs one input at
	// a time in a process.
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		data = data[:min(len(data), maxFuzzPromotion)]
		if err := os.WriteFile(filepath.Join(dir, promotionFile), data, 0o644); err != nil {
			t.Fatal(err)
		}
		ReadPromotion(nil, dir) // must not panic
	})
}
