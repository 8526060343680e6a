package main

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"duplex/control"
)

// TestPairRateAtAPrimaryWithNoPairsFails: a promoted site run without the
// reverse direction is the session's primary, holds no pairs and paces
// nothing. Reading its rate limits fails saying why, rather than print
// "none" with exit 0 as if limits were read, as it did.
func TestPairRateAtAPrimaryWithNoPairsFails(t *testing.T) {
	const why = "this promoted site replicates nowhere and holds no pairs: set primary.listen and primary.journal"
	dir := t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	status := func() control.Status {
		return control.Status{Role: "primary", Link: "suspended", PromotedAt: "2026-12-06T01:00:00Z", NoPairs: why}
	}
	go (&control.Server{Status: status, NoPairs: why, Token: "secret"}).Serve(ctx, ln)
	c := startupSession(dir)
	c.Primary.Control = ln.Addr().String()
	c.ControlTokenFile = "token"
	if err := os.WriteFile(filepath.Join(dir, "token"), []byte("secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	text, err := c.Encode()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "duplex.toml")
	if err := os.WriteFile(path, text, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"pair", "rate", "--config", path, "--addr", ln.Addr().String()},
		{"pair", "rate", "--config", path, "--addr", ln.Addr().String(), "--copy", "50MiB"},
	} {
		code, out, errs := runCmd(args...)
		if code == exitOK || strings.Contains(out, "none") || !strings.Contains(errs, why) {
			t.Errorf("%s: exit %d, stdout %q, stderr %q; want it refused saying why the site holds no pairs", strings.Join(args, " "), code, out, errs)
		}
	}
}
