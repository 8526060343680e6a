package site

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestReadersOfAStoppedSecondaryAfterAFailedVolumeFlush: vol1's disk
// fails under a group (its checkpoint's fdatasync), vol2's works; the
// primary wrote vol1, then, once acknowledged, vol2. The secondary stops
// and, for the backoff, still serves reads. Once the disk answers again
// and the kernel has dropped vol1's cached pages (memory pressure;
// fadvise here), a reader that sees vol2's write must see vol1's: the
// volumes read at a group boundary, or not at all.
func TestReadersOfAStoppedSecondaryAfterAFailedVolumeFlush(t *testing.T) {
	const size = 1 << 20
	cfg, failing := secondaryVol1OnAFailingDisk(t, size)
	var dev string
	for _, v := range cfg.Secondary.Volumes {
		if v.Name == "vol1" {
			dev = v.Path
		}
	}
	var cur atomic.Pointer[Secondary]
	runUntil(t, func(ctx context.Context) {
		RunSecondary(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), SecondaryOptions{},
			DiskRetry{First: 20 * time.Second, Max: 20 * time.Second}, func(s *Secondary) { cur.Store(s) })
	})
	waitFor(t, 30*time.Second, "the secondary open", func() bool { return cur.Load() != nil })
	pcfg := *cfg
	pcfg.Primary.Secondary = cur.Load().ListenAddr()
	p, _ := startPrimary(t, &pcfg, healthyReadWait)
	replicatedBeforeTheFault(t, p, cur.Load, 4096)
	failing.fail(t, true)
	ctx := context.Background()
	if err := p.Write(ctx, "vol1", bytes.Repeat([]byte{0x22}, 4096), 0); err != nil {
		t.Fatal(err)
	}
	if err := p.Write(ctx, "vol2", bytes.Repeat([]byte{0x22}, 4096), 0); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the secondary to stop", func() bool { return cur.Load().Status().Stopped != "" })
	t.Logf("stopped: %s", cur.Load().Status().Stopped)
	failing.fail(t, false)
	f, err := os.Open(dev)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := unix.Fadvise(int(f.Fd()), 0, size, unix.FADV_DONTNEED); err != nil {
		t.Fatal(err)
	}
	// vol1 was written before vol2 each time: 0x11, then 0x22.
	prefix := map[[2]byte]bool{{0, 0}: true, {0x11, 0}: true, {0x11, 0x11}: true, {0x22, 0x11}: true, {0x22, 0x22}: true}
	b1, b2 := make([]byte, 4096), make([]byte, 4096)
	err1 := cur.Load().ReadAt("vol1", b1, 0)
	err2 := cur.Load().ReadAt("vol2", b2, 0)
	t.Logf("vol1 %x (%v), vol2 %x (%v)", b1[0], err1, b2[0], err2)
	if err1 == nil && err2 == nil && !prefix[[2]byte{b1[0], b2[0]}] {
		t.Fatalf("a reader of the stopped secondary sees vol1 %#x with vol2 %#x: vol2's write without vol1's, written before it", b1[0], b2[0])
	}
}
