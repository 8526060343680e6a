package main

import (
	"net"
	"strings"
	"testing"
	"time"

	"duplex/config"
	"duplex/control"
)

// slowDNSServer answers on 127.0.0.1:53 (UDP) the name "promoted." with
// 127.0.0.1 after delay (no IPv6 address), drops the queries for it under
// the search domain (a server that does not answer: the resolver waits
// its timeout, 1 s, before it tries the name as it is) and says no such
// name to the others.
func slowDNSServer(t *testing.T, delay time.Duration) {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:53")
	if err != nil {
		t.Fatalf("cannot serve DNS at 127.0.0.1:53 in the test's network namespace: %v", err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			q := append([]byte(nil), buf[:n]...)
			name, end, ok := question(q)
			if !ok {
				continue
			}
			switch name {
			case "promoted.dc1.duplex.test.":
				continue
			case "promoted.":
				go func() {
					time.Sleep(delay)
					resp := append([]byte{q[0], q[1], 0x80 | q[2]&0x01, 0x80, 0, 1, 0, 0, 0, 0, 0, 0}, q[12:end]...)
					if q[end-4] == 0 && q[end-3] == 1 { // A
						resp[7] = 1
						resp = append(resp, 0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 127, 0, 0, 1)
					}
					pc.WriteTo(resp, from)
				}()
			default:
				resp := append([]byte{q[0], q[1], 0x80 | q[2]&0x01, 0x80 | 3, 0, 1, 0, 0, 0, 0, 0, 0}, q[12:end]...)
				pc.WriteTo(resp, from)
			}
		}
	}()
}

// TestPairOperationWaitsForAPromotedSiteWhoseNameIsSlowToResolve: the
// config names its secondary by a host name whose lookup takes about 1.7 s
// (the search domain's server silent for the resolver's 1 s timeout), and
// there the promoted site answers at once; the old primary answers as a
// primary too. The connect bound (1.5 s) is for an address that takes no
// connection, not for the lookup before it: both answering as primary,
// the operation is refused, nothing done at the old primary. Before: the
// bound ran from before the lookup, the promoted site was cut off as
// "took no connection within 1.5s", and the old primary took the
// operation, exit 0.
func TestPairOperationWaitsForAPromotedSiteWhoseNameIsSlowToResolve(t *testing.T) {
	if !inResolverNamespace(t, "TestPairOperationWaitsForAPromotedSiteWhoseNameIsSlowToResolve") {
		return
	}
	slowDNSServer(t, 700*time.Millisecond)
	old, oldAddr := oldPrimaryWithPairs(t, "", false)
	fp, path, promoted := promotedSessionOf(t, &control.Status{Role: "primary"}, promotedSite{})
	c, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(promoted)
	c.Primary.Control, c.Secondary.Control = oldAddr, net.JoinHostPort("promoted", port)
	text, err := c.Encode()
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, path, text, 0o644)
	start := time.Now()
	code, out, errs := runCmd("pair", "delete", "vol2", "--config", path)
	t.Logf("took %s: exit %d, stdout %q, stderr %q", time.Since(start).Round(time.Millisecond), code, out, errs)
	if code == exitOK || !strings.Contains(errs, "both sites answer as the primary") {
		t.Errorf("pair delete vol2, the promoted site's name slow to resolve: exit %d, stdout %q, stderr %q; want it refused, both answering as primary", code, out, errs)
	}
	if len(old.calls) != 0 || len(fp.calls) != 0 {
		t.Errorf("at the old primary: %v, at the promoted site: %v; want nothing done", old.calls, fp.calls)
	}
}
