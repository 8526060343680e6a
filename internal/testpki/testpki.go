// Package testpki makes throwaway certificate authorities and certificates
// for the tests of what protects the method's sites off one machine: the
// link's mutual TLS between the primary and the secondary, NBD over TLS,
// and the control address over HTTPS. Tests only: the keys are generated
// per test and written unencrypted.
package testpki

import (
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
	"sync/atomic"
	"testing"
	"time"
)

// CA is a throwaway certificate authority.
type CA struct {
	Cert *x509.Certificate
	key  *ecdsa.PrivateKey
	// Path is the CA's certificate, PEM, as the config's *_ca keys take it.
	Path string
}

// Use is what a certificate is for.
type Use int

const (
	// Client: a client certificate (the primary's on the link, an NBD
	// client's).
	Client Use = iota
	// Server: a server certificate for 127.0.0.1 and localhost, in subject
	// alternative names.
	Server
	// ServerCNOnly: a server certificate whose only name is the Common
	// Name "127.0.0.1", as certificates made for older TLS clients have it.
	ServerCNOnly
	// Site: a site's certificate for both client and server use, for
	// NAME.example and 10.0.0.1.
	Site
)

var serial atomic.Int64

// NewCA writes NAME.pem, the certificate of a new CA, into dir.
func NewCA(t testing.TB, dir, name string) *CA {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial.Add(1)), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	ca := &CA{Cert: cert, key: key, Path: filepath.Join(dir, name+".pem")}
	writePEM(t, ca.Path, "CERTIFICATE", der)
	return ca
}

// Sites writes into dir ca.crt, a new CA's certificate, and for each of
// "primary" and "secondary" NAME.crt and NAME.key, a Site certificate it
// signed: the files a config's tls_* keys name.
func Sites(t testing.TB, dir string) {
	t.Helper()
	ca := NewCA(t, dir, "ca")
	if err := os.Rename(ca.Path, filepath.Join(dir, "ca.crt")); err != nil {
		t.Fatal(err)
	}
	ca.Issue(t, dir, "primary", Site)
	ca.Issue(t, dir, "secondary", Site)
}

// SitesDir returns a new directory of the test with Sites written into
// its pki folder: the directory SitesConfig is parsed in.
func SitesDir(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "pki"), 0o700); err != nil {
		t.Fatal(err)
	}
	Sites(t, filepath.Join(dir, "pki"))
	return dir
}

// SitesConfig is a session whose link and NBD use the certificates of
// SitesDir, off loopback (the primary dials 10.0.0.1, and serves NBD on
// every address): parsed in that directory, it passes the security check.
const SitesConfig = `
session = "s"
[primary]
nbd = "0.0.0.0:10809"
secondary = "10.0.0.1:7402"
tls_cert = "pki/primary.crt"
tls_key = "pki/primary.key"
tls_ca = "pki/ca.crt"
nbd_tls_cert = "pki/primary.crt"
nbd_tls_key = "pki/primary.key"
nbd_tls_ca = "pki/ca.crt"
[[primary.subsystem]]
id = "ss1"
[[primary.subsystem.volume]]
name = "v"
path = "v.img"
size = "1MiB"
[secondary]
listen = ":7402"
journal = "journal"
tls_cert = "pki/secondary.crt"
tls_key = "pki/secondary.key"
tls_ca = "pki/ca.crt"
[[secondary.volume]]
name = "v"
path = "/srv/v.img"
`

// Pool is a pool holding the CA alone, for a client in a test.
func (ca *CA) Pool() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	return pool
}

// Issue writes NAME.crt and NAME.key into dir, a certificate for use signed
// by the CA, and returns their paths.
func (ca *CA) Issue(t testing.TB, dir, name string, use Use) (certPath, keyPath string) {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial.Add(1)), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	switch use {
	case Server:
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
		tmpl.DNSNames = []string{"localhost"}
	case Site:
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
		tmpl.IPAddresses = []net.IP{net.IPv4(10, 0, 0, 1)}
		tmpl.DNSNames = []string{name + ".example"}
	case ServerCNOnly:
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.Subject.CommonName = "127.0.0.1"
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.key)
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

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

func writePEM(t testing.TB, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}
