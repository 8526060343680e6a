package main

import (
	"context"
	"crypto/tls"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"duplex/config"
	"duplex/control"
	"duplex/internal/testpki"
)

// promotedSite is how the config's secondary answers in promotedSessionOf:
// its status while it starts (its state not read yet: no promotion time,
// every change refused), and whether it serves HTTPS, with the certificate
// the config's [secondary] names.
type promotedSite struct {
	starting bool
	tls      bool
	gone     bool   // nothing listens at its control address
	session  string // the session it answers for: the config's if empty
}

// promotedSessionOf is promotedSession with the promoted site as ps says.
func promotedSessionOf(t *testing.T, old *control.Status, ps promotedSite) (*fakePairs, string, string) {
	t.Helper()
	fp, path := pairSession(t, map[string]string{"vol1": "awaiting-rejoin", "vol2": "awaiting-rejoin"})
	c, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if old != nil {
		// The old primary is of the config's session unless it says.
		o := *old
		if o.Session == "" {
			o.Session = c.Session
		}
		old = &o
		srv := &control.Server{Status: func() control.Status { return *old }, Token: "secret"}
		go srv.Serve(ctx, ln)
	} else {
		// Closed once the promoted site's address is taken: closed
		// now, its port may be the one that address gets, and the
		// config names one address for both.
		defer ln.Close()
	}
	session := c.Session
	if ps.session != "" {
		session = ps.session
	}
	srv := &control.Server{Status: func() control.Status {
		st := fp.status()
		st.Session, st.PromotedAt = session, "2026-12-06T01:00:00Z"
		return st
	}, Pairs: fp, Token: "secret"}
	if ps.starting {
		srv = &control.Server{Status: func() control.Status {
			return control.Status{Session: session, Role: "primary", Link: "disconnected",
				Starting: &control.StartingStatus{Since: "2026-12-06T02:00:00Z", Step: "the pair state", StepSeconds: 4}}
		}, Token: "secret", Changes: func() (control.Changes, error) { return control.Changes{}, control.ErrStartingRefusal("starting") }}
	}
	if ps.tls {
		pki := filepath.Join(t.TempDir(), "pki")
		if err := os.MkdirAll(pki, 0o755); err != nil {
			t.Fatal(err)
		}
		ca := testpki.NewCA(t, pki, "control-ca")
		cert, key := ca.Issue(t, pki, "promoted-control", testpki.Server)
		pair, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			t.Fatal(err)
		}
		srv.TLS = &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
		c.Secondary.ControlTLSCert, c.Secondary.ControlTLSKey, c.Secondary.ControlTLSCA = cert, key, ca.Path
	}
	ln2, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if ps.gone {
		ln2.Close()
	} else {
		go srv.Serve(ctx, ln2)
	}
	c.Primary.Control = ln.Addr().String()
	c.Secondary.Control = ln2.Addr().String()
	text, err := c.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, text, 0o644); err != nil {
		t.Fatal(err)
	}
	return fp, path, ln2.Addr().String()
}

// TestPairOperationWhileThePromotedSiteStarts: the promoted site, started
// again, answers as a primary that starts (no promotion time yet: it has
// not read its state). A pair operation with the session's config, the
// old primary rejoined or gone, says that the promoted site starts and to
// run the command again once it runs; it is not sent to the old primary,
// whose answer ("this site has no pairs", or connection refused) would
// tell the operator nothing of the site that holds the pairs.
func TestPairOperationWhileThePromotedSiteStarts(t *testing.T) {
	rejoined := &control.Status{Role: "secondary", PromotedAt: "2026-12-06T01:00:00Z"}
	for _, tc := range []struct {
		name string
		old  *control.Status
	}{{"rejoined", rejoined}, {"gone", nil}} {
		t.Run(tc.name, func(t *testing.T) {
			_, path, promoted := promotedSessionOf(t, tc.old, promotedSite{starting: true})
			for _, args := range [][]string{
				{"pair", "suspend", "vol2", "--config", path},
				{"pair", "delete", "--all", "--config", path},
				{"pair", "rate", "--copy", "50MiB", "--config", path},
			} {
				code, out, errs := runCmd(args...)
				if code == exitOK || !strings.Contains(errs, "not yet") || !strings.Contains(errs, promoted) || !strings.Contains(errs, "starting") {
					t.Errorf("%s: exit %d, stdout %q, stderr %q; want it refused: the promoted site at %s is starting",
						strings.Join(args[:2], " "), code, out, errs, promoted)
				}
			}
		})
	}
}

// TestPairOperationAtARejoinedOldPrimaryIsRefused: the config's primary
// rejoined the promoted site, which does not answer. A pair operation is
// refused, naming the promoted site and saying it does not answer; before,
// it went to the rejoined site, and pair delete --all there found no pair
// and exited 0 saying every volume was left as it is.
func TestPairOperationAtARejoinedOldPrimaryIsRefused(t *testing.T) {
	rejoined := &control.Status{Role: "secondary", PromotedAt: "2026-12-06T01:00:00Z"}
	_, path, promoted := promotedSessionOf(t, rejoined, promotedSite{gone: true})
	for _, args := range [][]string{
		{"pair", "suspend", "vol2", "--config", path},
		{"pair", "delete", "--all", "--config", path},
		{"pair", "suspend", "--all", "--config", path},
		{"pair", "rate", "--config", path},
	} {
		code, out, errs := runCmd(args...)
		if code == exitOK || !strings.Contains(errs, "rejoined the promoted site") || !strings.Contains(errs, promoted+", which does not answer") {
			t.Errorf("%s: exit %d, stdout %q, stderr %q; want it refused: the promoted site %s does not answer",
				strings.Join(args[:3], " "), code, out, errs, promoted)
		}
	}
}

// TestPairOperationIsNotSentToAnotherSessionsPromotedSite: the config's
// secondary control address answers as the promoted primary of another
// session (a stale address, another session's site on it now), the
// config's primary gone or rejoined. The operation is refused, naming that
// session, and nothing changes there: with the same token, pair delete
// vol2 would have ended the other session's pair vol2.
func TestPairOperationIsNotSentToAnotherSessionsPromotedSite(t *testing.T) {
	rejoined := &control.Status{Role: "secondary", PromotedAt: "2026-12-06T01:00:00Z"}
	for _, tc := range []struct {
		name string
		old  *control.Status
		ps   promotedSite
	}{
		{"gone", nil, promotedSite{session: "other"}},
		{"rejoined", rejoined, promotedSite{session: "other"}},
		{"gone, starting", nil, promotedSite{session: "other", starting: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fp, path, promoted := promotedSessionOf(t, tc.old, tc.ps)
			for _, args := range [][]string{
				{"pair", "delete", "vol2", "--config", path},
				{"pair", "suspend", "--all", "--config", path},
			} {
				code, out, errs := runCmd(args...)
				if code == exitOK || strings.Contains(out, "promoted site at "+promoted) || !strings.Contains(errs, `"other"`) {
					t.Errorf("%s: exit %d, stdout %q, stderr %q; want it refused, naming session \"other\"", strings.Join(args[:3], " "), code, out, errs)
				}
			}
			if len(fp.calls) != 0 {
				t.Errorf("at another session's site: %v", fp.calls)
			}
		})
	}
}

// TestPairAddrTakesTheConfigsSiteAsItsURL: --addr given as the https://
// URL of the config's secondary control address (as the status page and
// the errors name it) is checked against the CA the config names for it,
// as its host:port is: --ca is for a site the config does not describe.
func TestPairAddrTakesTheConfigsSiteAsItsURL(t *testing.T) {
	fp, path, promoted := promotedSessionOf(t, &control.Status{Role: "primary"}, promotedSite{tls: true})
	for _, addr := range []string{promoted, "https://" + promoted, "https://" + promoted + "/"} {
		fp.mu.Lock()
		fp.state["vol2"] = "awaiting-rejoin"
		fp.mu.Unlock()
		code, out, errs := runCmd("pair", "suspend", "vol2", "--config", path, "--addr", addr)
		if code != exitOK || fp.state["vol2"] != "suspended" {
			t.Errorf("pair suspend vol2 --addr %s: exit %d, stdout %q, stderr %q, state %v; want vol2 suspended there", addr, code, out, errs, fp.state)
		}
	}
}
