package main

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"duplex/control"
)

// TestARefusalOfAConnectedPrimaryReadsAsTheOthers: recover and promote
// at a running secondary that a primary replicates to are refused, exit
// 1, as the command's other refusals read: the command's name first, what
// to do after the colon in lower case, --force as the command line that
// takes the secondary over; the secondary is not fenced. Before: "duplex:
// a primary (...) is connected to the running secondary: it is still
// replicating. Stop the primary, or use --force".
func TestARefusalOfAConnectedPrimaryReadsAsTheOthers(t *testing.T) {
	dir := t.TempDir()
	c := startupSession(dir)
	c.ControlTokenFile = "token"
	if err := os.WriteFile(filepath.Join(dir, "token"), []byte("secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var fenced atomic.Bool
	srv := &control.Server{Token: "secret",
		Status: func() control.Status {
			return control.Status{Session: "startup", Role: "secondary", Link: "connected", Peer: "192.0.2.7:40000"}
		},
		Fence: func() (int64, error) { fenced.Store(true); return 1, nil }}
	go srv.Serve(ctx, ln)
	c.Secondary.Control = ln.Addr().String()
	path := writeSessionConfig(t, dir, c)
	for _, cmd := range []string{"recover", "promote"} {
		code, out, errs := runCmd(cmd, "--config", path)
		for _, want := range []string{"duplex: " + cmd + ": a primary (192.0.2.7:40000) is connected to the running secondary",
			"stop the primary, then run duplex " + cmd + " again", "duplex " + cmd + " --force"} {
			if code != exitFailure || !strings.Contains(errs, want) {
				t.Errorf("duplex %s: exit %d, stdout %q, stderr %q; want exit 1 saying %q", cmd, code, out, errs, want)
			}
		}
		if strings.Contains(errs, ". Stop") {
			t.Errorf("duplex %s: %q: want what to do after the colon, in lower case", cmd, errs)
		}
	}
	if fenced.Load() {
		t.Error("a refused command fenced the secondary")
	}
}
