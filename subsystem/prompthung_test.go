package subsystem

import (
	"testing"
	"time"
)

// TestPromptAndWriteNowDoNotWaitForAHungLease: the NBD server asks Prompt
// and serves WriteNow on the goroutine that reads its connection, so
// neither may wait for long. With the lease's disk hung, a write holds the
// ordering lock while its stamp waits for the lease's mark: Prompt says no
// at once, and WriteNow captures nothing and says it would wait, rather
// than hold up the connection's reads until the disk answers.
func TestPromptAndWriteNowDoNotWaitForAHungLease(t *testing.T) {
	s, _, wrote, release := writeHeldByAHungLease(t, 100*time.Millisecond)

	type answer struct {
		yes bool
		err error
	}
	asked := make(chan answer, 2)
	go func() { asked <- answer{yes: s.Prompt("v0", 64<<10, 4096)} }()
	go func() {
		wait, err := s.WriteNow("v0", make([]byte, 4096), 128<<10)
		asked <- answer{yes: !wait, err: err}
	}()
	for range 2 {
		select {
		case a := <-asked:
			if a.yes || a.err != nil {
				t.Errorf("the lease hung: Prompt or WriteNow said the write would not wait (%v)", a.err)
			}
		case <-time.After(2 * time.Second):
			t.Fatal("Prompt or WriteNow waited 2 s for the lease's hung disk")
		}
	}
	release()
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}
	if !s.Prompt("v0", 64<<10, 4096) {
		t.Error("the lease's disk answered: Prompt says a write would wait")
	}
}
