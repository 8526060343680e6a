package pair

import (
	"sync"
	"testing"
	"time"

	"duplex/disk"
)

// heldSaves holds every file a save creates, once armed, until released: a
// disk whose fsyncs take seconds under load.
type heldSaves struct {
	disk.FS
	mu      sync.Mutex
	armed   bool
	entered chan struct{} // closed when a save is held
	release chan struct{}
}

func (h *heldSaves) arm() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.armed, h.entered, h.release = true, make(chan struct{}), make(chan struct{})
}

func (h *heldSaves) CreateTemp(dir, pattern string) (disk.File, error) {
	h.mu.Lock()
	armed, entered, release := h.armed, h.entered, h.release
	h.armed = false
	h.mu.Unlock()
	if armed {
		close(entered)
		<-release
	}
	return h.FS.CreateTemp(dir, pattern)
}

// The pairs' states (what status reports) are read while a resume saves the
// pending state, however long its disk takes: status answers at once, never
// stuck behind an operation. A resume held the manager's lock over its
// writes and fsyncs, and a status asked during them waited out the disk
// (seconds on a loaded machine, past the status clients' timeouts).
func TestPairsAnswerWhileAResumeIsSaved(t *testing.T) {
	for _, all := range []bool{false, true} {
		name := "resume"
		if all {
			name = "resume --all"
		}
		t.Run(name, func(t *testing.T) {
			h := &heldSaves{FS: disk.OS}
			r := newRig(t, 64*twinRegion, 8<<20, "a", "b")
			r.opts.FS = h
			r.open()
			r.settle()
			if err := r.mg.Suspend("a"); err != nil {
				t.Fatal(err)
			}
			for i := range 8 { // written while suspended: in the bitmap only
				r.write("a", int64(i)*twinRegion, 4096)
			}
			h.arm()
			resumed := make(chan error, 1)
			go func() {
				if all {
					_, err := r.mg.ResumeAll()
					resumed <- err
					return
				}
				resumed <- r.mg.Resume("a")
			}()
			<-h.entered
			read := make(chan []Pair, 1)
			go func() { read <- r.mg.Pairs() }()
			// The save is held until the pairs are read: a read that waits
			// for the save never returns; the bound only ends the test.
			select {
			case <-read:
			case <-time.After(30 * time.Second):
				close(h.release)
				<-resumed
				t.Fatalf("the pairs were not read in 30s while a %s saved its state: status waits for the disk", name)
			}
			close(h.release)
			if err := <-resumed; err != nil {
				t.Fatal(err)
			}
			if p := r.pair("a"); p.State != Pending && p.State != Duplex {
				t.Fatalf("pair a is %s after the resume, want pending or duplex", p.State)
			}
		})
	}
}
