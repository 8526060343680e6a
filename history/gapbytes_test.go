package history

import (
	"testing"
	"time"

	"duplex/disk"
)

// TestBytesDuringAGapAreTheNewJournals: a Gap replaces the journal, the
// undo of every earlier group given up, its files removed one by one and
// a new journal begun with the gap record. The secondary's status reads
// Bytes meanwhile, and said the old journal's size, undo the Log no
// longer holds, until the Gap was over: it must say the new journal's
// (nothing while none is open).
func TestBytesDuringAGapAreTheNewJournals(t *testing.T) {
	for _, op := range []disk.Op{disk.OpRemove, disk.OpSync} {
		t.Run(op.String(), func(t *testing.T) {
			dir := t.TempDir()
			in := disk.NewInjector(nil)
			l := gapCloseLog(t, dir, in)
			defer l.Close()
			before := l.Bytes()
			gate := make(chan struct{})
			in.Inject(disk.Fault{Op: op, Under: dir, Hang: gate})
			gapped := make(chan error, 1)
			go func() { gapped <- l.Gap(Header{Group: 4, Time: 4, State: []byte("s")}) }()
			for deadline := time.Now().Add(30 * time.Second); in.Injected(op) == 0; time.Sleep(time.Millisecond) {
				if time.Now().After(deadline) {
					close(gate)
					t.Fatalf("the gap's %s did not come within 30s", op)
				}
			}
			during := l.Bytes()
			close(gate)
			if err := <-gapped; err != nil {
				t.Fatalf("gap: %v", err)
			}
			after := l.Bytes()
			t.Logf("history bytes: %d before the gap, %d while its %s hung, %d after it", before, during, op, after)
			if during > after {
				t.Fatalf("while the gap's %s hung, the history said %d bytes (the old journal's: %d), want at most the new journal's, "+
					"%d once the gap is over", op, during, before, after)
			}
		})
	}
}
