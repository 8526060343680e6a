package main

import (
	"context"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"duplex/config"
	"duplex/control"
)

// siteThatChanges serves the pairs of session "other", with the config's
// token, at a new address: until an operation arrives its status is what
// first makes of it (the checks that come before the operation), from
// then on it answers for "other". It is a site whose status the check did not get
// in time (first sleeps), or what answers at the address changed between
// the check and the operation.
func siteThatChanges(t *testing.T, first func(control.Status) control.Status) (*fakePairs, string) {
	t.Helper()
	theirs := &fakePairs{state: map[string]string{"vol1": "duplex", "vol2": "duplex"}}
	var posted atomic.Bool
	srv := &control.Server{Status: func() control.Status {
		st := theirs.status()
		st.Session = "other"
		if !posted.Load() {
			return first(st)
		}
		return st
	}, Pairs: theirs, Token: "secret"}
	h := srv.Handler()
	hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			posted.Store(true)
		}
		h.ServeHTTP(w, r)
	}), ReadHeaderTimeout: 5 * time.Second}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hs.Close() })
	go hs.Serve(ln)
	return theirs, ln.Addr().String()
}

// TestPairOperationIsCheckedByTheSiteThatTakesIt: the status asked before
// an operation cannot say what takes it: what answers at an address may
// change between the check and the operation (another session's site
// started on its port). The site that takes the operation checks it is of
// the config's session, and refuses it otherwise, naming that session,
// with nothing done there: with --addr, at the config's primary with no
// secondary control address, and at the config's primary with its
// secondary answering as a secondary. Before, pair delete vol2 ended the
// other session's vol2 and pair suspend --all suspended its pairs, exit 0.
// A site that does not answer its status within the wait is sent nothing,
// and the refusal says so.
func TestPairOperationIsCheckedByTheSiteThatTakesIt(t *testing.T) {
	defer func(w time.Duration) { pairStatusWait = w }(pairStatusWait)
	pairStatusWait = 300 * time.Millisecond
	// Read once: a late status is still being answered when the command
	// has given up on it, and the test has set pairStatusWait back.
	late := 3 * pairStatusWait
	for _, how := range []struct {
		name  string
		first func(st control.Status, session string) control.Status
		says  string
	}{
		{"its status late", func(st control.Status, _ string) control.Status {
			time.Sleep(late)
			return st
		}, "nothing was sent"},
		{"another site there after the check", func(st control.Status, session string) control.Status {
			st.Session = session
			return st
		}, `"other"`},
	} {
		for _, where := range []string{"--addr", "no secondary control address", "the secondary answering as a secondary"} {
			t.Run(how.name+", "+where, func(t *testing.T) {
				_, path := pairSession(t, map[string]string{"vol2": "duplex"})
				c, err := config.Load(path)
				if err != nil {
					t.Fatal(err)
				}
				for _, args := range [][]string{{"pair", "delete", "vol2"}, {"pair", "suspend", "--all"}} {
					theirs, addr := siteThatChanges(t, func(st control.Status) control.Status { return how.first(st, c.Session) })
					switch where {
					case "--addr":
						args = append(args, "--addr", addr)
					case "no secondary control address":
						c.Primary.Control, c.Secondary.Control = addr, ""
					default:
						c.Primary.Control, c.Secondary.Control = addr, secondaryOf(t, c.Session)
					}
					text, err := c.Encode()
					if err != nil {
						t.Fatal(err)
					}
					if err := os.WriteFile(path, text, 0o644); err != nil {
						t.Fatal(err)
					}
					code, out, errs := runCmd(append(args, "--config", path)...)
					if code == exitOK || !strings.Contains(errs, how.says) || !strings.Contains(errs, addr) {
						t.Errorf("%s: exit %d, stdout %q, stderr %q; want it refused, saying %s at %s",
							strings.Join(args, " "), code, out, errs, how.says, addr)
					} else {
						t.Log(errs)
					}
					theirs.mu.Lock()
					if len(theirs.calls) != 0 || theirs.state["vol2"] != "duplex" {
						t.Errorf("%s: at the other session's site: calls %v, state %v; want nothing done", strings.Join(args, " "), theirs.calls, theirs.state)
					}
					theirs.mu.Unlock()
				}
			})
		}
	}
}

// secondaryOf serves, at a new address, a running secondary of session:
// not promoted, so the operation goes to the config's primary.
func secondaryOf(t *testing.T, session string) string {
	t.Helper()
	srv := &control.Server{Status: func() control.Status {
		return control.Status{Session: session, Role: "secondary", Link: "connected"}
	}, Token: "secret"}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go srv.Serve(ctx, ln)
	return ln.Addr().String()
}
