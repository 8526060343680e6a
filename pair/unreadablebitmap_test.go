package pair

import (
	"log/slog"
	"strings"
	"testing"

	"duplex/disk"
	"duplex/internal/testenv"
)

// TestAnUnreadableBitmapLosesNoRegionAndSaysSo: the saved bitmap of pair a
// (suspended, or resyncing) cannot be read at the start (EIO). The regions
// it held are not dropped: the whole volume is to copy, and the log says
// why, naming the file, whether the last stop was clean or not.
func TestAnUnreadableBitmapLosesNoRegionAndSaysSo(t *testing.T) {
	const written = 2 * twinRegion
	for _, c := range []struct {
		name          string
		resync, clean bool
	}{
		{"suspended, after a crash", false, false},
		{"suspended, after a clean stop", false, true},
		{"resyncing, after a crash", true, false},
		{"resyncing, after a clean stop", true, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := newRig(t, 4*twinRegion, 8<<20, "a", "b")
			r.settle()
			r.saveAndClean()
			if err := r.mg.Suspend("a"); err != nil {
				t.Fatal(err)
			}
			r.write("a", written, 4096)
			if c.resync {
				if err := r.mg.Resume("a"); err != nil {
					t.Fatal(err)
				}
			}
			if err := r.mg.save(c.clean); err != nil {
				t.Fatal(err)
			}
			inj := disk.NewInjector(nil)
			inj.Inject(disk.Fault{Op: disk.OpRead, Under: r.mg.bitmapPath("a")})
			logs := &testenv.LogBuffer{}
			r.opts.FS, r.opts.Logger = inj, slog.New(slog.NewTextHandler(logs, nil))
			r.crash()
			if inj.Injected(disk.OpRead) == 0 {
				t.Fatal("the bitmap of a was never read")
			}
			if got := r.pendingRegions("a"); !marked(got, written) || !marked(got, 0) {
				t.Fatalf("pair a: %+v, regions to copy %v: want the whole volume, its bitmap unreadable", r.pair("a"), got)
			}
			if !strings.Contains(logs.String(), r.mg.bitmapPath("a")) {
				t.Fatalf("the log does not name the unreadable bitmap %s:\n%s", r.mg.bitmapPath("a"), logs)
			}
		})
	}
}
