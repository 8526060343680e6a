package main

import (
	"context"
	"net"
	"strings"
	"testing"

	"duplex/control"
)

// TestPairAllAtASecondaryIsRefused: --all reads the volumes' states from
// the status of the site that takes the operation, and a secondary's
// status has them too, as it last heard of them. --addr naming the
// secondary (its control address taken for the primary's), or a
// config's primary address that answers as a secondary, must not make
// pair add --all or pair resume --all end as if there were nothing to do:
// with the link down the secondary has not heard of a suspension or a
// delete at the primary. Nor may pair rate print a secondary's limits,
// which it has none of, as the primary's. Each is refused, naming the
// site and its role. Before, add --all and resume --all ended exit 0,
// every volume "left as it is", and pair rate printed "none" for both
// limits, exit 0. A single volume's operation, or a change of the limits,
// was refused by the secondary itself, but as "this site has no pairs",
// naming neither the site nor what it is.
func TestPairAllAtASecondaryIsRefused(t *testing.T) {
	_, path := pairSession(t, map[string]string{})
	sec := &fakePairs{state: map[string]string{"vol1": "duplex", "vol2": "duplex", "vol3": "duplex", "vol4": "duplex"}}
	srv := &control.Server{Status: func() control.Status {
		st := sec.status()
		st.Session, st.Role = "startup", "secondary"
		return st
	}, Token: "secret"}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go srv.Serve(ctx, ln)
	addr := ln.Addr().String()
	for _, op := range [][]string{{"add", "--all"}, {"resume", "--all"}, {"suspend", "--all"}, {"delete", "--all"}, {"rate"}, {"delete", "vol1"}, {"rate", "--copy", "50MiB"}} {
		for _, how := range [][]string{{"--addr", addr}, nil} {
			args := append(append([]string{"pair"}, op...), "--config", path)
			args = append(args, how...)
			if how == nil {
				withPrimaryAt(t, path, addr)
			}
			code, out, errs := runCmd(args...)
			if code == exitOK || !strings.Contains(errs, addr) || !strings.Contains(errs, "secondary") {
				t.Errorf("pair %v %v at a secondary: exit %d, stdout %q, stderr %q; want it refused, naming %s as the secondary",
					op, how, code, out, errs, addr)
			}
		}
	}
}
