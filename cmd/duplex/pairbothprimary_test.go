package main

import (
	"context"
	"net"
	"strings"
	"testing"

	"duplex/control"
)

// oldPrimaryWithPairs serves, at a new address, the config's old primary
// started again as a primary of the session (a split brain: it has not
// heard of the promotion), with pairs of its own that an operation would
// change; starting says its start has not read its state yet.
func oldPrimaryWithPairs(t *testing.T, session string, starting bool) (*fakePairs, string) {
	t.Helper()
	old := &fakePairs{state: map[string]string{"vol1": "duplex", "vol2": "duplex"}}
	srv := &control.Server{Status: func() control.Status {
		if starting {
			return control.Status{Session: session, Role: "primary", Link: "disconnected",
				Starting: &control.StartingStatus{Since: "2026-12-06T02:00:00Z", Step: "the pair state", StepSeconds: 1}}
		}
		st := old.status()
		st.Session = session
		return st
	}, Pairs: old, Token: "secret"}
	if starting {
		srv.Pairs = nil
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go srv.Serve(ctx, ln)
	return old, ln.Addr().String()
}

// TestPairOperationWithTheOldPrimaryRunningAndThePromotedSiteStarting:
// the promoted site starts again (a primary that starts: no promotion
// time yet) while the old primary runs as a primary of the session. Both
// are primaries of the session; either could be the wrong one, and the
// promoted site's start says nothing yet of which holds the pairs. The
// operation is refused, naming both, and the old primary's pairs are left
// as they are. Before, the old primary took it: pair delete vol2 ended
// its vol2, pair suspend --all suspended its pairs, exit 0. And the other
// way round, the old primary starting while the promoted site runs, both
// are named too.
func TestPairOperationWithTheOldPrimaryRunningAndThePromotedSiteStarting(t *testing.T) {
	for _, tc := range []struct {
		name              string
		oldStarting       bool
		promotedIsStarted bool
	}{
		{"the promoted site starting", false, true},
		{"the old primary starting", true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fp, path, promoted := promotedSessionOf(t, nil, promotedSite{starting: tc.promotedIsStarted})
			old, prim := oldPrimaryWithPairs(t, "startup", tc.oldStarting)
			withPrimaryAt(t, path, prim)
			for _, args := range [][]string{
				{"pair", "delete", "vol2", "--config", path},
				{"pair", "suspend", "--all", "--config", path},
				{"pair", "rate", "--copy", "50MiB", "--config", path},
			} {
				code, out, errs := runCmd(args...)
				if code == exitOK || !strings.Contains(errs, prim) || !strings.Contains(errs, promoted) || !strings.Contains(errs, "--addr") {
					t.Errorf("%s: exit %d, stdout %q, stderr %q; want it refused, naming %s and %s and --addr",
						strings.Join(args[:3], " "), code, out, errs, prim, promoted)
				}
			}
			if len(old.calls) != 0 || len(fp.calls) != 0 {
				t.Errorf("calls at the old primary %v, at the promoted site %v; want none", old.calls, fp.calls)
			}
		})
	}
}
