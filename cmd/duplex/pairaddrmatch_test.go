package main

import (
	"context"
	"crypto/tls"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"duplex/config"
	"duplex/control"
	"duplex/internal/testpki"
)

// namedCertSession serves fake pairs over HTTPS at the config's primary
// control address, 127.0.0.1:PORT, with a certificate that holds the name
// primary-control.example (and 10.0.0.1), not 127.0.0.1: the config's
// control_tls_server_name names it. It returns the pairs, the config's
// path, the control address and the CA's path.
func namedCertSession(t *testing.T) (*fakePairs, string, string, string) {
	t.Helper()
	fp, path := pairSession(t, map[string]string{"vol1": "duplex"})
	c, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	pki := mkdir(t, filepath.Join(t.TempDir(), "pki"))
	ca := testpki.NewCA(t, pki, "control-ca")
	cert, key := ca.Issue(t, pki, "primary-control", testpki.Site)
	pair, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	srv := &control.Server{Status: fp.status, Pairs: fp, Token: "secret",
		TLS: &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}}
	go srv.Serve(ctx, ln)
	c.Primary.Control = ln.Addr().String()
	c.Primary.ControlTLSCert, c.Primary.ControlTLSKey, c.Primary.ControlTLSCA = cert, key, ca.Path
	c.Primary.ControlTLSServerName = "primary-control.example"
	text, err := c.Encode()
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, path, text, 0o644)
	return fp, path, ln.Addr().String(), ca.Path
}

// TestPairAddrWithCAChecksTheConfigsServerName: --addr naming the
// config's primary, with --ca, checks the site's certificate for the name
// the config's control_tls_server_name gives, as --config alone does;
// --ca stands for the CA only. Before, the name checked was the URL's host,
// 127.0.0.1, which the certificate does not hold: "x509: certificate is
// valid for 10.0.0.1, not 127.0.0.1".
func TestPairAddrWithCAChecksTheConfigsServerName(t *testing.T) {
	fp, path, addr, ca := namedCertSession(t)
	if code, out, errs := runCmd("pair", "suspend", "vol1", "--config", path); code != exitOK {
		t.Fatalf("pair suspend vol1 --config: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	for _, a := range []string{"https://" + addr, addr} {
		fp.mu.Lock()
		fp.state["vol1"] = "duplex"
		fp.mu.Unlock()
		code, out, errs := runCmd("pair", "suspend", "vol1", "--config", path, "--addr", a, "--ca", ca)
		if code != exitOK || fp.state["vol1"] != "suspended" {
			t.Errorf("pair suspend vol1 --addr %s --ca: exit %d, stdout %q, stderr %q, state %v; want vol1 suspended", a, code, out, errs, fp.state)
		}
	}
}

// TestPairAddrMatchesTheConfigsSiteByWhatItResolvesTo: --addr
// localhost:PORT names the config's 127.0.0.1:PORT: the promoted site is
// reached with the TLS the config names for it, and an NBD address so
// named is refused as one. Before, localhost:PORT was taken for a site the
// config does not describe: the operation went there over plain HTTP
// ("serves HTTPS only"), and to the NBD address as to a control address.
func TestPairAddrMatchesTheConfigsSiteByWhatItResolvesTo(t *testing.T) {
	if ips, err := net.LookupHost("localhost"); err != nil || !slices.Contains(ips, "127.0.0.1") {
		t.Skipf("localhost does not resolve to 127.0.0.1 here: %v %v", ips, err)
	}
	fp, path, promoted := promotedSessionOf(t, &control.Status{Role: "primary"}, promotedSite{tls: true})
	_, port, _ := net.SplitHostPort(promoted)
	code, out, errs := runCmd("pair", "suspend", "vol2", "--config", path, "--addr", "localhost:"+port)
	if code != exitOK || fp.state["vol2"] != "suspended" {
		t.Errorf("pair suspend vol2 --addr localhost:%s: exit %d, stdout %q, stderr %q, state %v; want vol2 suspended there", port, code, out, errs, fp.state)
	}

	c, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	c.Primary.NBD = "127.0.0.1:20390"
	text, err := c.Encode()
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, path, text, 0o644)
	code, out, errs = runCmd("pair", "suspend", "vol2", "--config", path, "--addr", "localhost:20390")
	if code != exitUsage || !strings.Contains(errs, "primary.nbd") {
		t.Errorf("pair suspend vol2 --addr localhost:20390: exit %d, stdout %q, stderr %q; want a usage error naming primary.nbd", code, out, errs)
	}
}

// TestSameAddrsLooksUpOnlyWhatItMustWithinItsBound: names are looked up
// only on --addr's port, and a resolver that does not answer holds the
// match up for addrLookupWait, not the resolver's own timeouts; a name not
// resolved is the same address only as written.
func TestSameAddrsLooksUpOnlyWhatItMustWithinItsBound(t *testing.T) {
	defer func(w time.Duration, l func(context.Context, string, string) ([]netip.Addr, error)) {
		addrLookupWait, lookupAddrs = w, l
	}(addrLookupWait, lookupAddrs)
	addrLookupWait = 200 * time.Millisecond
	var mu sync.Mutex
	var looked []string
	lookupAddrs = func(ctx context.Context, _, host string) ([]netip.Addr, error) {
		mu.Lock()
		looked = append(looked, host)
		mu.Unlock()
		if host == "ctl-a.example" {
			return []netip.Addr{netip.MustParseAddr("::ffff:10.1.2.3")}, nil
		}
		<-ctx.Done()
		return nil, ctx.Err()
	}
	start := time.Now()
	got := sameAddrs(context.Background(), "10.1.2.3:7401", []string{
		"ctl-a.example:7401", "hung.example:7401", "elsewhere.example:7402", "10.1.2.3:07401", "10.1.2.4:7401", ":7401", "",
	})
	if took := time.Since(start); took > addrLookupWait+time.Second {
		t.Errorf("sameAddrs took %s with a resolver that does not answer; want about %s", took, addrLookupWait)
	}
	if want := []bool{true, false, false, true, false, false, false}; !slices.Equal(got, want) {
		t.Errorf("sameAddrs = %v, want %v", got, want)
	}
	slices.Sort(looked)
	if want := []string{"ctl-a.example", "hung.example"}; !slices.Equal(looked, want) {
		t.Errorf("looked up %v, want %v only: the names on --addr's port", looked, want)
	}
	if got := sameAddrs(context.Background(), "hung.example:7401", []string{"hung.example:7401", "10.1.2.3:7401"}); !slices.Equal(got, []bool{true, false}) {
		t.Errorf("a name not resolved, as written: %v, want [true false]", got)
	}
}
