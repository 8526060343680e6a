package secondary

import (
	"strings"
	"testing"
	"time"

	"duplex/disk"
)

// A view of a past time (a failover drill's, NAME@TIME) holds the undo it
// reads from Trim; a release's retry (or a checkpoint) that trims the
// window's old end meanwhile is stopped short. Status says the history is
// kept over its window while held; once the view has opened, with no
// checkpoint since (a fenced or idle secondary makes none), the history
// comes back within its window. It stayed over it, status silent, until
// the next checkpoint.
func TestATrimAViewHeldBackIsDoneOnceTheViewHasOpened(t *testing.T) {
	w := openTrimRace(t)
	var during string
	w.sec.testPinAtReading = func() {
		w.retryTrimmingTheWindow()
		during = w.sec.Stats().HistoryOverLimit
	}
	v, err := w.sec.PinAt(w.groupTime(1))
	if err != nil {
		t.Fatal(err)
	}
	v.Close()
	if during == "" {
		t.Error("status said nothing of the history kept over its window while a view held its old end")
	} else {
		t.Logf("held: %s", during)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		st := w.sec.Stats()
		// Space goes back a segment at a time, two groups' undo each:
		// group 5 shares group 6's.
		if st.HistoryOldestGroup >= trimRaceGroups-1 && st.HistoryOverLimit == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the view opened 5 s ago, no checkpoint since: the history's oldest group is %d (%d bytes), older than the window "+
				"that leaves groups %d and %d; status: %q", st.HistoryOldestGroup, st.HistoryBytes, trimRaceGroups-1, trimRaceGroups, st.HistoryOverLimit)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// The trim run once the view has opened may fail (the disk refused to
// remove a segment for a while): status says the history is kept over
// its window, and why, until a try succeeds, and it is tried again on its
// own, no checkpoint coming. It was tried only at the next checkpoint
// that trims, which a fenced secondary never makes.
func TestAFailedTrimAfterAViewIsTriedAgain(t *testing.T) {
	inj := disk.NewInjector(nil)
	w := openTrimRaceFS(t, inj)
	w.sec.testPinAtReading = func() {
		w.retryTrimmingTheWindow()
		inj.Inject(disk.Fault{Op: disk.OpRemove, Under: w.hist.Dir})
	}
	v, err := w.sec.PinAt(w.groupTime(1))
	if err != nil {
		t.Fatal(err)
	}
	v.Close()
	// Until the failed trim has kept its error (after its removal
	// failed), status may still say the history is being trimmed.
	deadline := time.Now().Add(5 * time.Second)
	for {
		if st, ok := w.sec.hist.Stopped(); ok && st.Err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the trim run once the view opened did not fail (%d removals failed)", inj.Injected(disk.OpRemove))
		}
		time.Sleep(time.Millisecond)
	}
	failing := w.sec.Stats().HistoryOverLimit
	if !strings.Contains(failing, "failed") {
		t.Errorf("the trim once the view opened failed: status says %q", failing)
	}
	inj.Clear()
	deadline = time.Now().Add(10 * time.Second)
	for {
		st := w.sec.Stats()
		if st.HistoryOldestGroup >= trimRaceGroups-1 && st.HistoryOverLimit == "" {
			break
		}
		if st.HistoryOverLimit == "" {
			t.Fatalf("the history's oldest group is %d, older than the window that leaves groups %d and %d, and status says nothing of it",
				st.HistoryOldestGroup, trimRaceGroups-1, trimRaceGroups)
		}
		if time.Now().After(deadline) {
			t.Fatalf("the disk removes files again since 10 s, no checkpoint since: the history's oldest group is %d, older than the window "+
				"that leaves groups %d and %d; status: %q", st.HistoryOldestGroup, trimRaceGroups-1, trimRaceGroups, st.HistoryOverLimit)
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("while failing: %s", failing)
}
