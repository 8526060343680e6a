package pair

import (
	"log/slog"
	"os"
	"strings"
	"testing"

	"duplex/disk"
	"duplex/internal/testenv"
)

// TestAnUnreadableBitmapLosesNoRegionAndSaysSo: the saved bitmap of pair a
// (suspended, or resyncing) cannot be read at the start (EIO), or is read
// and corrupt (its checksum fails: a disk that returned other bytes). The
// regions it held are not dropped: the whole volume is to copy, and the log
// says why, naming the file, whether the last stop was clean or not.
func TestAnUnreadableBitmapLosesNoRegionAndSaysSo(t *testing.T) {
	const written = 2 * twinRegion
	for _, c := range []struct {
		name                   string
		resync, clean, corrupt bool
	}{
		{"suspended, after a crash", false, false, false},
		{"suspended, after a clean stop", false, true, false},
		{"resyncing, after a crash", true, false, false},
		{"resyncing, after a clean stop", true, true, false},
		{"corrupt, suspended, after a crash", false, false, true},
		{"corrupt, suspended, after a clean stop", false, true, true},
		{"corrupt, resyncing, after a crash", true, false, true},
		{"corrupt, resyncing, after a clean stop", true, true, true},
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
			if c.corrupt {
				b, err := os.ReadFile(r.mg.bitmapPath("a"))
				if err != nil {
					t.Fatal(err)
				}
				b[len(b)-1] ^= 0xff
				if err := os.WriteFile(r.mg.bitmapPath("a"), b, 0o644); err != nil {
					t.Fatal(err)
				}
			} else {
				inj.Inject(disk.Fault{Op: disk.OpRead, Under: r.mg.bitmapPath("a")})
			}
			logs := &testenv.LogBuffer{}
			r.opts.FS, r.opts.Logger = inj, slog.New(slog.NewTextHandler(logs, nil))
			r.crash()
			if !c.corrupt && inj.Injected(disk.OpRead) == 0 {
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
