package pair

import (
	"testing"
	"time"

	"duplex/disk"
	"duplex/internal/testhold"
)

// heldSaves holds the next file a save creates, once armed, until
// released: a disk whose fsyncs take seconds under load.
type heldSaves struct {
	disk.FS
	testhold.Once
}

func (h *heldSaves) CreateTemp(dir, pattern string) (disk.File, error) {
	h.Pass()
	return h.FS.CreateTemp(dir, pattern)
}

// heldRig is a settled rig over pairs a and b whose saves h holds once
// armed.
func heldRig(t *testing.T) (*rig, *heldSaves) {
	t.Helper()
	h := &heldSaves{FS: disk.OS}
	r := newRig(t, 64*twinRegion, 8<<20, "a", "b")
	r.opts.FS = h
	r.open()
	r.settle()
	return r, h
}

// await waits, while a save is held, until cond holds; past 30s it lets
// the save go and fails, saying what did not happen meanwhile.
func (h *heldSaves) await(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			h.Release()
			t.Fatalf("%s: not in 30s while a save was held", what)
		}
	}
}

// bothWays runs f as a subtest named one, and as one named all with all
// set: an operation on one pair and on every pair.
func bothWays(t *testing.T, one, all string, f func(t *testing.T, all bool, name string)) {
	for _, a := range []bool{false, true} {
		name := one
		if a {
			name = all
		}
		t.Run(name, func(t *testing.T) { f(t, a, name) })
	}
}

// resumeA resumes a, with resume --all if all is set, and says on the
// channel returned how it ended.
func resumeA(r *rig, all bool) <-chan error {
	resumed := make(chan error, 1)
	go func() {
		if all {
			_, err := r.mg.ResumeAll()
			resumed <- err
			return
		}
		resumed <- r.mg.Resume("a")
	}()
	return resumed
}

// The pairs' states (what status reports) are read while a resume saves the
// pending state, however long its disk takes: status answers at once, never
// stuck behind an operation. A resume held the manager's lock over its
// writes and fsyncs, and a status asked during them waited out the disk
// (seconds on a loaded machine, past the status clients' timeouts).
func TestPairsAnswerWhileAResumeIsSaved(t *testing.T) {
	bothWays(t, "resume", "resume --all", func(t *testing.T, all bool, name string) {
		r, h := heldRig(t)
		if err := r.mg.Suspend("a"); err != nil {
			t.Fatal(err)
		}
		for i := range 8 { // written while suspended: in the bitmap only
			r.write("a", int64(i)*twinRegion, 4096)
		}
		h.Arm()
		resumed := resumeA(r, all)
		<-h.Entered()
		read := make(chan []Pair, 1)
		go func() { read <- r.mg.Pairs() }()
		// The save is held until the pairs are read: a read that waits
		// for the save never returns; the bound only ends the test.
		select {
		case <-read:
		case <-time.After(30 * time.Second):
			h.Release()
			<-resumed
			t.Fatalf("the pairs were not read in 30s while a %s saved its state: status waits for the disk", name)
		}
		h.Release()
		if err := <-resumed; err != nil {
			t.Fatal(err)
		}
		if p := r.pair("a"); p.State != Pending && p.State != Duplex {
			t.Fatalf("pair a is %s after the resume, want pending or duplex", p.State)
		}
	})
}
