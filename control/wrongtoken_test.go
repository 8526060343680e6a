package control

import (
	"context"
	"net"
	"strings"
	"testing"
)

// TestACallWithTheWrongTokenSaysWhichTokenItWants: a call whose token is
// not the site's is refused saying where both come from, the
// control_token_file each side reads, and nothing is done. Before, it said
// "missing or wrong control token" alone.
func TestACallWithTheWrongTokenSaysWhichTokenItWants(t *testing.T) {
	var rates int
	srv := &Server{Status: func() Status { return Status{Session: "east", Role: "primary"} }, Token: "secret",
		SetRates: func(copyRate, linkRate *int64) (Rates, error) { rates++; return Rates{Copy: *copyRate}, nil }}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go srv.Serve(ctx, ln)
	r := int64(64 << 20)
	_, err = SetRates(ctx, Endpoint{Addr: ln.Addr().String()}, "wrong", &r, nil)
	if err == nil || !strings.Contains(err.Error(), "wrong control token") || !strings.Contains(err.Error(), "control_token_file") || rates != 0 {
		t.Errorf("a call with the wrong token: err %v, rates set %d times; want it refused naming control_token_file, nothing set", err, rates)
	}
}
