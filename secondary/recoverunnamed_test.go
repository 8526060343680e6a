package secondary

import (
	"bytes"
	"testing"
	"time"

	"duplex/apply"
	"duplex/disk"
)

// A recover --at whose write of the state file fails after its rename
// reached the directory (the directory's fsync failed) leaves a state file
// that may name the point it chose, over volumes not yet taken there: the
// next open finishes taking them to it. Run again in the same process, for
// a time at or after the applied group's, it reported the applied group
// and the volumes usable there, yet the state file still named the first
// run's point, and the next open took the volumes back to it: the groups
// reported held were gone. Whatever it reports, a reopen must find.
func TestRecoverToAgainAfterItsStateFileWriteFailed(t *testing.T) {
	const n = 5
	dir, hist := fencedWithGroups(t, n)
	inj := disk.NewInjector(nil)
	sec, v := openStoppedFS(t, dir, hist, inj)
	defer v.Close()
	inj.Inject(disk.Fault{Op: disk.OpSyncDir, Under: dir, Once: true})
	if _, err := sec.RecoverTo(int64(time.Millisecond)); err == nil {
		t.Fatal("the state file's failed fsync did not stop the first recovery")
	}
	if inj.Injected(disk.OpSyncDir) == 0 {
		t.Fatal("no fsync of the state file's directory failed")
	}
	inj.Clear()

	st, err := within(t, "RecoverTo after one whose state file write failed", 10*time.Second, func() (apply.State, error) {
		return sec.RecoverTo(time.Now().UnixNano())
	})
	if err != nil {
		t.Fatalf("RecoverTo run again, for now: %v", err)
	}
	if got, want := regions(t, v, n), groupRegions(st.Group, n); !bytes.Equal(got, want) {
		t.Fatalf("run again: reports group %d, regions of groups 1..%d hold % x, want % x", st.Group, n, got, want)
	}
	if err := sec.Close(); err != nil {
		t.Fatal(err)
	}
	v.Close()

	sec, v = openStopped(t, dir, hist)
	defer sec.Close()
	defer v.Close()
	if g := sec.Stats().Group; g != st.Group {
		t.Errorf("reported recovered to group %d, and the volumes usable there; opened again, the secondary is at group %d", st.Group, g)
	}
	if got, want := regions(t, v, n), groupRegions(st.Group, n); !bytes.Equal(got, want) {
		t.Errorf("opened again: regions of groups 1..%d hold % x, want group %d's, % x", n, got, st.Group, want)
	}
}
