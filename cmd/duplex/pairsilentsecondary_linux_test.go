package main

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"duplex/config"
	"duplex/control"
	"duplex/internal/testenv"
)

// TestPairOperationPastASilentSecondarySaysSo: the config's primary answers
// as the primary, its link down, and the config's secondary control
// address drops packets. The secondary may be a promoted site this host
// cannot reach (the old primary beside it a split brain) as well as a host
// gone: the operation goes on at the primary, as an operation during an
// outage must without --addr (which would skip every check), and the
// output's first line says that the secondary did not answer (within the
// status wait: with the primary's link down, the secondary has it whole)
// and how to check it. A secondary that refuses the connection runs no site, and one
// that the primary's link reaches is the primary's secondary: neither is
// mentioned. Before: the operation went on at the primary saying nothing
// of the secondary.
func TestPairOperationPastASilentSecondarySaysSo(t *testing.T) {
	fp, path := pairSession(t, map[string]string{"vol1": "duplex", "vol2": "duplex", "vol3": "duplex"})
	c, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	setSecondary := func(addr string) {
		c.Secondary.Control = addr
		text, err := c.Encode()
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, path, text, 0o644)
	}
	silent := blackholeAddr(t)
	setSecondary(silent)
	code, out, errs := runCmd("pair", "suspend", "vol1", "--config", path)
	first, _, _ := strings.Cut(out, "\n")
	t.Logf("first line: %s", first)
	if code != exitOK || fp.state["vol1"] != "suspended" {
		t.Fatalf("pair suspend vol1: exit %d, stdout %q, stderr %q; want vol1 suspended", code, out, errs)
	}
	if !strings.Contains(first, silent) || !strings.Contains(first, "did not answer within") || !strings.Contains(first, "not promoted") || !strings.Contains(first, "duplex status --addr "+silent) {
		t.Errorf("pair suspend vol1, the secondary silent: first line %q; want it to name %s, taken as not promoted, and how to check it", first, silent)
	}

	// Nothing runs at a refused address.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := ln.Addr().String()
	ln.Close()
	setSecondary(refused)
	code, out, errs = runCmd("pair", "suspend", "vol2", "--config", path)
	if code != exitOK || fp.state["vol2"] != "suspended" || strings.Contains(out, refused) {
		t.Errorf("pair suspend vol2, the secondary refusing: exit %d, stdout %q, stderr %q; want vol2 suspended, the secondary not mentioned", code, out, errs)
	}

	// The primary's link up: the secondary takes its record sets.
	fresh := 0.3
	srv := &control.Server{Status: func() control.Status {
		st := fp.status()
		st.Link, st.LagSeconds = "connected", &fresh
		return st
	}, Pairs: fp, Token: "secret"}
	pl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go srv.Serve(ctx, pl)
	c.Primary.Control = pl.Addr().String()
	setSecondary(silent)
	code, out, errs = runCmd("pair", "suspend", "vol3", "--config", path)
	if code != exitOK || fp.state["vol3"] != "suspended" || strings.Contains(out, silent) {
		t.Errorf("pair suspend vol3, the primary's link up: exit %d, stdout %q, stderr %q; want vol3 suspended, the secondary not mentioned", code, out, errs)
	}
}

// TestPairOperationPastAStaleLinkAsksTheSecondaryLonger: the config's
// primary answers as the primary with its link "connected", but its
// secondary has acknowledged nothing for 30 s: a partition that drops
// every packet leaves an idle primary's link so, while the other site may
// have been promoted since. Its link then says nothing of the secondary.
// A secondary whose address connects only after 3 s (its SYNs lost) and
// answers as the promoted primary is heard, and the operation refused,
// both sites answering as the primary; one that never answers leaves the
// operation at the primary, the first line saying so. Before: the link's
// "connected" made the secondary unheard after 1.5 s count for nothing,
// and the operation changed the primary with not a word. A link whose
// consistency time a resync holds, its journaled time recent, is heard
// (see the last case of TestPairOperationPastASilentSecondarySaysSo for a
// link heard of late).
func TestPairOperationPastAStaleLinkAsksTheSecondaryLonger(t *testing.T) {
	stale := 30.0
	fp, path := pairSession(t, map[string]string{"vol1": "duplex", "vol2": "duplex", "vol3": "duplex"})
	fp.lag = &stale
	c, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	setSecondary := func(addr string) {
		c.Secondary.Control = addr
		text, err := c.Encode()
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, path, text, 0o644)
	}

	ln, open := testenv.SlowToConnect(t)
	promoted := &control.Server{Status: func() control.Status {
		return control.Status{Session: c.Session, Role: "primary", PromotedAt: "2026-12-06T01:00:00Z", Link: "suspended"}
	}, Token: "secret"}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	setSecondary(ln.Addr().String())
	time.AfterFunc(2*time.Second, func() {
		open()
		go promoted.Serve(ctx, ln)
	})
	start := time.Now()
	code, out, errs := runCmd("pair", "suspend", "vol1", "--config", path)
	t.Logf("pair suspend vol1, the promoted site slow to connect: exit %d after %s", code, time.Since(start).Round(time.Millisecond))
	if code == exitOK || !strings.Contains(errs, "both sites answer as the primary") || fp.state["vol1"] != "duplex" {
		t.Errorf("pair suspend vol1, the primary's link stale and the promoted site slow to connect: exit %d, stdout %q, stderr %q, state %v; "+
			"want it refused, both answering as the primary, vol1 left duplex", code, out, errs, fp.state)
	}

	silent := blackholeAddr(t)
	setSecondary(silent)
	code, out, errs = runCmd("pair", "suspend", "vol2", "--config", path)
	first, _, _ := strings.Cut(out, "\n")
	if code != exitOK || fp.state["vol2"] != "suspended" {
		t.Fatalf("pair suspend vol2: exit %d, stdout %q, stderr %q; want vol2 suspended", code, out, errs)
	}
	if !strings.Contains(first, silent) || !strings.Contains(first, "not promoted") || !strings.Contains(first, "duplex status --addr "+silent) {
		t.Errorf("pair suspend vol2, the primary's link stale and the secondary silent: first line %q; want it to name %s and how to check it", first, silent)
	}

	// A resync holds the consistency time a minute back; the journaled
	// time is the one acknowledged now.
	held := 60.0
	now := time.Now()
	srv := &control.Server{Status: func() control.Status {
		st := fp.status()
		st.Link, st.LagSeconds = "connected", &held
		st.ConsistencyTime = control.FormatTime(now.Add(-60 * time.Second).UnixNano())
		st.JournaledTime = control.FormatTime(now.Add(-100 * time.Millisecond).UnixNano())
		return st
	}, Pairs: fp, Token: "secret"}
	pl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ctx, pl)
	c.Primary.Control = pl.Addr().String()
	setSecondary(silent)
	start = time.Now()
	code, out, errs = runCmd("pair", "suspend", "vol3", "--config", path)
	if took := time.Since(start); code != exitOK || fp.state["vol3"] != "suspended" || strings.Contains(out, silent) || took > secondaryConnectWait+time.Second {
		t.Errorf("pair suspend vol3, a resync holding the consistency time: exit %d after %s, stdout %q, stderr %q; want vol3 suspended within about %s, the secondary not mentioned",
			code, took.Round(time.Millisecond), out, errs, secondaryConnectWait)
	}
}
