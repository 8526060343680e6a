package control

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestACloseMidCallSaysTheSiteMayHaveStopped: a site killed while it
// serves a call, the call read whole, closes the connection without an
// answer (no reset: nothing is left unread). The error says so, and of a
// call that changes state that whether it took effect is not known; the
// call is sent once, never again. Before: "status from ...: EOF", "drill:
// EOF".
func TestACloseMidCallSaysTheSiteMayHaveStopped(t *testing.T) {
	for _, tc := range []struct {
		name  string
		after afterCut
		want  []string
	}{
		{"stopped", nothingListens, []string{"closed the connection", "after the call was sent", "may have stopped", "nothing listens"}},
		{"started again", answersHTTP, []string{"closed the connection", "after the call was sent", "answers HTTP now", "started again"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr, _ := cutFirstCall(t, false, tc.after)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_, err := Fetch(ctx, Endpoint{Addr: addr})
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("%v; want it to say %q", err, w)
				}
			}
		})
	}
	addr, posts := cutFirstCall(t, false, nothingListens)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := Drill(ctx, Endpoint{Addr: addr}, "t", DrillRequest{})
	if err == nil || !strings.Contains(err.Error(), "whether it took effect is not known") {
		t.Errorf("a drill whose connection was closed mid-call: %v; want it said that whether it took effect is not known", err)
	}
	if n := posts.Load(); n != 1 {
		t.Errorf("the drill was sent %d times, want once", n)
	}
}
