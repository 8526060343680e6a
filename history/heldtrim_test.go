package history

import (
	"math/rand"
	"testing"
	"time"
)

// A Trim that a hold stops short (a recover --at or a view of a past time
// reading the undo as a checkpoint trims) leaves the files over MaxBytes.
// The secondary trims only at a checkpoint, and an idle or fenced one
// makes none for hours: once the last hold is let go, the history must
// come back under its bound on its own. It reported the Trim done and
// stayed over the bound until the next checkpoint.
func TestATrimAHoldStoppedIsDoneOnceTheHoldGoes(t *testing.T) {
	const (
		maxBytes = 4 << 20
		seg      = 1 << 20 // MaxBytes/16, at least 1 MiB
		groups   = 12
	)
	l, err := Open(t.TempDir(), Options{MaxBytes: maxBytes})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	v := &mem{make([]byte, 1<<20)}
	rng := rand.New(rand.NewSource(5))
	for g := uint64(1); g <= groups; g++ {
		rng.Read(v.b[:600<<10])
		if err := l.Capture(Header{Group: g, Time: int64(g)}, []Range{{"v", 0, 600 << 10}}, map[string]Source{"v": v}); err != nil {
			t.Fatal(err)
		}
	}
	p, ok := l.Oldest()
	if !ok {
		t.Fatal("no point")
	}
	release, err := l.Hold(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Trim(groups); err != nil {
		t.Fatal(err)
	}
	held := l.Bytes()
	if held <= maxBytes+2*seg {
		t.Fatalf("held at group %d, Trim left %d bytes, within the bound of %d: the hold kept nothing", p.Group, held, maxBytes)
	}
	checkHeldTrim(t, l, true)
	release()
	deadline := time.Now().Add(5 * time.Second)
	for l.Bytes() > maxBytes+2*seg {
		if time.Now().After(deadline) {
			t.Fatalf("the hold let go 5 s ago, and no checkpoint since: the history holds %d bytes (%d while held), over its bound of %d (and two segments)",
				l.Bytes(), held, maxBytes)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The files shrink as the Trim releases them, before it forgets the
	// stopped one: until its release is done they may still be over.
	l.retrims.Wait()
	checkHeldTrim(t, l, false)
}

// checkHeldTrim checks what Stopped says of a Trim held back: while it is
// (want), that a hold keeps the files over their bound, for the status a
// secondary shows; once the Trim ran whole, nothing.
func checkHeldTrim(t *testing.T, l *Log, want bool) {
	t.Helper()
	st, ok := l.Stopped()
	switch {
	case ok != want:
		t.Errorf("Stopped says a Trim is stopped short: %v, want %v (%+v)", ok, want, st)
	case want && (st.Holds != 1 || st.Since.IsZero() || st.Err != nil):
		t.Errorf("Stopped: %+v, want one hold, since a time, no error", st)
	}
}
