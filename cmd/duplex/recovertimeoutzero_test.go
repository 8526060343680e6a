package main

import (
	"strings"
	"testing"
)

// TestRecoverTimeoutSaysTheFenceGoesOnOnlyIfAsked: when recover's --timeout
// runs out before the fence request reached the running secondary (a
// timeout of 0, or one shorter than the connection takes), the secondary
// was never asked to fence: it still takes its primary. recover must not
// tell the operator that "the fence goes on at the secondary" then. It
// does: the message is chosen on the timeout alone (fctx.Err()), whatever
// became of the request, and --timeout takes 0 (a negative one is refused
// as bad usage) without a word: the operator, told the old primary is
// being cut off, finds it still replicating into the volumes.
func TestRecoverTimeoutSaysTheFenceGoesOnOnlyIfAsked(t *testing.T) {
	for _, timeout := range []string{"0s", "1ns"} {
		t.Run(timeout, func(t *testing.T) {
			f := &fencingSecondary{journaled: 1, fenced: make(chan struct{})}
			path := serveFencing(t, f)
			code, out, errs := runCmd("recover", "--config", path, "--timeout", timeout)
			t.Logf("recover --timeout %s: exit %d, stdout %q, stderr %q", timeout, code, out, errs)
			f.mu.Lock()
			asked := f.fencing
			f.mu.Unlock()
			if !asked && strings.Contains(errs, "goes on at the secondary") {
				t.Errorf("recover says the fence goes on at the secondary, which was never asked to fence: %q", errs)
			}
			if !asked && (code == exitOK || !strings.Contains(errs, "still takes its primary") && code != exitUsage) {
				t.Errorf("recover --timeout %s: exit %d, %q; want a usage error, or a failure that says the secondary still takes its primary", timeout, code, errs)
			}
		})
	}
}
