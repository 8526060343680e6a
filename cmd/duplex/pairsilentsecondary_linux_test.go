package main

import (
	"context"
	"net"
	"strings"
	"testing"

	"duplex/config"
	"duplex/control"
)

// TestPairOperationPastASilentSecondarySaysSo: the config's primary answers
// as the primary, its link down, and the config's secondary control
// address drops packets. The secondary may be a promoted site this host
// cannot reach (the old primary beside it a split brain) as well as a host
// gone: the operation goes on at the primary, as an operation during an
// outage must without --addr (which would skip every check), and the
// output's first line says that the secondary was not heard and how to
// check it. A secondary that refuses the connection runs no site, and one
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
	if !strings.Contains(first, silent) || !strings.Contains(first, "took no connection within") || !strings.Contains(first, "not promoted") || !strings.Contains(first, "duplex status --addr "+silent) {
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
	srv := &control.Server{Status: func() control.Status {
		st := fp.status()
		st.Link = "connected"
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
