package e2e

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"duplex/config"
)

// testCA is a throwaway certificate authority.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	path string // the CA certificate, PEM
}

var certSerial int64

func newTestCA(t *testing.T, dir, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	certSerial++
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(certSerial),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	ca := &testCA{cert: cert, key: key, path: filepath.Join(dir, name+".pem")}
	writePEM(t, ca.path, "CERTIFICATE", der)
	return ca
}

// issue writes NAME.crt and NAME.key signed by the CA: a server certificate
// for 127.0.0.1 when server, else a client certificate.
func (ca *testCA) issue(t *testing.T, dir, name string, server bool) (certPath, keyPath string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	certSerial++
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(certSerial),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPath, keyPath = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	writePEM(t, certPath, "CERTIFICATE", der)
	writePEM(t, keyPath, "PRIVATE KEY", kder)
	return certPath, keyPath
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// primaryOnly writes a config describing only the primary of s's session
// (its own files and ports), edited by edit, and returns its path.
func primaryOnly(t *testing.T, s *procSession, edit func(p *config.Primary)) (string, *config.Config) {
	t.Helper()
	dir := t.TempDir()
	c := config.Demo(dir)
	c.Session = s.cfg.Session
	c.ControlTokenFile = ""
	c.Secondary = config.Secondary{}
	c.Primary.NBD, c.Primary.Control = anyPort, anyPort
	c.Primary.Secondary = s.cfg.Primary.Secondary
	c.Primary.SidefileLimit = 8 * config.MiB
	for i := range c.Primary.Subsystems {
		for j := range c.Primary.Subsystems[i].Volumes {
			c.Primary.Subsystems[i].Volumes[j].Size = 4 * config.MiB
		}
	}
	if edit != nil {
		edit(&c.Primary)
	}
	path := filepath.Join(dir, "primary.toml")
	return path, writeConfig(t, path, c)
}

// assertNeverLinked watches both ends for a while: a refused primary must
// never be reported connected.
func assertNeverLinked(t *testing.T, s *procSession, primaryCtl string, d time.Duration) {
	t.Helper()
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		if st := s.secondaryStatus(); st.Link == "connected" {
			t.Fatalf("secondary reports a connected primary (%s)", st.Peer)
		}
		if st, err := fetchStatus(primaryCtl); err == nil && st.Link == "connected" {
			t.Fatal("refused primary reports link connected")
		}
	}
}

func TestTLSMutual(t *testing.T) {
	pkiDir := t.TempDir()
	ca := newTestCA(t, pkiDir, "duplex-ca")
	wrongCA := newTestCA(t, pkiDir, "other-ca")
	pCert, pKey := ca.issue(t, pkiDir, "primary", false)
	sCert, sKey := ca.issue(t, pkiDir, "secondary", true)
	badCert, badKey := wrongCA.issue(t, pkiDir, "impostor", false)

	s := newSession(t, sessionOpts{edit: func(c *config.Config) {
		c.Primary.TLSCert, c.Primary.TLSKey, c.Primary.TLSCA = pCert, pKey, ca.path
		c.Secondary.TLSCert, c.Secondary.TLSKey, c.Secondary.TLSCA = sCert, sKey, ca.path
	}})

	s.startSecondary() // for all three subtests
	t.Run("connects", func(t *testing.T) {
		s.t = t
		s.startPrimary()
		s.waitLinked()
		w := dialNBD(t, s.cfg.Primary.NBD, "vol2")
		data := bytes.Repeat([]byte("mutual TLS "), 4096/11+1)[:4096]
		if err := w.WriteAt(data, 8192); err != nil {
			t.Fatal(err)
		}
		r := dialNBD(t, s.cfg.Secondary.NBD, "vol2")
		got := make([]byte, len(data))
		eventually(t, 30*time.Second, "the write to replicate over TLS", func() bool {
			if err := r.ReadAt(got, 8192); err != nil {
				t.Fatal(err)
			}
			return bytes.Equal(got, data)
		})
		if code := s.prim.stop(); code != 0 {
			t.Fatalf("primary exited %d after SIGTERM", code)
		}
	})
	if t.Failed() {
		return
	}

	t.Run("wrong CA refused", func(t *testing.T) {
		s.t = t
		path, pc := primaryOnly(t, s, func(p *config.Primary) {
			p.TLSCert, p.TLSKey, p.TLSCA = badCert, badKey, ca.path
		})
		bad := startDaemon(t, "primary", path, filepath.Join(filepath.Dir(path), "primary.log"))
		pc = bad.ready(path, pc)
		line := waitLogLine(t, s.sec, 30*time.Second, "refused connection", "certificate")
		t.Logf("secondary: %s", line)
		assertNeverLinked(t, s, pc.Primary.Control, time.Second)
		t.Logf("refused primary: %s", waitLogLine(t, bad, 10*time.Second, "link to secondary lost"))
		bad.kill() // it could never ship its initial copy: SIGTERM would wait for the drain timeout
	})

	t.Run("plain TCP refused", func(t *testing.T) {
		s.t = t
		before := strings.Count(s.sec.log(), "refused connection")
		path, pc := primaryOnly(t, s, nil)
		plain := startDaemon(t, "primary", path, filepath.Join(filepath.Dir(path), "primary.log"))
		pc = plain.ready(path, pc)
		eventually(t, 30*time.Second, "the secondary to refuse the plaintext primary", func() bool {
			return strings.Count(s.sec.log(), "refused connection") > before
		})
		lines := strings.Split(s.sec.log(), "\n")
		var refusals []string
		for _, l := range lines {
			if strings.Contains(l, "refused connection") {
				refusals = append(refusals, l)
			}
		}
		line := refusals[len(refusals)-1]
		t.Logf("secondary: %s", line)
		if !strings.Contains(line, "TLS handshake") {
			t.Errorf("the refusal does not say it was the TLS handshake: %s", line)
		}
		assertNeverLinked(t, s, pc.Primary.Control, time.Second)
		t.Logf("refused primary: %s", waitLogLine(t, plain, 10*time.Second, "link to secondary lost"))
		plain.kill() // it could never ship its initial copy: SIGTERM would wait for the drain timeout
	})
	s.t = t
	s.stopSecondary()
}

// TestTLSRequiredOffLoopback: a primary whose secondary is not on loopback,
// without TLS and without insecure = true, refuses to start.
func TestTLSRequiredOffLoopback(t *testing.T) {
	dir := t.TempDir()
	c := config.Demo(dir)
	c.Session = "offbox"
	c.ControlTokenFile = ""
	c.Secondary = config.Secondary{}
	c.Primary.NBD, c.Primary.Control = anyPort, anyPort
	c.Primary.Secondary = "192.0.2.10:7402" // TEST-NET-1: not loopback
	for i := range c.Primary.Subsystems {
		for j := range c.Primary.Subsystems[i].Volumes {
			c.Primary.Subsystems[i].Volumes[j].Size = 1 * config.MiB
		}
	}
	path := filepath.Join(dir, "duplex.toml")
	text, err := c.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, text, 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runDuplex(t, "primary", "--config", path)
	if code != 1 {
		t.Fatalf("duplex primary with a plaintext link off loopback exited %d, want 1\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	if !strings.Contains(out+errOut, "insecure") {
		t.Errorf("the refusal does not mention insecure:\n%s%s", out, errOut)
	}
	t.Logf("duplex primary: %s", strings.TrimSpace(errOut))
}
