package secondary

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"duplex/apply"
)

// failingTarget fails every write, as a volume whose disk has gone bad.
type failingTarget struct{ apply.Target }

func (failingTarget) WriteAt([]byte, int64) error { return errors.New("injected write failure") }

// waitFor polls cond for up to 10s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10s", what)
		}
	}
}

// An apply that fails part-way leaves the volumes at no group: the stopped
// secondary must neither serve reads of them nor fence at the old group as
// if they held it, until a restart has replayed the journal.
func TestFailedApplyRefusesReadsAndFence(t *testing.T) {
	r := newStorageRig(t, nil)
	l, _, reason := r.connect()
	if l == nil {
		t.Fatalf("refused: %s", reason)
	}
	l.send(1, 0, 0xa1)
	if g, reason := l.journaled(1); g != 1 {
		t.Fatalf("group 1 not acknowledged (reason %q)", reason)
	}
	waitFor(t, "group 1 applied", func() bool { return r.sec.Stats().Group >= 1 })
	buf := make([]byte, 4096)
	if err := r.sec.ReadAt("vol1", buf, 0); err != nil {
		t.Fatal(err)
	}

	// The applier reads the targets under the view lock.
	r.sec.view.Lock()
	r.sec.targets["vol1"] = failingTarget{r.sec.targets["vol1"]}
	r.sec.view.Unlock()
	l.send(2, 4096, 0xa2)
	if g, reason := l.journaled(2); g != 2 {
		t.Fatalf("group 2 not acknowledged (reason %q)", reason)
	}
	waitFor(t, "the secondary stopped on the failed apply", func() bool { return r.sec.Stats().Stopped != "" })
	err := r.sec.ReadAt("vol1", buf, 0)
	if err == nil || !strings.Contains(err.Error(), "restart") {
		t.Fatalf("read after a failed apply returned %v, want an error that says to restart", err)
	}
	if _, err := r.sec.Fence(); err == nil || !strings.Contains(err.Error(), "restart") {
		t.Fatalf("fence after a failed apply returned %v, want a refusal that says to restart", err)
	}

	// A restart replays group 2 onto the volume: reads and fence work again.
	r.stop()
	r.start()
	buf = make([]byte, 8192)
	if err := r.sec.ReadAt("vol1", buf, 0); err != nil {
		t.Fatalf("read after restart: %v", err)
	}
	if !bytes.Equal(buf[:4096], bytes.Repeat([]byte{0xa1}, 4096)) || !bytes.Equal(buf[4096:], bytes.Repeat([]byte{0xa2}, 4096)) {
		t.Fatal("the restarted secondary does not hold both groups")
	}
	if pos, err := r.sec.Fence(); err != nil || pos.Group != 2 {
		t.Fatalf("fence after restart: group %d, %v; want group 2", pos.Group, err)
	}
}
