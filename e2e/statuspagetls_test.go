package e2e

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"duplex/config"
	"duplex/control"
	"duplex/internal/testenv"
	"duplex/internal/testpki"
	"duplex/tlsconf"
	"duplex/transport"
)

// TestStatusPageOverHTTPS opens the status pages of a session whose control
// addresses serve HTTPS only (control_tls_cert, control_tls_key,
// control_tls_ca at each site) in headless chromium, which trusts the two
// sites' certificate keys and nothing else: each page, its script and what
// it reads come over HTTPS under the page's content security policy, the
// chart fills with points, the volume table shows the site's states, the
// link to the other site's page is https and opens it; the plain-HTTP URL
// shows no status.
func TestStatusPageOverHTTPS(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a session and a browser")
	}
	dir := t.TempDir()
	pki := filepath.Join(dir, "pki")
	if err := os.Mkdir(pki, 0o700); err != nil {
		t.Fatal(err)
	}
	ca := testpki.NewCA(t, pki, "control-ca")
	pCert, pKey := ca.Issue(t, pki, "primary-control", testpki.Server)
	sCert, sKey := ca.Issue(t, pki, "secondary-control", testpki.Server)
	ctx := browser(t, chromedp.Flag("ignore-certificate-errors-spki-list", spkiHash(t, pCert)+","+spkiHash(t, sCert)))
	artifacts := artifactDir(t)
	errorsSoFar := pageErrors(t, ctx)

	cfg := siteSession(t, dir, func(c *config.Config) {
		c.Session = "page-https"
		// Known ports, so that each page links to the other.
		c.Primary.Control, c.Secondary.Control = testenv.FreeAddr(t), testenv.FreeAddr(t)
		c.Primary.ControlTLSCert, c.Primary.ControlTLSKey, c.Primary.ControlTLSCA = pCert, pKey, ca.Path
		c.Secondary.ControlTLSCert, c.Secondary.ControlTLSKey, c.Secondary.ControlTLSCA = sCert, sKey, ca.Path
	})
	s := startSites(t, cfg, transport.NewMemNetwork(1, transport.Faults{}), nil)
	s.waitDuplex(t)
	status := map[string]func() control.Status{"primary": s.prim.Status, "secondary": s.sec.Status}

	// What the browser shows is what a client checking control_tls_ca
	// reads.
	for _, role := range []string{"primary", "secondary"} {
		tc, err := tlsconf.ControlClient(cfg, role)
		if err != nil {
			t.Fatal(err)
		}
		addr := map[string]string{"primary": s.prim.ControlAddr(), "secondary": s.sec.ControlAddr()}[role]
		if st, err := control.Fetch(ctx, control.Endpoint{Addr: addr, TLS: tc}); err != nil || st.Role != role {
			t.Fatalf("%s's status over HTTPS, checked against control_tls_ca: role %q, %v", role, st.Role, err)
		}
	}

	checkPage := func(role string) {
		t.Helper()
		if got := evaluate[string](t, ctx, `location.protocol`); got != "https:" {
			t.Fatalf("the %s's page is served over %s", role, got)
		}
		waitPage(t, errorsSoFar, 2*time.Minute, "the lag chart to show 3 points", func() bool { return chartPoints(t, ctx, "lag-chart") >= 3 })
		page := waitVolumeStates(t, ctx, errorsSoFar, status[role])
		if len(page) != layout.Volumes || page[siteVolume(0)] != "duplex" {
			t.Errorf("the %s's page shows the volumes %v", role, page)
		}
		if text := evaluate[string](t, ctx, `document.body.innerText`); !strings.Contains(text, "page-https") || !strings.Contains(text, role+" control") {
			t.Errorf("the %s's page does not show the session and the site:\n%s", role, text)
		}
		screenshot(t, ctx, artifacts, "statuspage-https-"+role)
	}
	navigate(t, ctx, "https://"+cfg.Primary.Control+"/")
	checkPage("primary")
	var link string
	waitPage(t, errorsSoFar, time.Minute, "the link to the secondary's page", func() bool {
		link = evaluate[string](t, ctx, `(document.querySelector("#sites a") || {href: ""}).href`)
		return link != ""
	})
	if want := "https://" + cfg.Secondary.Control + "/"; link != want {
		t.Fatalf("the primary's page links to the secondary's at %s, want %s", link, want)
	}
	navigate(t, ctx, link)
	checkPage("secondary")
	if errs := errorsSoFar(); len(errs) > 0 {
		t.Errorf("the browser reports errors in the pages:\n%s", strings.Join(errs, "\n"))
	}

	// Plain HTTP on the control address is refused (400, which chromium
	// reports as a failed load): no page.
	nav, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := chromedp.Do(nav, chromedp.Navigate("http://"+cfg.Primary.Control+"/")); err == nil {
		if text := evaluate[string](t, ctx, `document.body.innerText`); strings.Contains(text, "page-https") {
			t.Errorf("plain HTTP to the control address shows the status page:\n%s", text)
		}
	}
}

// spkiHash is the base64 SHA-256 of the public key in the PEM certificate
// at path, as chromium's --ignore-certificate-errors-spki-list takes it.
func spkiHash(t *testing.T, path string) string {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(path, strings.TrimSuffix(path, ".crt")+".key")
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(pair.Leaf.RawSubjectPublicKeyInfo)
	return base64.StdEncoding.EncodeToString(sum[:])
}
