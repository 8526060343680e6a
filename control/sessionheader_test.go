package control

import (
	"context"
	"net"
	"strings"
	"testing"
)

// TestACallForAnotherSessionIsRefused: a call that changes a site's state
// and names a session (Endpoint.Session) is refused by a site of another
// session, which says both, and nothing is done; one for the site's own
// session, or naming none (an older client), is taken, and so is one at a
// site that names no session yet (a secondary that reopens after a disk
// fault).
func TestACallForAnotherSessionIsRefused(t *testing.T) {
	for _, tc := range []struct {
		site, call string
		refused    bool
	}{
		{"east", "west", true},
		{"east", "east", false},
		{"east", "", false},
		{"", "west", false},
	} {
		var rates int
		srv := &Server{Status: func() Status { return Status{Session: tc.site, Role: "primary"} }, Token: "secret",
			SetRates: func(copyRate, linkRate *int64) (Rates, error) { rates++; return Rates{Copy: *copyRate}, nil }}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		go srv.Serve(ctx, ln)
		r := int64(64 << 20)
		_, err = SetRates(ctx, Endpoint{Addr: ln.Addr().String(), Session: tc.call}, "secret", &r, nil)
		cancel()
		switch {
		case tc.refused && (err == nil || !strings.Contains(err.Error(), `session "east", not of session "west"`) || !strings.Contains(err.Error(), ln.Addr().String()) || rates != 0):
			t.Errorf("site of %q, call for %q: err %v, rates set %d times; want it refused naming both sessions and the address, nothing set", tc.site, tc.call, err, rates)
		case !tc.refused && (err != nil || rates != 1):
			t.Errorf("site of %q, call for %q: err %v, rates set %d times; want it taken", tc.site, tc.call, err, rates)
		}
	}
}
