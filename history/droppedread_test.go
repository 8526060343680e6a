package history

import (
	"errors"
	"math/rand"
	"testing"
	"time"
)

// A read view of a past point is pinned first and reads the history's
// undo later, without the volumes' lock: a Gap (a group too large for the
// history applied meanwhile) or a Trim (the window or the byte cap) may
// drop undo after the point before the read begins. The read then fails
// as outside the window, never returns the undo of the groups left alone,
// which would read the volumes as of a later group under the point's name.
func TestOverlaysOfUndoDroppedBeforeTheRead(t *testing.T) {
	t.Run("gap", func(t *testing.T) {
		l, _, through := threeGroupsOfUndo(t)
		if err := l.Gap(Header{Group: 4, Time: 4}); err != nil {
			t.Fatal(err)
		}
		os, err := l.Overlays(Whole(1), through, 1<<30, nil, nil)
		if !errors.Is(err, ErrOutside) {
			t.Fatalf("the undo of groups 2 and 3, dropped by a gap before it was read: %d overlays, %v; want ErrOutside", len(os), err)
		}
	})
	t.Run("trim", func(t *testing.T) {
		now := time.Unix(1000, 0)
		l, err := Open(t.TempDir(), Options{Window: 10 * time.Second, MaxBytes: 32 << 20, Now: func() time.Time { return now }})
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		vol := &mem{make([]byte, 1<<20)}
		rand.New(rand.NewSource(3)).Read(vol.b)
		srcs := map[string]Source{"v": vol}
		// 1 MiB of before image each (a segment of its own), at 981 to
		// 986 s: the window of 10 s from 1000 s starts at group 4.
		for g := uint64(1); g <= 6; g++ {
			if err := l.Capture(Header{Group: g, Time: time.Unix(980+int64(g), 0).UnixNano()}, []Range{{"v", 0, 1 << 20}}, srcs); err != nil {
				t.Fatal(err)
			}
		}
		from, _ := l.At(time.Unix(981, 0).UnixNano())
		through, _ := l.Newest()
		now = time.Unix(994, 0)
		if err := l.Trim(6); err != nil {
			t.Fatal(err)
		}
		if p, _ := l.Oldest(); p.Group <= 2 {
			t.Fatalf("the trim left group %d, want groups 2 and 3 gone", p.Group)
		}
		os, err := l.Overlays(from, through, 1<<30, nil, nil)
		if !errors.Is(err, ErrOutside) {
			t.Fatalf("the undo after group %d, trimmed before it was read: %d overlays, %v; want ErrOutside", from.Group, len(os), err)
		}
	})
}
