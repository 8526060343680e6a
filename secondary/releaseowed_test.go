package secondary

import (
	"log/slog"
	"sync"
	"testing"
	"time"

	"duplex/apply"
	"duplex/disk"
	"duplex/internal/testenv"
)

// TestAReleaseOwedAtAStopOrCrashIsDoneAtTheNextStart: a checkpoint wrote
// the state file (the groups that waited for a primary without vol2,
// applied at its link) and failed to release the journal's segments they
// fill; the secondary is then killed (its files as they were, the state
// file naming group 5, the segments still there) or closed while the
// journal's disk still fails. Started again on a disk that works, it
// replays nothing, holds the groups the state file names, and releases
// the segments at once, with no group to come: the release is owed to
// the state file, not to a group. Before, the next start found nothing
// to checkpoint and the segments stayed until a primary sent a group.
func TestAReleaseOwedAtAStopOrCrashIsDoneAtTheNextStart(t *testing.T) {
	for _, how := range []string{"killed", "closed"} {
		t.Run(how, func(t *testing.T) {
			r := releaseFailedAfterTheWaitingGroups(t)
			dir := r.dir
			if how == "killed" {
				dir = t.TempDir()
				copyFiles(t, r.dir, dir)
			} else {
				r.stop() // its checkpoint has nothing to record: no error
				r.sec = nil
			}
			st, err := apply.ReadState((&rig{dir: dir}).config().StatePath)
			if err != nil {
				t.Fatal(err)
			}
			if st.Group != r.last {
				t.Fatalf("the state file names group %d, want %d", st.Group, r.last)
			}
			logs := &testenv.LogBuffer{}
			edit := func(c *Config) {
				c.FS = roomFS{FS: disk.NewInjector(nil), free: 8 << 20}
				c.LargestGroup = 1 << 20
				c.Logger = slog.New(slog.NewTextHandler(logs, nil))
			}
			w := &rig{t: t, dir: dir, sizes: map[string]int64{"vol1": 16 << 20}, subs: []string{"ss1"}, edit: edit}
			w.open()
			t.Cleanup(w.close)
			if s := w.sec.Stats(); s.Group != r.last || s.GroupsWait != "" {
				t.Fatalf("started at group %d (groups wait: %q), want %d, nothing waiting", s.Group, s.GroupsWait, r.last)
			}
			holds(t, w, "vol1", 8192, 1)
			deadline := time.Now().Add(3 * time.Second)
			for w.sec.Stats().JournalBytes >= r.held && time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond)
			}
			if b := w.sec.Stats().JournalBytes; b >= r.held {
				t.Errorf("the journal holds %d bytes 3 s after the start (%d before the failed release), no group to come: "+
					"the segments of the groups the state file names are not released\n%s", b, r.held, logs.String())
			}
		})
	}
}

// TestAReleaseRetryMetByCloseTouchesNoClosedJournal: retries of a release
// owed (retryRelease, as its timer runs it) that come while the secondary
// closes, failing and then succeeding, neither race the close (go test
// -race) nor release after it, and none is scheduled once it returned: a
// site opened again after a disk fault opens the journal anew, which a
// retry of the closed one must never touch.
func TestAReleaseRetryMetByCloseTouchesNoClosedJournal(t *testing.T) {
	r := releaseFailedAfterTheWaitingGroups(t)
	sec := r.sec
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				sec.retryRelease()
			}
		}()
	}
	time.Sleep(50 * time.Millisecond)
	r.in.Clear()
	r.stop()
	r.sec = nil
	close(stop)
	wg.Wait()
	sec.retryRelease()
	sec.ckMu.Lock()
	owed := sec.owed
	sec.ckMu.Unlock()
	if !owed.closed || owed.timer != nil {
		t.Errorf("after Close, the owed release is %+v: want closed, no retry scheduled", owed)
	}
}
