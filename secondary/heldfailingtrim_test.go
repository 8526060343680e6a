package secondary

import (
	"strings"
	"testing"
	"time"

	"duplex/disk"
)

// A trim that failed is tried again on its backoff until it succeeds;
// meanwhile status says the history is kept over its window, and why. A
// view of a past time opened meanwhile holds the old end as it opens:
// status then said only that readers of the past hold it, trimmed once
// they are done, as if nothing were failing, and hid the error the
// operator needs (the disk refusing removals) for as long as any view
// opened.
func TestStatusSaysAFailingTrimsErrorWhileAViewHoldsTheHistory(t *testing.T) {
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
	deadline := time.Now().Add(5 * time.Second)
	for {
		if st, ok := w.sec.hist.Stopped(); ok && st.Err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the trim run once the view opened did not fail")
		}
		time.Sleep(time.Millisecond)
	}
	var held string
	w.sec.testPinAtReading = func() { held = w.sec.Stats().HistoryOverLimit }
	v, err = w.sec.PinAt(w.groupTime(trimRaceGroups - 1))
	if err != nil {
		t.Fatal(err)
	}
	v.Close()
	if !strings.Contains(held, "reader") || !strings.Contains(held, "input/output error") {
		t.Errorf("a view opens while the trim fails (its removals: input/output error): status says %q", held)
	}
	t.Logf("while a view opens: %s", held)
}
