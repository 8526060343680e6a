package history

import (
	"bytes"
	"errors"
	"testing"
	"time"
)

// A history dropped while a view's undo is read (a group too large for it
// is applied with a gap, which drops every earlier group's undo) makes the
// read fail as outside the window, never read the records written since.
func TestOverlaysOfALogResetWhileRead(t *testing.T) {
	l, srcs, through := threeGroupsOfUndo(t)
	l.testReplaying = func() {
		l.testReplaying = nil
		if err := l.Gap(Header{Group: 4, Time: 4}); err != nil {
			t.Fatal(err)
		}
		if err := l.Capture(Header{Group: 5, Time: 5}, []Range{{"v", 0, 4096}}, srcs); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := l.Overlays(Whole(1), through, 1<<30, nil, nil); !errors.Is(err, ErrOutside) {
		t.Fatalf("the undo after group 1 read while the history was dropped: %v, want ErrOutside", err)
	}
}

// threeGroupsOfUndo returns a history of an hour's window holding the undo
// of groups 1 to 3, each of which wrote a block of volume v (its source in
// srcs), and the newest point, group 3's.
func threeGroupsOfUndo(t *testing.T) (*Log, map[string]Source, Point) {
	t.Helper()
	l, err := Open(t.TempDir(), Options{Window: time.Hour, MaxBytes: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	vol := &mem{bytes.Repeat([]byte{7}, 1<<16)}
	srcs := map[string]Source{"v": vol}
	for g := uint64(1); g <= 3; g++ {
		if err := l.Capture(Header{Group: g, Time: int64(g)}, []Range{{"v", g * 4096, 4096}}, srcs); err != nil {
			t.Fatal(err)
		}
		copy(vol.b[g*4096:], bytes.Repeat([]byte{byte(g)}, 4096))
	}
	through, _ := l.Newest()
	return l, srcs, through
}

// The undo after a point trimmed while a view's undo is read (the
// history's bytes cap, as the groups applied meanwhile add to it) makes the
// read fail as outside the window, as a point trimmed before it would.
func TestOverlaysOfALogTrimmedWhileRead(t *testing.T) {
	// Segments of 1 MiB, each holding a group or two of 512 KiB.
	l, err := Open(t.TempDir(), Options{Window: time.Hour, MaxBytes: 16 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	vol := &mem{bytes.Repeat([]byte{7}, 4<<20)}
	srcs := map[string]Source{"v": vol}
	for g := uint64(1); g <= 6; g++ {
		if err := l.Capture(Header{Group: g, Time: int64(g)}, []Range{{"v", g * 512 << 10, 512 << 10}}, srcs); err != nil {
			t.Fatal(err)
		}
	}
	through, _ := l.Newest()
	l.testReplaying = func() {
		l.testReplaying = nil
		l.opts.MaxBytes = 1
		if err := l.Trim(6); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := l.Overlays(Whole(1), through, 1<<30, nil, nil); !errors.Is(err, ErrOutside) {
		t.Fatalf("the undo after group 1 read while the history was trimmed: %v, want ErrOutside", err)
	}
}
