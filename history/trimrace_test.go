package history

import (
	"errors"
	"io/fs"
	"math"
	"math/rand"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"duplex/disk"
)

// trimOnOpen is a file system that runs hook once, the first time a
// segment is opened for reading after it is armed: a Trim that comes
// between a replay's choice of segments and its reading them.
type trimOnOpen struct {
	disk.FS
	mu   sync.Mutex
	hook func()
}

func (f *trimOnOpen) OpenFile(name string, flag int, perm fs.FileMode) (disk.File, error) {
	f.mu.Lock()
	hook := f.hook
	if flag == os.O_RDONLY && !strings.HasSuffix(name, "LOCK") {
		f.hook = nil
	} else {
		hook = nil
	}
	f.mu.Unlock()
	if hook != nil {
		hook()
	}
	return f.FS.OpenFile(name, flag, perm)
}

// A view of a past point whose undo Trim releases while it is read (a
// checkpoint trims the window's old end while NAME@TIME opens) fails with
// the error of a point outside the window, as when Trim came first, and
// not with the error of a segment file that is gone.
func TestOverlaysTrimmedWhileRead(t *testing.T) {
	now := time.Unix(1000, 0)
	fsys := &trimOnOpen{FS: disk.OS}
	l, err := Open(t.TempDir(), Options{Window: 10 * time.Second, FS: fsys, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	v := &mem{make([]byte, 1<<20)}
	rand.New(rand.NewSource(3)).Read(v.b)
	// 600 KiB of before image each: a segment of 1 MiB holds one.
	for g := uint64(1); g <= 5; g++ {
		if err := l.Capture(Header{Group: g, Time: time.Unix(int64(g), 0).UnixNano()}, []Range{{"v", 0, 600 << 10}}, map[string]Source{"v": v}); err != nil {
			t.Fatal(err)
		}
	}
	p, ok := l.At(time.Unix(1, 0).UnixNano())
	if !ok || p.Group != 1 {
		t.Fatalf("point at 1 s: group %d (%v)", p.Group, ok)
	}
	trimmed := false
	fsys.mu.Lock()
	fsys.hook = func() {
		// Every group is older than the window: all but the newest go.
		if err := l.Trim(5); err != nil {
			t.Error(err)
		}
		trimmed = true
	}
	fsys.mu.Unlock()
	_, err = l.Overlays(p, Whole(math.MaxUint64), 64<<20, nil, nil)
	if !trimmed {
		t.Fatal("no segment was opened for reading")
	}
	if o, _ := l.Oldest(); o.Group <= p.Group {
		t.Fatalf("Trim left group %d, the oldest: the test trims nothing", o.Group)
	}
	if !errors.Is(err, ErrOutside) {
		t.Fatalf("Overlays of group 1 trimmed while read: %v, want an error wrapping ErrOutside", err)
	}
}
