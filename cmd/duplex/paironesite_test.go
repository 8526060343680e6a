package main

import (
	"context"
	"net"
	"os"
	"strings"
	"sync"
	"testing"

	"duplex/config"
	"duplex/control"
)

// TestPairOperationWithoutASecondaryControlAddressChecksTheSession: a
// config that names no secondary control address (it is optional) still
// has its primary's session checked before a pair operation goes there.
// The address answers for another session (a stale config, another
// session's primary on that address now) with the same token: the
// operation is refused, naming that session, and nothing changes there.
// Before, the check ran only with both addresses named: pair delete vol2
// ended the other session's vol2, pair suspend --all suspended its pairs
// and pair rate changed its limits, each exit 0.
func TestPairOperationWithoutASecondaryControlAddressChecksTheSession(t *testing.T) {
	_, path := pairSession(t, map[string]string{})
	theirs := &fakePairs{state: map[string]string{"vol1": "duplex", "vol2": "duplex"}}
	var mu sync.Mutex
	var rates []string
	srv := &control.Server{Status: func() control.Status {
		st := theirs.status()
		st.Session = "other"
		return st
	}, Pairs: theirs, Token: "secret", SetRates: func(copyRate, linkRate *int64) (control.Rates, error) {
		mu.Lock()
		defer mu.Unlock()
		rates = append(rates, "set")
		return control.Rates{}, nil
	}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go srv.Serve(ctx, ln)
	c, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	c.Primary.Control, c.Secondary.Control = ln.Addr().String(), ""
	text, err := c.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, text, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"pair", "delete", "vol2", "--config", path},
		{"pair", "suspend", "--all", "--config", path},
		{"pair", "rate", "--copy", "50MiB", "--config", path},
	} {
		code, out, errs := runCmd(args...)
		if code == exitOK || !strings.Contains(errs, `"other"`) || !strings.Contains(errs, ln.Addr().String()) {
			t.Errorf("%s: exit %d, stdout %q, stderr %q; want it refused, naming session \"other\" at %s",
				strings.Join(args[:3], " "), code, out, errs, ln.Addr())
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(theirs.calls) != 0 || len(rates) != 0 || theirs.state["vol2"] != "duplex" {
		t.Errorf("at the other session's primary: pair calls %v, rate calls %v, state %v; want nothing done", theirs.calls, rates, theirs.state)
	}
}

// TestPairAddrOfAnotherSessionIsRefused: --addr names the site that takes
// the operation, of the config's session: a site there that answers for
// another session (a port mistyped, a control address of the session next
// door, with the same token) is refused, naming that session, and nothing
// changes there. Before, pair delete vol2 --addr ended its vol2, exit 0.
func TestPairAddrOfAnotherSessionIsRefused(t *testing.T) {
	_, path := pairSession(t, map[string]string{"vol2": "duplex"})
	theirs := &fakePairs{state: map[string]string{"vol1": "duplex", "vol2": "duplex"}}
	srv := &control.Server{Status: func() control.Status {
		st := theirs.status()
		st.Session = "other"
		return st
	}, Pairs: theirs, Token: "secret"}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go srv.Serve(ctx, ln)
	for _, args := range [][]string{
		{"pair", "delete", "vol2", "--config", path, "--addr", ln.Addr().String()},
		{"pair", "suspend", "--all", "--config", path, "--addr", "http://" + ln.Addr().String()},
	} {
		code, out, errs := runCmd(args...)
		if code == exitOK || !strings.Contains(errs, `"other"`) || !strings.Contains(errs, ln.Addr().String()) {
			t.Errorf("%s: exit %d, stdout %q, stderr %q; want it refused, naming session \"other\" at %s",
				strings.Join(args[:3], " "), code, out, errs, ln.Addr())
		}
	}
	if len(theirs.calls) != 0 || theirs.state["vol2"] != "duplex" {
		t.Errorf("at the other session's site: calls %v, state %v; want nothing done", theirs.calls, theirs.state)
	}
}
