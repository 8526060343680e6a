package pair

import (
	"context"
	"testing"
	"time"

	"duplex/internal/testhold"
	"duplex/timer"
)

// The pairs' states are read while a resume's marker waits for the
// ordering lock, held by a write of another volume waiting for its stamp:
// the resume captures its marker under the manager's lock, which status
// takes too.
func TestPairsAnswerWhileAResumesMarkerWaitsForAWritesStamp(t *testing.T) {
	dir := t.TempDir()
	const size = 4 << 20
	state := savePairs(t, dir, true,
		&Pair{Volume: "a", Subsystem: "s1", State: Suspended, Size: size, Since: 1, Consistent: 1},
		&Pair{Volume: "b", Subsystem: "s1", State: Duplex, Size: size})
	c := &testhold.Clock{}
	mg, ss := restartable(t, dir, state, size, timer.NewWithClock(c.Now))()
	c.Arm()
	wrote := make(chan error, 1)
	go func() { wrote <- ss.Write(context.Background(), "b", make([]byte, 4096), 0) }()
	<-c.Entered()
	resumed := make(chan error, 1)
	go func() { resumed <- mg.ResumeInconsistent("a") }() // needs no journal room, unknown here
	// The resume reaches its marker.
	time.Sleep(500 * time.Millisecond)
	read := make(chan []Pair, 1)
	go func() { read <- mg.Pairs() }()
	select {
	case ps := <-read:
		if ps[0].State != Suspended {
			t.Errorf("while its resume waited, pair a read %s, want suspended (the state before the resume)", ps[0].State)
		}
	case <-time.After(30 * time.Second):
		t.Errorf("the pairs were not read in 30s while a resume's marker waited for a write's stamp")
	}
	c.Release()
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}
	if err := <-resumed; err != nil {
		t.Fatal(err)
	}
	// What the resume changed is read once it returned.
	if a := mg.Pairs()[0]; a.State == Suspended {
		t.Errorf("after its resume returned, pair a read %s, want no longer suspended", a.State)
	}
}
