package control

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestAResetMidCallSaysTheSiteMayHaveStopped: a control address that reads
// a call and then resets the connection, the site stopping under it, is
// not said to be a link address: the error says the connection was reset
// mid-call and that the site may have stopped (nothing listens there
// afterwards) or started again (it answers HTTP afterwards). An address
// that resets every call keeps the link address's hint. Before: every reset
// said "a site's link address, the config's secondary.listen, resets what
// is not its own protocol".
func TestAResetMidCallSaysTheSiteMayHaveStopped(t *testing.T) {
	for _, tc := range []struct {
		name  string
		after afterCut
		want  []string
	}{
		{"stopped", nothingListens, []string{"reset the connection", "after the call was sent", "may have stopped", "nothing listens"}},
		{"started again", answersHTTP, []string{"reset the connection", "after the call was sent", "answers HTTP now", "started again"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr, _ := cutFirstCall(t, true, tc.after)
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
			if strings.Contains(err.Error(), "secondary.listen") || strings.Contains(err.Error(), "link address") {
				t.Errorf("%v; want no link address's hint for a site that reset one call", err)
			}
		})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	addr, _ := cutFirstCall(t, true, nothingListens)
	_, err := Drill(ctx, Endpoint{Addr: addr}, "t", DrillRequest{})
	if err == nil || !strings.Contains(err.Error(), "whether it took effect") {
		t.Errorf("a drill reset mid-call: %v; want it said that whether it took effect is not known", err)
	}
}
