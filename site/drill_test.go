package site

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"duplex/config"
	"duplex/control"
	"duplex/secondary"
)

// TestDrillKeepsItsStateInItsScratchFile: a failover drill's writes and the
// before images its point in time needs go to its scratch file beside the
// journal, not to memory nor the replicated volumes: the drill reads its
// group with its writes over it while replication overwrites the volumes.
// Past [secondary] drill_bytes its writes fail with ENOSPC and, once the
// before images no longer fit, its reads fail too; the status says why,
// and no read returns a mix of states.
func TestDrillKeepsItsStateInItsScratchFile(t *testing.T) {
	const mib = 1 << 20
	cfg := linkConfig(t)
	cfg.Secondary.DrillNBD = "127.0.0.1:0"
	cfg.Secondary.DrillBytes = config.Size(3 * mib)
	x := runSites(t, cfg, cfg)
	s, p := x.s, x.p
	waitDuplex(t, p)
	fill := func(vol string, b byte) {
		t.Helper()
		if err := p.Write(context.Background(), vol, bytes.Repeat([]byte{b}, mib), 0); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 30*time.Second, vol+" replicated", func() bool {
			got := make([]byte, mib)
			return s.ReadAt(vol, got, 0) == nil && bytes.Equal(got, bytes.Repeat([]byte{b}, mib))
		})
	}
	fill("vol1", 1)
	fill("vol2", 1)
	res, err := s.Drill(control.DrillRequest{})
	if err != nil {
		t.Fatal(err)
	}
	export := func(vol string) *drillExport {
		x, ok := drillExports{s: s, d: s.drills.d}.Lookup(vol)
		if !ok {
			t.Fatalf("no drill export %s", vol)
		}
		return x.(*drillExport)
	}
	x1 := export("vol1")
	// Parts of blocks and whole ones, rewritten.
	for _, w := range []struct {
		off, n int
		b      byte
	}{{100, 10, 9}, {8192, 3 * 4096, 8}, {8192 + 5, 7, 7}} {
		if err := x1.WriteAt(bytes.Repeat([]byte{w.b}, w.n), int64(w.off)); err != nil {
			t.Fatal(err)
		}
	}
	want := bytes.Repeat([]byte{1}, mib)
	copy(want[100:], bytes.Repeat([]byte{9}, 10))
	copy(want[8192:], bytes.Repeat([]byte{8}, 3*4096))
	copy(want[8192+5:], bytes.Repeat([]byte{7}, 7))
	fill("vol1", 2)
	got := make([]byte, mib)
	if err := x1.ReadAt(got, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("the drill of vol1, once replication overwrote it, does not read its group with its writes over it")
	}
	st := s.Status().Drill
	if st == nil || st.Group != res.Group || st.ScratchBytes != 4*4096 || st.BeforeImageBytes != mib || st.ScratchLimitBytes != 3*mib || st.Failed != "" {
		t.Fatalf("status during the drill: %+v; want its 16 KiB of writes and 1 MiB of before images of 3 MiB", st)
	}
	if fi, err := os.Stat(DrillScratchPath(cfg)); err != nil || fi.Size() != st.ScratchBytes+st.BeforeImageBytes {
		t.Fatalf("the scratch file beside the journal: %v, %v", fi, err)
	}

	// The drill fills vol2 and vol3: 2 MiB more than the 3 MiB hold.
	x2, x3 := export("vol2"), export("vol3")
	if err := x2.WriteAt(bytes.Repeat([]byte{5}, mib), 0); err != nil {
		t.Fatal(err)
	}
	err = x3.WriteAt(bytes.Repeat([]byte{5}, mib), 0)
	if !errors.Is(err, syscall.ENOSPC) || !strings.Contains(err.Error(), "drill_bytes") {
		t.Fatalf("a drill write past drill_bytes: %v, want ENOSPC naming drill_bytes", err)
	}
	if st := s.Status().Drill; st.Failed == "" {
		t.Fatalf("status after a drill write past drill_bytes: %+v", st)
	}
	if err := x2.ReadAt(got, 0); err != nil || !bytes.Equal(got, bytes.Repeat([]byte{5}, mib)) {
		t.Fatalf("the drill's vol2 after its writes: %v", err)
	}
	// Replication overwrites vol2: its before images no longer fit.
	fill("vol2", 2)
	if err := x1.ReadAt(got, 0); !errors.Is(err, secondary.ErrViewGone) {
		t.Fatalf("a drill whose before images passed drill_bytes reads: %v", err)
	}
	if _, err := s.Drill(control.DrillRequest{Stop: true}); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{DrillScratchPath(cfg), drillRecordPath(DrillScratchPath(cfg))} {
		if _, err := os.Stat(f); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("after drill stop, %s: %v", filepath.Base(f), err)
		}
	}
	for _, vol := range []string{"vol1", "vol2", "vol3"} {
		b := byte(2)
		if vol == "vol3" {
			b = 0
		}
		if err := s.ReadAt(vol, got, 0); err != nil || !bytes.Equal(got, bytes.Repeat([]byte{b}, mib)) {
			t.Fatalf("the replicated %s holds something else than the primary wrote: %v", vol, err)
		}
	}
}

// runStoppable runs a secondary of cfg; stop ends its Run and waits for it.
func runStoppable(t *testing.T, cfg *config.Config) (s *Secondary, stop func()) {
	t.Helper()
	s, err := OpenSecondary(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), SecondaryOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.Run(ctx) }()
	return s, func() { cancel(); <-done }
}

// TestDrillEndsWithItsSecondary: a drill does not outlive its secondary
// (its before images are those of the groups applied while the process
// ran, not synced): after a stop, or a kill -9 that leaves its scratch
// file, the next start removes the file and the status says the drill
// ended and why, until a drill is stopped or started.
func TestDrillEndsWithItsSecondary(t *testing.T) {
	cfg := linkConfig(t)
	cfg.Secondary.DrillNBD = "127.0.0.1:0"
	cfg.Secondary.DrillBytes = config.Size(1 << 20)
	s, stop := runStoppable(t, cfg)
	res, err := s.Drill(control.DrillRequest{})
	if err != nil {
		t.Fatal(err)
	}
	stop()
	scratch, record := DrillScratchPath(cfg), drillRecordPath(DrillScratchPath(cfg))
	if _, err := os.Stat(record); err != nil {
		t.Fatalf("the record of the drill a stop ended: %v", err)
	}
	// What a kill -9 leaves.
	if err := os.WriteFile(scratch, []byte("left by a killed secondary"), 0o600); err != nil {
		t.Fatal(err)
	}
	s, stop = runStoppable(t, cfg)
	defer stop()
	ended := s.Status().DrillEnded
	for _, w := range []string{"ended when the secondary stopped", "does not outlive", "duplex drill start"} {
		if !strings.Contains(ended, w) {
			t.Errorf("status drill_ended %q: no %q", ended, w)
		}
	}
	if !strings.Contains(ended, "group "+strconv.FormatUint(res.Group, 10)) {
		t.Errorf("status drill_ended %q does not name group %d", ended, res.Group)
	}
	if s.Status().Drill != nil {
		t.Error("a drill runs after the restart")
	}
	if _, err := os.Stat(scratch); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the scratch file a killed secondary left: %v", err)
	}
	if _, err := s.Drill(control.DrillRequest{Stop: true}); err == nil || !strings.Contains(err.Error(), "ended when the secondary stopped") {
		t.Errorf("drill stop after the restart: %v", err)
	}
	if e := s.Status().DrillEnded; e != "" {
		t.Errorf("after drill stop, drill_ended is still %q", e)
	}
	if _, err := os.Stat(record); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("after drill stop, the record: %v", err)
	}
}

// TestDrillStartedWhileTheSecondaryStops: a drill start the control
// server received just before the secondary stopped runs on after Run
// returned (the HTTP server's shutdown does not wait for its handlers).
// It must not leave a drill behind: an NBD listener nobody closes, a
// view of a closed secondary, a scratch file and a record that the next
// start takes for a drill the stop ended.
func TestDrillStartedWhileTheSecondaryStops(t *testing.T) {
	cfg := linkConfig(t)
	cfg.Secondary.DrillNBD = "127.0.0.1:0"
	cfg.Secondary.DrillBytes = config.Size(1 << 20)
	s, stop := runStoppable(t, cfg)
	stop()
	res, err := s.Drill(control.DrillRequest{})
	if d := s.drills.d; d != nil {
		d.close()
		t.Errorf("a drill started after the secondary stopped runs on %s, its listener and scratch file open: %+v, %v", d.ln.Addr(), res, err)
	}
	if err == nil {
		t.Error("a drill start after the secondary stopped succeeded")
	}
	for _, f := range []string{DrillScratchPath(cfg), drillRecordPath(DrillScratchPath(cfg))} {
		if _, err := os.Stat(f); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("after a drill start refused by the stop, %s: %v", filepath.Base(f), err)
		}
	}
}

// TestADamagedDrillRecordIsSaidSo: a record of the drill a stop ended that
// is damaged (cut short, overwritten, null, {}) is rebuilt as a drill that
// ended, of which nothing more is known: the status says the record is
// damaged, naming it, never a drill of group 0 at no time.
func TestADamagedDrillRecordIsSaidSo(t *testing.T) {
	for _, d := range damages {
		t.Run(d.name, func(t *testing.T) {
			cfg := linkConfig(t)
			cfg.Secondary.DrillNBD = "127.0.0.1:0"
			cfg.Secondary.DrillBytes = config.Size(1 << 20)
			record := drillRecordPath(DrillScratchPath(cfg))
			if err := os.MkdirAll(filepath.Dir(record), 0o755); err != nil {
				t.Fatal(err)
			}
			good := []byte(`{"nbd":"127.0.0.1:1","group":7,"consistency_time":"then","started":"now"}`)
			if err := os.WriteFile(record, d.spoil(good), 0o600); err != nil {
				t.Fatal(err)
			}
			s, stop := runStoppable(t, cfg)
			defer stop()
			ended := s.Status().DrillEnded
			for _, w := range []string{"ended when the secondary stopped", record, "damaged", "duplex drill start"} {
				if !strings.Contains(ended, w) {
					t.Errorf("status drill_ended %q: no %q", ended, w)
				}
			}
			if strings.Contains(ended, "group 0") {
				t.Errorf("status drill_ended %q names group 0", ended)
			}
		})
	}
}

// FuzzDecodeDrillRecord: any content of a drill's record decodes or is
// refused, never panics, and what its writer writes decodes to itself.
func FuzzDecodeDrillRecord(f *testing.F) {
	for _, s := range []string{`{"nbd":"127.0.0.1:1","group":7,"consistency_time":"then","started":"now"}`, `{}`, `null`, `[]`,
		`{"nbd":1,"group":"7","consistency_time":"then","started":"now"}`, "\x00"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := decodeDrillRecord(b)
		if err != nil {
			return
		}
		again, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		if r2, err := decodeDrillRecord(again); err != nil || r2 != r {
			t.Fatalf("%q decoded to %+v, which encodes to %q, decoded again to %+v, %v", b, r, again, r2, err)
		}
	})
}
