package main

import (
	"context"
	"encoding/json"
	"net"
	"strings"
	"testing"

	"duplex/control"
	"duplex/internal/testenv"
)

func serveStatus(t *testing.T, st control.Status) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	s := &control.Server{Status: func() control.Status { return st }}
	go s.Serve(ctx, ln)
	return ln.Addr().String()
}

func TestStatusAddr(t *testing.T) {
	used, limit := int64(1<<20), int64(256<<20)
	addr := serveStatus(t, control.Status{Session: "s", Role: "primary", Link: "connected", ConsistencyTime: "2026-11-27T00:00:00.000000001Z",
		SidefileBytes: &used, SidefileLimitBytes: &limit,
		Volumes: []control.VolumeStatus{{Name: "vol1", Subsystem: "ss1", State: "duplex", SizeBytes: 1 << 30, CopiedBytes: 1 << 30},
			{Name: "vol2", Subsystem: "ss1", State: "suspended", SizeBytes: 1 << 30, Auto: true, Reason: "link down with a full sidefile",
				Note: "resync needs about 5 bytes of journal at the secondary, 4 free"},
			{Name: "vol3", Subsystem: "ss1", State: "suspended", SizeBytes: 1 << 30, Reason: "a read of the primary volume for its copy did not complete in time"},
			{Name: "vol4", Subsystem: "ss1", State: "suspended", SizeBytes: 1 << 30, RejoinOwed: true, Note: "awaits the old primary's rejoin"}}})
	code, out, errs := runCmd("status", "--addr", addr)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, want := range []string{"s role:primary link:connected", "sidefile:1.0 MiB/256.0 MiB", "vol1 subsystem:ss1 state:duplex",
		`vol2 subsystem:ss1 state:suspended size:1.0 GiB auto-suspended:"link down with a full sidefile" waiting:"resync needs about 5 bytes of journal at the secondary, 4 free"`,
		`vol3 subsystem:ss1 state:suspended size:1.0 GiB suspended-by-session:"a read of the primary volume for its copy did not complete in time"`,
		`vol4 subsystem:ss1 state:suspended size:1.0 GiB awaiting-rejoin waiting:"awaits the old primary's rejoin"`} {
		if !strings.Contains(out, want) {
			t.Errorf("human status lacks %q:\n%s", want, out)
		}
	}
	code, out, _ = runCmd("status", "--addr", addr, "--json")
	var got map[string]any
	if code != exitOK || json.Unmarshal([]byte(out), &got) != nil {
		t.Fatalf("exit %d, json %q", code, out)
	}
	for _, k := range []string{"session", "role", "consistency_time", "lag_seconds", "link", "sidefile_bytes", "sidefile_limit_bytes", "volumes"} {
		if _, ok := got[k]; !ok {
			t.Errorf("status JSON lacks %q", k)
		}
	}
}

func TestStatusUnreachableFails(t *testing.T) {
	addr := testenv.FreeAddr(t) // reserved: nothing listens there
	if code, _, errs := runCmd("status", "--addr", addr); code != exitFailure || !strings.Contains(errs, addr) {
		t.Fatalf("exit %d, stderr %q", code, errs)
	}
}

// TestStatusFlagsInAnyOrder: --json before or after --addr, and a status
// that cannot reach one site prints the other and fails with one line.
func TestStatusFlagsInAnyOrder(t *testing.T) {
	addr := serveStatus(t, control.Status{Session: "s", Role: "secondary", Link: "connected"})
	_, a, _ := runCmd("status", "--addr", addr, "--json")
	_, b, _ := runCmd("status", "--json", "--addr="+addr)
	if a == "" || a != b {
		t.Errorf("status --addr A --json printed %q, status --json --addr=A %q", a, b)
	}

	down := testenv.FreeAddr(t) // reserved: nothing listens there
	dir := t.TempDir()
	c := startupSession(dir)
	c.Primary.Control, c.Secondary.Control = down, addr
	code, out, errs := runCmd("status", "--config", writeSessionConfig(t, dir, c))
	if code != exitFailure || !strings.Contains(out, "s role:secondary link:connected") ||
		strings.Count(errs, "\n") != 1 || !strings.HasPrefix(errs, "duplex: ") || !strings.Contains(errs, down) {
		t.Errorf("status with one site down: exit %d, stdout %q, stderr %q; want exit 1, the other site, and one line naming %s", code, out, errs, down)
	}
}

// TestStatusSaysWhyTheLinkIsDown: a site whose link is down says why in the
// text too, not only in the JSON's last_error.
func TestStatusSaysWhyTheLinkIsDown(t *testing.T) {
	why := `dial 127.0.0.1:7402: TLS handshake: tls: failed to verify certificate: x509: certificate relies on legacy Common Name field, use SANs instead (the secondary's certificate names its host only in its Common Name)`
	for _, role := range []string{"primary", "secondary"} {
		addr := serveStatus(t, control.Status{Session: "s", Role: role, Link: "disconnected", LastError: why})
		code, out, errs := runCmd("status", "--addr", addr)
		if code != exitOK {
			t.Fatalf("exit %d: %s", code, errs)
		}
		if want := "  last-error: " + why + "\n"; !strings.Contains(out, want) {
			t.Errorf("%s: human status lacks %q:\n%s", role, want, out)
		}
		at := "2026-12-02T15:04:05.123Z"
		addr = serveStatus(t, control.Status{Session: "s", Role: role, Link: "disconnected", LastError: why, LastErrorAt: at})
		if _, out, _ = runCmd("status", "--addr", addr); !strings.Contains(out, "  last-error: "+why+" (at "+at+")\n") {
			t.Errorf("%s: human status does not say when the last error happened:\n%s", role, out)
		}
	}
}

// TestStatusAddrTakesTheDemosURLOrSaysWhy: the demo prints each site's
// status page as a URL (http://127.0.0.1:7401/), and an operator pastes it
// to --addr: status then looks up the host "http" and fails with exit 1
// ("dial tcp: lookup http ... no such host", the URL mangled to
// "http://http//..."); an address without a port dials port 80. Either is a
// bad value of --addr: taken (the URL's host:port), or refused with exit 2
// saying a host:port is wanted, never a failure to reach a site that was
// never asked for.
func TestStatusAddrTakesTheDemosURLOrSaysWhy(t *testing.T) {
	addr := serveStatus(t, control.Status{Session: "s", Role: "primary", Link: "connected"})
	for _, bad := range []string{"http://" + addr + "/", "http://" + addr, "127.0.0.1"} {
		code, _, errs := runCmd("status", "--addr", bad)
		if code == exitFailure {
			t.Errorf("status --addr %q: exit 1 (%s), want the site's status or exit 2 asking for host:port", bad, strings.TrimSpace(errs))
		}
	}
}

// A coupled secondary whose add waits for it to journal past the others
// says so, and what to do, in the human status as in JSON.
func TestStatusSaysWhatAnUnfinishedAddWaitsFor(t *testing.T) {
	why := "coupling: session x's add ended before it gave the session its floor ... duplex couple remove --config FILE x"
	addr := serveStatus(t, control.Status{Session: "x", Role: "secondary", Link: "connected",
		Coupling: &control.CouplingStatus{Group: "g", Members: []string{"b", "x"}, AddUnfinished: why}})
	code, out, errs := runCmd("status", "--addr", addr)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errs)
	}
	if want := "  add-unfinished: " + why + "\n"; !strings.Contains(out, want) {
		t.Errorf("human status lacks %q:\n%s", want, out)
	}
}
