package e2e

import (
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"duplex/internal/testenv"
)

// TestNbdcopySparseOverManyConnectionsKilled copies a sparse image with
// nbdcopy over four connections at 16 requests each onto a volume full of
// other data: nbdcopy writes the data and sends WRITE_ZEROES for the holes,
// all in flight together, some beside or over one another's regions. The
// primary is killed -9 at once after nbdcopy's flush is acknowledged; after
// its restart and a drain, the primary and the secondary both hold the
// image, byte for byte.
func TestNbdcopySparseOverManyConnectionsKilled(t *testing.T) {
	t.Parallel()
	testenv.NeedTool(t, "nbdcopy", "libnbd-bin")
	testenv.NeedTool(t, "qemu-io", "qemu-utils")
	const volSize = 32 << 20
	s := newSession(t, sessionOpts{name: "e2e-nbdcopysparse", volSize: volSize})
	s.start()
	uri := nbdURI(s.cfg.Primary.NBD, "vol4")
	qemuIO(t, uri, false, "write -P 0x5c 0 32M", "flush")

	// Data extents of 1 byte to 1 MiB at odd offsets, holes between them,
	// and blocks of data that is all zeroes, over 32 MiB.
	src := filepath.Join(t.TempDir(), "sparse.img")
	f, err := os.Create(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(volSize); err != nil {
		t.Fatal(err)
	}
	rng := mrand.New(mrand.NewPCG(3, 4))
	for off := int64(rng.IntN(1 << 20)); off < volSize; off += int64(rng.IntN(2 << 20)) {
		n := min(int64(1+rng.IntN(1<<20)), volSize-off)
		b := make([]byte, n)
		if rng.IntN(4) != 0 {
			for i := range b {
				b[i] = byte(rng.Uint32())
			}
		}
		if _, err := f.WriteAt(b, off); err != nil {
			t.Fatal(err)
		}
		off += n
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	want := testenv.SHA256File(t, src)

	testenv.MustRunTool(t, "nbdcopy", "--flush", "--connections=4", "--requests=16", src, uri)
	s.prim.kill()
	primPath, secPath := s.volumePaths("vol4")
	if got := testenv.SHA256File(t, primPath); got != want {
		t.Fatalf("the killed primary's vol4: sha256 %x, the image nbdcopy copied %x", got, want)
	}

	s.startPrimary()
	s.waitLinked()
	s.drainPrimary()
	s.stopSecondary()
	s.assertImagesEqual()
	if got := testenv.SHA256File(t, secPath); got != want {
		img, _ := os.ReadFile(src)
		sec, _ := os.ReadFile(secPath)
		i := firstDiff(sec, img)
		t.Fatalf("the secondary's vol4: sha256 %x, the image nbdcopy copied %x; first difference at %d: %x, want %x",
			got, want, i, sec[i:min(len(sec), i+16)], img[i:min(len(img), i+16)])
	}
}
