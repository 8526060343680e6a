package site

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// TestAVolumeWriteThatFailsAtTheSecondary: the secondary's vol1 is a block
// device (a loop device over a disk that fails with EIO on demand), and
// the disk fails while the primary writes to vol1: a 4 MiB write, which
// the secondary writes as one run, four direct writes on the device at
// once, or a 4 KiB write, which it writes through the page cache and
// whose failure only the checkpoint's fdatasync reports. The secondary
// must not count the group applied, must stop and say why (its status,
// and the primary's last error), and must keep vol2 as of the group
// before. Once the disk works and the secondary is restarted, with no
// other step, it applies the group again, whole, and both volumes end
// as the primary's.
func TestAVolumeWriteThatFailsAtTheSecondary(t *testing.T) {
	const size = 4 << 20
	for _, tc := range []struct {
		name string
		n    int
	}{
		{"4 MiB run, direct", 4 << 20},
		{"4 KiB write, through the page cache", 4096},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, disk := secondaryVol1OnAFailingDisk(t, size)
			logs := &logBuffer{}
			s, err := OpenSecondary(cfg, slog.New(slog.NewTextHandler(logs, nil)), SecondaryOptions{})
			if err != nil {
				t.Fatal(err)
			}
			stopSecondary := runUntil(t, func(ctx context.Context) { s.Run(ctx) })
			cfg.Primary.Secondary = s.ListenAddr()
			p, _ := startPrimary(t, cfg, healthyReadWait)
			replicatedBeforeTheFault(t, p, func() *Secondary { return s }, size)
			ctx := context.Background()

			disk.fail(t, true)
			if err := p.Write(ctx, "vol1", bytes.Repeat([]byte{0x22}, tc.n), 0); err != nil {
				t.Fatal(err)
			}
			waitFor(t, 30*time.Second, "the secondary to stop", func() bool { return s.Status().Stopped != "" })
			t.Logf("stopped: %s", s.Status().Stopped)
			if st := s.Status().Stopped; !strings.Contains(st, "input/output error") {
				t.Errorf("secondary status says it stopped for %q, want the disk's error", st)
			}
			if lg := logs.String(); !strings.Contains(lg, "secondary stopped") {
				t.Errorf("the secondary's log does not say it stopped:\n%s", lg)
			}
			waitFor(t, 30*time.Second, "the primary to report the secondary's refusal", func() bool {
				return strings.Contains(p.Status().LastError, "restart the secondary")
			})
			// A reader of the stopped secondary gets vol1 at a group boundary
			// (as before the write, or with all of it) or an error, never
			// part of the run.
			got := make([]byte, size)
			if err := s.ReadAt("vol1", got, 0); err == nil {
				after := bytes.Repeat([]byte{0x11}, size)
				copy(after, bytes.Repeat([]byte{0x22}, tc.n))
				if !bytes.Equal(got, bytes.Repeat([]byte{0x11}, size)) && !bytes.Equal(got, after) {
					t.Errorf("the stopped secondary serves vol1 with part of the failed write")
				}
			}
			if err := p.Write(ctx, "vol2", bytes.Repeat([]byte{0x33}, 4096), 0); err != nil {
				t.Fatalf("a write to vol2 at the primary while the secondary is stopped: %v", err)
			}

			disk.fail(t, false)
			stopSecondary()
			s, err = OpenSecondary(cfg, slog.New(slog.NewTextHandler(logs, nil)), SecondaryOptions{})
			if err != nil {
				t.Fatalf("restart of the secondary once its disk works: %v", err)
			}
			runUntil(t, func(ctx context.Context) { s.Run(ctx) })
			waitFor(t, time.Minute, "every pair duplex after the restart", func() bool { return allPairsDuplex(p.Status()) })
			quiesceMover(t, p)
			for _, vol := range []string{"vol1", "vol2"} {
				waitFor(t, 30*time.Second, "the secondary's "+vol+" to be the primary's", func() bool { return sameBytes(t, p, s, vol, size) })
			}
			if st := s.Status().Stopped; st != "" {
				t.Errorf("the restarted secondary says it stopped: %s", st)
			}
		})
	}
}
