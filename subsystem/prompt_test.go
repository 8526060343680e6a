package subsystem

import (
	"bytes"
	"context"
	"path/filepath"
	"testing"
	"time"

	"duplex/actlog"
	"duplex/sidefile"
)

// TestPromptSaysNoToAWriteThatWouldWait: Prompt promises a write only when
// it would wait for nothing but the volume: not for the activity log's
// write of a fresh region, not for an overlapping update under way, not for
// the sidefile's pacing or room.
func TestPromptSaysNoToAWriteThatWouldWait(t *testing.T) {
	const n = 4096
	f := newFixture(t, 64*sidefile.Cost(n))
	if !f.ss.Prompt("v0", 0, n) {
		t.Fatal("no activity log, an empty sidefile: not promised")
	}
	al, _, err := actlog.Open(filepath.Join(t.TempDir(), "activity.log"), map[string]int64{"v0": volSize}, actlog.DefaultRegion)
	if err != nil {
		t.Fatal(err)
	}
	defer al.Close()
	f.ss.SetActivityLog(actlog.WritePath{Log: al})
	if f.ss.Prompt("v0", 0, n) {
		t.Fatal("a region not yet marked in the activity log: promised")
	}
	data := bytes.Repeat([]byte{1}, n)
	if err := f.ss.Write(context.Background(), "v0", data, 0); err != nil {
		t.Fatal(err)
	}
	if !f.ss.Prompt("v0", n, n) {
		t.Fatal("a region marked on disk: not promised")
	}

	held, release := make(chan struct{}), make(chan struct{})
	f.ss.beforeVolumeWrite = func() {
		close(held)
		<-release
	}
	written := make(chan error, 1)
	go func() { written <- f.ss.Write(context.Background(), "v0", data, 0) }()
	<-held
	if f.ss.Prompt("v0", n/2, n) {
		t.Error("an overlapping write under way: promised")
	}
	if !f.ss.Prompt("v0", 2*n, n) {
		t.Error("a write beside one under way: not promised")
	}
	close(release)
	if err := <-written; err != nil {
		t.Fatal(err)
	}
	f.ss.beforeVolumeWrite = nil

	f.side.SetPacing(sidefile.Pacing{Start: 0.01, MaxDelay: time.Millisecond})
	if f.ss.Prompt("v0", n, n) {
		t.Error("the sidefile pacing: promised")
	}
	f.side.SetPacing(sidefile.Pacing{})
	for i := 0; f.side.Prompt(sidefile.Cost(n)); i++ {
		if err := f.ss.Write(context.Background(), "v0", data, 0); err != nil {
			t.Fatal(err)
		}
	}
	if f.ss.Prompt("v0", n, n) {
		t.Error("the sidefile full: promised")
	}
}

// TestPromptSaysNoToAWriteOutOfRange: a range past the volume, or whose
// offset is negative (an NBD offset of 2^63 or more), is never promised,
// and asking does not panic with the activity log on.
func TestPromptSaysNoToAWriteOutOfRange(t *testing.T) {
	const n = 4096
	f := newFixture(t, 64*sidefile.Cost(n))
	al, _, err := actlog.Open(filepath.Join(t.TempDir(), "activity.log"), map[string]int64{"v0": volSize}, actlog.DefaultRegion)
	if err != nil {
		t.Fatal(err)
	}
	defer al.Close()
	f.ss.SetActivityLog(actlog.WritePath{Log: al})
	if err := f.ss.Write(context.Background(), "v0", make([]byte, n), 0); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		off int64
		n   int
	}{{-1 << 63, n}, {-n, n}, {-1, 2}, {volSize, n}, {volSize - n/2, n}, {1<<63 - n/2, n}, {0, -1}} {
		if f.ss.Prompt("v0", c.off, c.n) {
			t.Errorf("[%d, +%d) of a %d-byte volume: promised", c.off, c.n, volSize)
		}
	}
	if f.ss.Prompt("nosuch", 0, n) {
		t.Error("a volume the subsystem does not have: promised")
	}
}
