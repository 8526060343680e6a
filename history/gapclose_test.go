package history

import (
	"bytes"
	"errors"
	"os"
	"testing"
	"time"

	"duplex/disk"
)

// gapCloseLog opens a Log in dir through fsys holding the undo of groups
// 1 to 3.
func gapCloseLog(t *testing.T, dir string, fsys disk.FS) *Log {
	t.Helper()
	l, err := Open(dir, Options{Window: time.Hour, MaxBytes: 4 << 20, FS: fsys})
	if err != nil {
		t.Fatal(err)
	}
	vol := &mem{bytes.Repeat([]byte{7}, 64<<10)}
	for g := uint64(1); g <= 3; g++ {
		if err := l.Capture(Header{Group: g, Time: int64(g)}, []Range{{"v", g * 4096, 4096}}, map[string]Source{"v": vol}); err != nil {
			t.Fatal(err)
		}
	}
	return l
}

// A Close begun while a Gap removes the files and fsyncs its record (the
// index's lock let go meanwhile) waits for it: the Gap never writes into a
// journal Close closed, and the directory, reopened, holds the gap record.
func TestCloseDuringAGapsFsyncWaitsForIt(t *testing.T) {
	dir := t.TempDir()
	in := disk.NewInjector(nil)
	l := gapCloseLog(t, dir, in)
	gate := make(chan struct{})
	in.Inject(disk.Fault{Op: disk.OpSync, Under: dir, Hang: gate})
	gapped := make(chan error, 1)
	go func() { gapped <- l.Gap(Header{Group: 4, Time: 4, State: []byte("s")}) }()
	for deadline := time.Now().Add(30 * time.Second); in.Injected(disk.OpSync) == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			close(gate)
			t.Fatal("the gap record was not fsynced within 30s")
		}
	}
	closed := make(chan error, 1)
	go func() { closed <- l.Close() }()
	// Status reads the index meanwhile, under the race detector.
	_, _ = l.Oldest()
	_ = l.Points()
	select {
	case err := <-closed:
		close(gate)
		t.Fatalf("Close returned (%v) while the gap's fsync was held", err)
	case <-time.After(300 * time.Millisecond):
	}
	close(gate)
	if err := <-gapped; err != nil {
		t.Fatalf("gap: %v", err)
	}
	if err := <-closed; err != nil {
		t.Fatalf("close after the gap: %v", err)
	}
	l2, err := Open(dir, Options{Window: time.Hour, MaxBytes: 4 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Close()
	if ps := l2.Points(); len(ps) != 1 || ps[0].Group != 4 || string(ps[0].State) != "s" {
		t.Fatalf("points after the gap and Close: %+v, want the gap's group 4 alone", ps)
	}
}

// A Gap or Reset after Close, as one that waited for a Trim's release
// while Close ran, is refused: it would remove the files of a Log its
// owner let go, and leave a journal open on the directory, its lock held,
// that nothing closes.
func TestAGapOrResetAfterCloseIsRefused(t *testing.T) {
	for _, name := range []string{"Gap", "Reset"} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			l := gapCloseLog(t, dir, nil)
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			var err error
			if name == "Gap" {
				err = l.Gap(Header{Group: 4, Time: 4})
			} else {
				err = l.Reset()
			}
			if !errors.Is(err, ErrClosed) {
				t.Errorf("%s after Close: %v, want ErrClosed", name, err)
			}
			l2, err := Open(dir, Options{Window: time.Hour, MaxBytes: 4 << 20})
			if err != nil {
				t.Fatalf("reopened after a %s after Close: %v", name, err)
			}
			defer l2.Close()
			if ps := l2.Points(); len(ps) != 3 || ps[0].Group != 1 {
				ents, _ := os.ReadDir(dir)
				t.Fatalf("points after a %s after Close: %+v (files %d), want groups 1 to 3", name, ps, len(ents))
			}
		})
	}
}
