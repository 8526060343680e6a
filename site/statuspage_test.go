package site

import (
	"testing"

	"duplex/config"
	"duplex/control"
)

// TestSessionSitesNamesOnlyKnownAddresses: the status page names this site
// by what it bound, and the other site by its config, without the addresses
// whose port it picks at start.
func TestSessionSitesNamesOnlyKnownAddresses(t *testing.T) {
	cfg := config.Demo(t.TempDir())
	cfg.Secondary.Control, cfg.Secondary.Listen = "127.0.0.1:0", "127.0.0.1:7402"
	self := control.Site{Role: "primary", Control: "127.0.0.1:40001", NBD: "127.0.0.1:40002"}
	got := sessionSites(cfg, self)
	want := []control.Site{self, {Role: "secondary", Listen: "127.0.0.1:7402", NBD: cfg.Secondary.NBD}}
	if len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("sites %+v, want %+v", got, want)
	}
}
