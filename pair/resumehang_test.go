package pair

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestAResumeWhoseSaveHangsIsAnsweredNotYetInEffect: the disk of the pair
// state stops answering under a resume's save of the pending state,
// which must be on disk before the resume takes effect. The operator is
// answered once SaveWait has passed: not yet in effect, the pair still
// suspended, resumed once the save ends. Once the disk answers, it is.
func TestAResumeWhoseSaveHangsIsAnsweredNotYetInEffect(t *testing.T) {
	bothWays(t, "resume", "resume --all", func(t *testing.T, all bool, name string) {
		r, h := heldRig(t)
		r.mg.opts.SaveWait = 200 * time.Millisecond
		if err := r.mg.Suspend("a"); err != nil {
			t.Fatal(err)
		}
		r.write("a", 0, 4096) // written while suspended: to copy
		h.Arm()
		resumed := make(chan error, 1)
		go func() {
			if all {
				_, err := r.mg.ResumeAll()
				resumed <- err
				return
			}
			resumed <- r.mg.Resume("a")
		}()
		select {
		case err := <-resumed:
			if !errors.Is(err, ErrSaveHung) || !strings.Contains(err.Error(), "not yet in effect") {
				t.Errorf("the %s with its save hung: %v, want ErrSaveHung, not yet in effect", name, err)
			}
			t.Logf("answered: %v", err)
		case <-time.After(10 * time.Second):
			h.Release()
			<-resumed
			t.Fatalf("the %s has not been answered 10s after its save hung", name)
		}
		if st := r.pair("a").State; st != Suspended {
			t.Errorf("a, its %s answered not yet in effect: %s, want suspended", name, st)
		}
		h.Release()
		h.await(t, "a resumed once its save ended", func() bool { st := r.pair("a").State; return st == Pending || st == Duplex })
		for _, p := range savedPersisted(t, filepath.Join(r.dir, "pairs.json")).Pairs {
			if p.Volume == "a" && p.State == Suspended {
				t.Errorf("a on disk once its resume's save ended: %s", p.State)
			}
		}
	})
}
