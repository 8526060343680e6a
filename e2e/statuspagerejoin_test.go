package e2e

import (
	"context"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"duplex/config"
	"duplex/site"
	"duplex/transport"
)

// TestStatusPageShowsPairsAwaitingTheRejoin opens, in headless chromium,
// the status page of a promoted site run as the primary of the reverse
// direction before the old primary's rejoin: every pair is suspended and
// awaits the rejoin request, which the page flags on each row, beside the
// note that says the way forward, and counts in the volume summary, as
// duplex status does. A pair deleted meanwhile (the way out if the old
// primary is lost for good) no longer awaits it, and its flag goes.
func TestStatusPageShowsPairsAwaitingTheRejoin(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a session, a promotion and a browser")
	}
	ctx := browser(t)
	artifacts := artifactDir(t)
	errorsSoFar := pageErrors(t, ctx)

	dir := t.TempDir()
	cfg := siteSession(t, dir, func(c *config.Config) {
		c.Session = "page-rejoin"
		c.Primary.Listen, c.Primary.Journal = "127.0.0.1:0", filepath.Join(dir, "primary", "journal")
	})
	s := startSites(t, cfg, transport.NewMemNetwork(1, transport.Faults{}), nil)
	s.waitDuplex(t)
	s.stop(t)
	if _, _, _, err := site.Promote(context.Background(), cfg, quietLogger(), nil); err != nil {
		t.Fatal(err)
	}
	// The old primary is not back: the reverse direction's link finds no
	// one at its address.
	b, err := site.OpenReversePrimary(cfg, quietLogger(), site.PrimaryOptions{Dialer: transport.NewMemNetwork(2, transport.Faults{}),
		Retransmit: 40 * time.Millisecond, HandshakeTimeout: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	bctx, stopB := context.WithCancel(context.Background())
	bDone := make(chan error, 1)
	go func() { bDone <- b.Run(bctx, time.Minute) }()
	defer func() {
		stopB()
		if err := <-bDone; err != nil {
			t.Errorf("the promoted site stopped: %v", err)
		}
	}()
	for _, v := range b.Status().Volumes {
		if !v.RejoinOwed || v.State != "suspended" {
			t.Fatalf("%s at the promoted site before the rejoin: %s, rejoin_owed %v; want suspended awaiting the rejoin", v.Name, v.State, v.RejoinOwed)
		}
	}

	navigate(t, ctx, "http://"+b.ControlAddr()+"/")
	waitVolumeStates(t, ctx, errorsSoFar, b.Status)
	// flagged is, per volume, whether its row shows the flag (laid out,
	// not merely present), and its note cell's text.
	type row struct {
		Flagged bool   `json:"flagged"`
		Note    string `json:"note"`
	}
	rows := func() map[string]row {
		return evaluate[map[string]row](t, ctx, `Object.fromEntries(
			[...document.querySelectorAll("#volumes tbody tr")].map(tr => {
				const flag = tr.querySelector("td.note .flag");
				return [tr.dataset.volume, {flagged: flag !== null && flag.getClientRects().length > 0,
					note: tr.querySelector("td.note").innerText}];
			}))`)
	}
	summary := func() string {
		return evaluate[string](t, ctx, `document.getElementById("volume-summary").textContent`)
	}
	var got map[string]row
	waitPage(t, errorsSoFar, 30*time.Second, "every row flagged as awaiting the rejoin", func() bool {
		got = rows()
		for _, v := range b.Status().Volumes {
			if !got[v.Name].Flagged {
				return false
			}
		}
		return true
	})
	for _, v := range b.Status().Volumes {
		r := got[v.Name]
		if !strings.Contains(r.Note, "awaiting rejoin") || !strings.Contains(r.Note, v.Note) || !strings.Contains(r.Note, "duplex rejoin --yes") {
			t.Errorf("%s's note on the page %q: want the flag and the site's note %q", v.Name, r.Note, v.Note)
		}
	}
	n := len(b.Status().Volumes)
	if s := summary(); !strings.Contains(s, "awaiting the old primary's rejoin") || !strings.Contains(s, strconv.Itoa(n)+" awaiting") {
		t.Errorf("the volume summary %q does not count the %d pairs awaiting the rejoin", s, n)
	}
	screenshot(t, ctx, artifacts, "statuspage-awaiting-rejoin")

	// Deleted, a pair awaits nothing more: its add copies it whole.
	gone := siteVolume(1)
	if _, err := b.Pairs().Delete(gone); err != nil {
		t.Fatal(err)
	}
	waitPage(t, errorsSoFar, 30*time.Second, "the deleted pair's flag to go", func() bool {
		got = rows()
		return !got[gone].Flagged && got[siteVolume(0)].Flagged && strings.Contains(summary(), strconv.Itoa(n-1)+" awaiting")
	})
	if strings.Contains(got[gone].Note, "awaiting rejoin") {
		t.Errorf("the deleted pair's note still says it awaits the rejoin: %q", got[gone].Note)
	}
	if errs := errorsSoFar(); len(errs) > 0 {
		t.Errorf("the browser reports errors in the page:\n%s", strings.Join(errs, "\n"))
	}
}
