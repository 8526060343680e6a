package main

import (
	"crypto/tls"
	"io"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"duplex/config"
	"duplex/internal/testpki"
)

// TestControlOverHTTPS runs a primary whose control address serves HTTPS
// (control_tls_cert, control_tls_key) and drives it as an operator would:
// duplex status and pair with --config check its certificate against
// control_tls_ca, status --addr takes its https:// URL and --ca; plain HTTP,
// and a certificate from another CA, are refused in words that say why.
func TestControlOverHTTPS(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a process")
	}
	dir := t.TempDir()
	pki := mkdir(t, filepath.Join(dir, "pki"))
	ca, other := testpki.NewCA(t, pki, "control-ca"), testpki.NewCA(t, pki, "other-ca")
	cert, key := ca.Issue(t, pki, "primary-control", testpki.Server)
	c := startupSession(dir)
	c.Primary.ControlTLSCert, c.Primary.ControlTLSKey, c.Primary.ControlTLSCA = cert, key, ca.Path
	c.ControlTokenFile = filepath.Join(dir, "token")
	writeFile(t, c.ControlTokenFile, []byte("secret\n"), 0o600)
	c.Secondary = config.Secondary{}
	c.Dir = "" // every path written absolute: the configs live in other directories
	_, _, line := startSite(t, "primary", "primary", "--config", writeSessionConfig(t, mkdir(t, filepath.Join(dir, "p")), c))
	addr := regexp.MustCompile(`control=(\S+)`).FindStringSubmatch(line)[1]

	c.Primary.Control = addr
	cdir := mkdir(t, filepath.Join(dir, "client"))
	client := writeSessionConfig(t, cdir, c)
	if code, out, errs := runCmd("status", "--config", client); code != exitOK || !strings.Contains(out, "startup role:primary") {
		t.Fatalf("status --config over HTTPS: exit %d\n%s%s", code, out, errs)
	}
	if code, out, errs := runCmd("status", "--addr", "https://"+addr+"/", "--ca", ca.Path); code != exitOK || !strings.Contains(out, "role:primary") {
		t.Fatalf("status --addr https://%s/ --ca: exit %d\n%s%s", addr, code, out, errs)
	}
	if code, out, errs := runCmd("pair", "suspend", "vol1", "--config", client); code != exitOK || !strings.Contains(out, "vol1") {
		t.Fatalf("pair suspend over HTTPS: exit %d\n%s%s", code, out, errs)
	}
	if code, out, errs := runCmd("status", "--config", client); code != exitOK || !regexp.MustCompile(`vol1 .*state:suspended`).MatchString(out) {
		t.Errorf("after pair suspend: exit %d\n%s%s", code, out, errs)
	}

	// Plain HTTP is answered 400 and served nothing; the client says to
	// use https.
	if code, _, errs := runCmd("status", "--addr", addr); code == exitOK || !strings.Contains(errs, "serves HTTPS only: use https://"+addr) {
		t.Errorf("status --addr %s (plain HTTP): exit %d, %q; want a refusal saying it serves HTTPS only", addr, code, errs)
	}
	resp, err := http.Get("http://" + addr + "/v1/status")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || strings.Contains(string(body), "primary") {
		t.Errorf("plain GET /v1/status: %s %q, want 400 and no status", resp.Status, body)
	}

	// A certificate the client's CA did not sign.
	c.Primary.ControlTLSCA = other.Path
	wrong := writeSessionConfig(t, cdir, c)
	for _, args := range [][]string{
		{"status", "--config", wrong},
		{"pair", "resume", "vol1", "--config", wrong},
		{"status", "--addr", "https://" + addr, "--ca", other.Path},
	} {
		code, _, errs := runCmd(args...)
		if code == exitOK || !strings.Contains(errs, "certificate signed by unknown authority") || !strings.Contains(errs, "not signed by the CA this client checks it against") {
			t.Errorf("%s with another CA: exit %d, %q; want a refusal naming the CA", strings.Join(args, " "), code, errs)
		}
	}
	// A name the certificate does not hold.
	c.Primary.ControlTLSCA, c.Primary.ControlTLSServerName = ca.Path, "elsewhere.example"
	if code, _, errs := runCmd("status", "--config", writeSessionConfig(t, cdir, c)); code == exitOK || !strings.Contains(errs, "control_tls_server_name") {
		t.Errorf("status with a name the certificate lacks: exit %d, %q", code, errs)
	}

	// The status page and what it reads are served over HTTPS, under the
	// same content security policy.
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool()}}}
	for _, path := range []string{"/", "/page/status.js", "/v1/sites", "/v1/history"} {
		resp, err := hc.Get("https://" + addr + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET https://%s%s: %s", addr, path, resp.Status)
		}
		if path == "/" && !strings.Contains(resp.Header.Get("Content-Security-Policy"), "connect-src 'self'") {
			t.Errorf("the page's CSP over HTTPS: %q", resp.Header.Get("Content-Security-Policy"))
		}
		if path == "/v1/sites" && !strings.Contains(string(body), `"tls":true`) {
			t.Errorf("/v1/sites does not say the control address is HTTPS: %s", body)
		}
	}
}
