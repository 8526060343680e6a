package pair

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"duplex/disk"
)

// cutSaves, once armed, holds the first file a save creates until let go,
// lets the rest of that save's n files through, and holds every later one
// until the test ends: a kill -9 while the save after it is under way.
type cutSaves struct {
	disk.FS
	n, made atomic.Int64
	entered chan struct{}
	first   chan struct{}
	stop    chan struct{}
	once    sync.Once
}

func (s *cutSaves) arm(n int64) {
	s.entered, s.first = make(chan struct{}), make(chan struct{})
	s.made.Store(0)
	s.n.Store(n)
}

func (s *cutSaves) CreateTemp(dir, pattern string) (disk.File, error) {
	switch m := s.made.Add(1); {
	case m == 1 && s.first != nil:
		close(s.entered)
		<-s.first
	case m > s.n.Load():
		<-s.stop
	}
	return s.FS.CreateTemp(dir, pattern)
}

// A kill -9 after a resume saved its pair pending, while an operation made
// during that save (a deletion; a hand suspension of a pair the session
// resumes) has not saved yet, loses no write: the restarted primary copies
// the write made while the pair was suspended before the resume and the
// one made after the operation, whatever state it restarts the pair in.
func TestAKillAfterAResumesSaveLosesNoWriteOfAnOperationMeanwhile(t *testing.T) {
	for _, op := range []string{"delete", "suspend"} {
		t.Run(op, func(t *testing.T) {
			h := &cutSaves{FS: disk.OS, stop: make(chan struct{})}
			h.n.Store(1 << 40)
			t.Cleanup(func() { h.once.Do(func() { close(h.stop) }) })
			r := newRig(t, 64*twinRegion, 8<<20, "a", "b")
			r.opts.FS = h
			r.open()
			r.settle()
			// The resume's own save writes the bitmaps of the pairs it
			// resumes (a; a and b for the session's) and the state.
			files := int64(2)
			if op == "suspend" {
				files = 3
				r.mv.setConnected(false)
				if !r.mg.suspendSession(reasonLinkDown, false) {
					t.Fatal("setup: the session did not suspend")
				}
			} else if err := r.mg.Suspend("a"); err != nil {
				t.Fatal(err)
			}
			r.write("a", 0, 4096)
			r.mv.setConnected(true)

			h.arm(files)
			resumed := make(chan error, 1)
			go func() {
				if op == "suspend" {
					_, err := r.mg.resumeAll(true)
					resumed <- err
					return
				}
				resumed <- r.mg.Resume("a")
			}()
			<-h.entered
			done := make(chan error, 1)
			go func() {
				if op == "suspend" {
					done <- r.mg.Suspend("a")
					return
				}
				_, err := r.mg.Delete("a")
				done <- err
			}()
			deadline := time.Now().Add(30 * time.Second)
			for p := r.pair("a"); !p.Deleted && p.Auto == (op == "suspend"); p = r.pair("a") {
				if time.Now().After(deadline) {
					close(h.first)
					t.Fatalf("the %s did not take pair a in 30s while the resume saved", op)
				}
				time.Sleep(time.Millisecond)
			}
			close(h.first)
			for h.made.Load() <= files {
				if time.Now().After(deadline) {
					t.Fatalf("no save after the resume's in 30s (pair a %+v)", r.pair("a"))
				}
				time.Sleep(time.Millisecond)
			}
			r.write("a", 8*twinRegion, 4096)
			h.n.Store(1 << 40)
			r.crash()
			p := r.pair("a")
			if p.Deleted {
				return
			}
			bm := r.pendingRegions("a")
			for _, off := range []int64{0, 8 * twinRegion} {
				if !marked(bm, off) {
					t.Errorf("restarted, pair a (%s) does not copy the write at %d", p.State, off)
				}
			}
		})
	}
}
