package mover

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"duplex/sidefile"
	"duplex/subsystem"
	"duplex/timer"
	"duplex/volume"
)

// A burst is weighed by its large writes alone: a cut of 4 KiB writes never
// makes record sets wait, however many it brings (a steady rate's, the
// lag's), and a cut of large writes does from deferFrom an interval, which
// a burst slowed by a busy CPU still brings.
func TestABurstIsWeighedByItsLargeWrites(t *testing.T) {
	v, err := volume.Open(filepath.Join(t.TempDir(), "a.img"), 64<<20)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close() })
	ss := subsystem.New("ss1", timer.New(), sidefile.New(256<<20), map[string]*volume.Volume{"a": v}, []string{"a"})
	m := New(Config{Session: session, Subsystems: []*subsystem.Subsystem{ss}})
	clock := time.Hour
	m.elapsed = func() time.Duration { return clock }
	ctx := context.Background()

	small := make([]byte, 4<<10)
	for i := range 8 * deferFrom / len(small) {
		if err := ss.Write(ctx, "a", small, int64(i%1024)*int64(len(small))); err != nil {
			t.Fatal(err)
		}
	}
	m.Cut()
	if _, ok := m.deferral(clock); ok {
		t.Errorf("record sets wait after a cut of %d MiB of 4 KiB writes", 8*deferFrom>>20)
	}

	if err := ss.Write(ctx, "a", make([]byte, 1<<20), 0); err != nil {
		t.Fatal(err)
	}
	clock += m.cfg.Interval
	m.Cut()
	if _, ok := m.deferral(clock); !ok {
		t.Error("record sets do not wait after a cut of one 1 MiB write within an interval")
	}
}
