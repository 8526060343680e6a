package control

import (
	"context"
	"errors"
	"net"
	"testing"
)

// TestARefusalSaysTheCallsNameOnce: a site's refusal that begins with the
// call's name, as the site's own errors name the part they come from, is
// reported with that name once. Before, "drill: drill: no drill runs",
// "switchover: switchover abandoned, writes resume: ...".
func TestARefusalSaysTheCallsNameOnce(t *testing.T) {
	for _, tc := range []struct{ refusal, want string }{
		{"drill: no drill runs", "drill: no drill runs"},
		{"no drill runs", "drill: no drill runs"},
		{"drill abandoned, replication goes on", "drill abandoned, replication goes on"},
		// Another word, a volume's name or a part's, stays.
		{"drills: none", "drill: drills: none"},
		{"secondary: stopping", "drill: secondary: stopping"},
	} {
		srv := &Server{Status: func() Status { return Status{Role: "secondary"} }, Token: "t",
			Drill: func(DrillRequest) (DrillResult, error) { return DrillResult{}, errors.New(tc.refusal) }}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		go srv.Serve(ctx, ln)
		_, err = Drill(ctx, Endpoint{Addr: ln.Addr().String()}, "t", DrillRequest{Stop: true})
		cancel()
		if err == nil || err.Error() != tc.want {
			t.Errorf("a drill refused with %q: %v; want %q", tc.refusal, err, tc.want)
		}
	}
}
