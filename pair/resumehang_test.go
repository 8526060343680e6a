package pair

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"duplex/disk"
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
		inEffect(t, r.mg, "the suspension of a", r.mg.Suspend("a"), "a", isSuspended)
		r.write("a", 0, 4096) // written while suspended: to copy
		h.Arm()
		resumed := resumeA(r, all)
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

// TestAnAddBehindAResumeWhoseSaveHangsIsAnswered: a resume's save hangs
// on its disk, holding the pairs the resume takes out of their bitmaps;
// the operator's add of b, which waits for it, is answered once SaveWait
// has passed, not yet in effect, and takes effect once the save ends.
func TestAnAddBehindAResumeWhoseSaveHangsIsAnswered(t *testing.T) {
	r, h := heldRig(t)
	r.mg.opts.SaveWait = 200 * time.Millisecond
	_, err := r.mg.Delete("b")
	inEffect(t, r.mg, "the deletion of b", err, "b", isDeleted)
	inEffect(t, r.mg, "the suspension of a", r.mg.Suspend("a"), "a", isSuspended)
	h.Arm()
	if err := r.mg.Resume("a"); !errors.Is(err, ErrSaveHung) {
		h.Release()
		t.Fatalf("the resume with its save hung: %v, want ErrSaveHung", err)
	}
	added := make(chan error, 1)
	go func() { added <- r.mg.Add("b") }()
	select {
	case err := <-added:
		if !errors.Is(err, ErrSaveHung) || !strings.Contains(err.Error(), "not yet in effect") {
			t.Errorf("the add behind a hung save: %v, want ErrSaveHung, not yet in effect", err)
		}
		t.Logf("answered: %v", err)
	case <-time.After(10 * time.Second):
		h.Release()
		<-added
		t.Fatal("the add behind a hung save has not been answered after 10s")
	}
	h.Release()
	h.await(t, "b added once the save ended", func() bool { return !r.pair("b").Deleted })
}

// TestASuspendAfterAResumeNotYetInEffectHolds: the operator's resume of a
// is answered not yet in effect (its save hangs); the operator then
// suspends a (or every pair), which is answered in effect. Once the disk
// answers, the resume, which came first, does not take effect over the
// suspension that came after it: a stays suspended, in memory and on
// disk.
func TestASuspendAfterAResumeNotYetInEffectHolds(t *testing.T) {
	bothWays(t, "suspend", "suspend --all", func(t *testing.T, all bool, name string) {
		r, h := heldRig(t)
		r.mg.opts.SaveWait = 200 * time.Millisecond
		inEffect(t, r.mg, "the suspension of a", r.mg.Suspend("a"), "a", isSuspended)
		r.write("a", 0, 4096)
		h.Arm()
		if err := <-resumeA(r, false); !errors.Is(err, ErrSaveHung) || !strings.Contains(err.Error(), "not yet in effect") {
			h.Release()
			t.Fatalf("the resume with its save hung: %v, want not yet in effect", err)
		}
		suspended := make(chan error, 1)
		go func() {
			if all {
				_, err := r.mg.SuspendAll()
				suspended <- err
				return
			}
			suspended <- r.mg.Suspend("a")
		}()
		select {
		case err := <-suspended:
			if err != nil && (!errors.Is(err, ErrSaveHung) || !strings.Contains(err.Error(), "in effect")) {
				t.Errorf("the %s after the resume: %v, want in effect", name, err)
			}
			t.Logf("the %s answered: %v", name, err)
		case <-time.After(10 * time.Second):
			h.Release()
			<-suspended
			t.Fatalf("the %s has not been answered 10s after the save hung", name)
		}
		h.Release()
		h.await(t, "the saves to end", func() bool { return r.mg.SaveUnderWay() == 0 })
		for end := time.Now().Add(time.Second); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
			if st := r.pair("a").State; st != Suspended {
				t.Fatalf("a, suspended by the %s after its resume was answered not yet in effect: %s once the disk answered, want suspended", name, st)
			}
		}
		r.mg.mu.Lock()
		r.mg.dirty = true
		r.mg.unlock()
		r.mg.kick()
		h.await(t, "the state saved again", func() bool {
			for _, p := range savedPersisted(t, filepath.Join(r.dir, "pairs.json")).Pairs {
				if p.Volume == "a" {
					return p.State == Suspended
				}
			}
			return false
		})
	})
}

// lockedBuffer is a log's output, written and read from several
// goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestAResumeNotYetInEffectThatNeverTakesEffectIsLogged: a resume
// answered not yet in effect (its save hung) whose save then fails, given
// up by the stop, never takes effect: the operator, told it would once
// the save ends, reads in the log that it did not, and why.
func TestAResumeNotYetInEffectThatNeverTakesEffectIsLogged(t *testing.T) {
	h := &heldSaves{FS: disk.OS}
	var logs lockedBuffer
	r := newRig(t, 64*twinRegion, 8<<20, "a", "b")
	r.opts.FS = h
	r.opts.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	r.opts.SaveWait = 200 * time.Millisecond
	r.open()
	r.settle()
	inEffect(t, r.mg, "the suspension of a", r.mg.Suspend("a"), "a", isSuspended)
	h.Arm()
	if err := <-resumeA(r, false); !errors.Is(err, ErrSaveHung) {
		h.Release()
		t.Fatalf("the resume with its save hung: %v, want not yet in effect", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := r.mg.CloseWithin(ctx, false); !errors.Is(err, ErrSaveHung) {
		t.Errorf("the stop's save behind the hung one: %v, want ErrSaveHung", err)
	}
	h.Release()
	h.await(t, "the log to say the resume did not take effect", func() bool {
		s := logs.String()
		return strings.Contains(s, "resume a") && strings.Contains(s, "not in effect")
	})
	if st := r.pair("a").State; st != Suspended {
		t.Errorf("a, its resume's save given up: %s, want suspended", st)
	}
}
