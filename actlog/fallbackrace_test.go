package actlog

import (
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"duplex/disk"
)

// TestNoMarkGoesOnWrittenNowhere: writers mark fresh regions of their own
// while the log's disk starts failing, and the fallback takes a while to
// record that the run goes on without the log. Every mark that returns
// nil must find, at that moment, its region in the log on disk or the
// record made: no writer sees the log off before the record is durable.
func TestNoMarkGoesOnWrittenNowhere(t *testing.T) {
	dir := t.TempDir()
	in := disk.NewInjector(nil)
	path := filepath.Join(dir, "al")
	const regions = 256
	l, _, err := OpenFS(in, path, map[string]int64{"a": regions * DefaultRegion}, DefaultRegion)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var recorded atomic.Bool
	l.SetFallback(func(error) error {
		time.Sleep(5 * time.Millisecond)
		recorded.Store(true)
		return nil
	})
	w := WritePath{Log: l}
	var wg sync.WaitGroup
	var next atomic.Int64
	for range 8 {
		wg.Go(func() {
			for {
				r := next.Add(1) - 1
				if r >= regions {
					return
				}
				if r == regions/8 {
					in.Inject(disk.Fault{Op: disk.OpWrite, Under: dir, Err: disk.EIO})
				}
				if err := w.Mark("a", r*DefaultRegion, 4096); err != nil {
					t.Errorf("mark of region %d: %v", r, err)
					return
				}
				if recorded.Load() {
					continue
				}
				marks, err := ReadMarks(nil, path)
				if err != nil {
					t.Errorf("reading the log: %v", err)
					return
				}
				found := false
				for _, rg := range marks["a"] {
					if rg[0] <= r*DefaultRegion && r*DefaultRegion < rg[0]+rg[1] {
						found = true
					}
				}
				if !found {
					t.Errorf("region %d: its mark returned, and it is neither in the log on disk nor recorded as run without it", r)
				}
			}
		})
	}
	wg.Wait()
}
