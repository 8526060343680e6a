package main

import (
	"context"
	"net"
	"os"
	"strings"
	"testing"

	"duplex/config"
	"duplex/control"
)

// promotedSession writes a config whose primary is the old primary, as the
// status states (a site that rejoined the promoted one, another primary, or
// none listening), and whose secondary is the promoted site, which holds the
// pairs.
func promotedSession(t *testing.T, old *control.Status) (*fakePairs, string, string) {
	t.Helper()
	fp, path := pairSession(t, map[string]string{"vol1": "awaiting-rejoin", "vol2": "awaiting-rejoin"})
	c, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if old != nil {
		// The old primary is of the config's session unless it says.
		o := *old
		if o.Session == "" {
			o.Session = c.Session
		}
		old = &o
		// The old primary has no pairs: it answers the operation so.
		srv := &control.Server{Status: func() control.Status { return *old }, Token: "secret"}
		go srv.Serve(ctx, ln)
	} else {
		ln.Close()
	}
	srv := &control.Server{Status: func() control.Status {
		st := fp.status()
		st.Session, st.PromotedAt = c.Session, "2026-12-06T01:00:00Z"
		return st
	}, Pairs: fp, Token: "secret"}
	ln2, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ctx, ln2)
	promotedAddr := ln2.Addr().String()
	c.Primary.Control = ln.Addr().String()
	c.Secondary.Control = promotedAddr
	text, err := c.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, text, 0o644); err != nil {
		t.Fatal(err)
	}
	return fp, path, promotedAddr
}

// TestPairOperationReachesThePromotedSite: after duplex promote the session's
// config still names the old primary; a pair operation with that config
// reaches the promoted site, which holds the pairs, and says so, whether the
// old primary rejoined it or is gone. Before, it went to the old primary
// ("this site has no pairs") or failed on its address (connection refused).
// Two sites answering as primary is refused, naming both; --addr names the
// site outright.
func TestPairOperationReachesThePromotedSite(t *testing.T) {
	rejoined := &control.Status{Role: "secondary", PromotedAt: "2026-12-06T01:00:00Z"}
	for _, tc := range []struct {
		name string
		old  *control.Status
	}{{"rejoined", rejoined}, {"gone", nil}} {
		t.Run(tc.name, func(t *testing.T) {
			fp, path, promoted := promotedSession(t, tc.old)
			code, out, errs := runCmd("pair", "suspend", "vol2", "--config", path)
			if code != exitOK || !strings.Contains(out, "vol2: suspend requested") || !strings.Contains(out, "promoted site at "+promoted) {
				t.Fatalf("pair suspend vol2: exit %d, stdout %q, stderr %q; want it taken by the promoted site %s and said so", code, out, errs, promoted)
			}
			if fp.state["vol2"] != "suspended" || fp.state["vol1"] != "awaiting-rejoin" {
				t.Errorf("at the promoted site: %v, want vol2 alone suspended", fp.state)
			}
		})
	}
	t.Run("both primary", func(t *testing.T) {
		fp, path, promoted := promotedSession(t, &control.Status{Role: "primary"})
		c, _ := config.Load(path)
		code, out, errs := runCmd("pair", "suspend", "vol2", "--config", path)
		if code == exitOK || !strings.Contains(errs, promoted) || !strings.Contains(errs, c.Primary.Control) || len(fp.calls) != 0 {
			t.Errorf("pair suspend vol2 with both sites primary: exit %d, stdout %q, stderr %q, calls %v; want a refusal naming both", code, out, errs, fp.calls)
		}
		code, out, errs = runCmd("pair", "suspend", "vol2", "--config", path, "--addr", promoted)
		if code != exitOK || fp.state["vol2"] != "suspended" {
			t.Errorf("pair suspend vol2 --addr %s: exit %d, stdout %q, stderr %q, state %v; want vol2 suspended there", promoted, code, out, errs, fp.state)
		}
	})
}
