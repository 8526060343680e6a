package main

import (
	"errors"
	"testing"

	"duplex/config"
	"duplex/failover"
	"duplex/site"
)

// TestPromoteThatCannotServeChangesNothing: duplex promote with a config
// whose [secondary] has no nbd address cannot serve the volumes it
// promotes, and says so; it must say so before it fences the secondary and
// records the promotion, both for good (the old primary refused from then
// on, the secondary daemon refusing to start over the promotion). It checks
// only once both are done (OpenPromoted), so the failed command leaves the
// site promoted and serving nothing: neither a secondary any more nor a
// primary yet.
func TestPromoteThatCannotServeChangesNothing(t *testing.T) {
	dir := t.TempDir()
	c := startupSession(dir)
	c.Secondary.Control, c.Secondary.NBD = "", ""
	path := writeSessionConfig(t, dir, c)
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	code, out, errs := runCmd("promote", "--config", path, "--log-level", "error")
	t.Logf("duplex promote: exit %d, stdout %q, stderr %q", code, out, errs)
	if code == exitOK {
		t.Fatal("duplex promote without an NBD address to serve on succeeded")
	}
	if c := saidTwice(errs); c != "" {
		t.Errorf("the error names its context twice (%q): %s", c, errs)
	}
	if _, err := failover.ReadPromotion(nil, site.PromotedDir(cfg)); !errors.Is(err, failover.ErrNotPromoted) {
		t.Errorf("duplex promote failed for want of an NBD address, yet the site is promoted (%v): it fenced and recorded before checking it could serve", err)
	}
}

// TestPromoteWithAnUnreadableTokenChangesNothing: the promoted site reads
// the control token to serve its control address; a token file it cannot
// read fails the promote before the fence and the record, as a missing NBD
// address does.
func TestPromoteWithAnUnreadableTokenChangesNothing(t *testing.T) {
	dir := t.TempDir()
	c := startupSession(dir)
	c.Secondary.Control = ""
	c.ControlTokenFile = "no-such-token"
	path := writeSessionConfig(t, dir, c)
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	code, out, errs := runCmd("promote", "--config", path, "--log-level", "error")
	t.Logf("duplex promote: exit %d, stdout %q, stderr %q", code, out, errs)
	if code == exitOK {
		t.Fatal("duplex promote without a readable control token succeeded")
	}
	if c := saidTwice(errs); c != "" {
		t.Errorf("the error names its context twice (%q): %s", c, errs)
	}
	if _, err := failover.ReadPromotion(nil, site.PromotedDir(cfg)); !errors.Is(err, failover.ErrNotPromoted) {
		t.Errorf("duplex promote failed for want of its control token, yet the site is promoted (%v)", err)
	}
}
