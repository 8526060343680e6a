package control

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"
)

// TestAShortDrainGetsNoMoreThanItsCallerAllows: a caller whose deadline
// leaves the drain less than a second (pair suspend --drain --timeout
// 300ms, or 1ns) has the site give up draining within what is left, and
// says so with that bound; none left, the drain gets none. Before, the
// drain was given at least 1s whatever the caller allowed: a drain that
// ended within that second suspended the pair, a command whose --timeout
// had run out reporting it done.
func TestAShortDrainGetsNoMoreThanItsCallerAllows(t *testing.T) {
	pairs := &drainPairs{left: make(chan time.Duration, 1), cause: make(chan error, 1)}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go (&Server{Status: func() Status { return Status{} }, Pairs: pairs, Token: "t"}).Serve(ctx, ln)
	at := Endpoint{Addr: ln.Addr().String()}

	for _, allow := range []time.Duration{300 * time.Millisecond, time.Nanosecond} {
		dctx, dcancel := context.WithTimeout(ctx, AnswerMargin+allow)
		_, err := PairOp(dctx, at, "t", "wait", "suspend", true)
		dcancel()
		if left := <-pairs.left; left > allow {
			t.Errorf("allowed %v, the drain had %v", allow, left)
		}
		<-pairs.cause
		if err == nil || !strings.Contains(err.Error(), "timeout ran out after") || strings.Contains(err.Error(), "after 1s") {
			t.Errorf("allowed %v: %v; want the drain's timeout, within what was allowed", allow, err)
		}
	}
}
