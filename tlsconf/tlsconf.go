// Package tlsconf builds the crypto/tls configurations of a site from the
// certificate, key and CA files its config names: the mutual TLS of the link
// over which step (e) of the method sends time-interval groups, NBD over TLS
// (NBD_OPT_STARTTLS) where the primary takes the writes that step (a) stamps
// and the secondary serves its consistent copy, HTTPS on the control
// address, and TLS to a coupled group's etcd servers.
//
// Package config holds the files' paths and checks they are set together
// (its group tags); this package reads them, when a site starts or a client
// dials, so that an unreadable file is an error of the process that needs
// it. Every error names the config key of the file, e.g.
// "primary.tls_ca: open /etc/duplex/ca.crt: no such file or directory".
// Each function returns nil, nil when the config leaves its keys out.
package tlsconf

import (
	"cmp"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"

	"duplex/config"
)

// ErrUnusable is wrapped by the error for a certificate, key or CA file
// that was read but holds no usable PEM certificate or key (empty, cut
// short, something else): unlike a file that cannot be read, one that a
// replacement under way may make good.
var ErrUnusable = errors.New("unusable")

// PrimaryNBD returns the TLS configuration of the primary's NBD listener:
// its certificate (nbd_tls_cert, nbd_tls_key) and a requirement that every
// client present a certificate signed by nbd_tls_ca, as qemu-nbd's
// tls-creds-x509 with verify-peer=on and nbdkit's --tls-verify-peer do. The
// NBD protocol requires TLS 1.2 of every implementation; the clients (qemu,
// libnbd, both GnuTLS) negotiate 1.3 when they can.
func PrimaryNBD(c *config.Config) (*tls.Config, error) {
	s := &c.Primary.Security
	return server(c, "primary.nbd_", s.NBDTLSCert, s.NBDTLSKey, s.NBDTLSCA, tls.VersionTLS12)
}

// SecondaryNBD is PrimaryNBD for the secondary's read-only exports.
func SecondaryNBD(c *config.Config) (*tls.Config, error) {
	s := &c.Secondary.Security
	return server(c, "secondary.nbd_", s.NBDTLSCert, s.NBDTLSKey, s.NBDTLSCA, tls.VersionTLS12)
}

// SecondaryLink returns the server side of the link's mutual TLS: the
// secondary's certificate and key, and a requirement that the primary
// present a certificate signed by tls_ca; TLS 1.3 at least.
func SecondaryLink(c *config.Config) (*tls.Config, error) {
	s := &c.Secondary.Security
	return server(c, "secondary.", s.TLSCert, s.TLSKey, s.TLSCA, tls.VersionTLS13)
}

// PrimaryLink returns the client side of the link's mutual TLS: the
// primary's certificate and key, the CA that must have signed the
// secondary's certificate, TLS 1.3 at least, and the server name expected
// in it (tls_server_name, or the host of primary.secondary).
func PrimaryLink(c *config.Config) (*tls.Config, error) {
	p := &c.Primary
	srv, err := server(c, "primary.", p.TLSCert, p.TLSKey, p.TLSCA, tls.VersionTLS13) // the same files, the other side
	if srv == nil {
		return nil, err
	}
	cert := &srv.Certificates[0]
	host, _, _ := net.SplitHostPort(p.Secondary) // Validate: a dial address has a host
	return &tls.Config{
		// Always present our certificate, even when the secondary asks for
		// another CA: then it can log "unknown authority" instead of a
		// puzzling "no certificate".
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil },
		RootCAs:              srv.ClientCAs,
		ServerName:           cmp.Or(p.ServerName, host),
		MinVersion:           tls.VersionTLS13,
	}, nil
}

// server is the server side of mutual TLS, from the keys at (a site and the
// prefix of its keys) tls_cert, tls_key and tls_ca, which config keeps all
// set or none.
func server(c *config.Config, at, certFile, keyFile, caFile string, minVersion uint16) (*tls.Config, error) {
	if certFile == "" {
		return nil, nil
	}
	cert, err := keyPair(c, at+"tls_", certFile, keyFile)
	if err != nil {
		return nil, err
	}
	pool, err := caPool(c, at+"tls_ca", caFile)
	if err != nil {
		return nil, err
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: minVersion}, nil
}

// ControlServer returns the TLS configuration of the control address of the
// site role ("primary" or "secondary"; a promoted secondary keeps its own):
// its certificate and key (control_tls_cert, control_tls_key). No client
// certificate is asked for: browsers show the status page, and the control
// token authorises what changes anything. TLS 1.2 serves the scrapers and
// tools that read /metrics and the status; browsers and Go negotiate 1.3.
func ControlServer(c *config.Config, role string) (*tls.Config, error) {
	s, _, err := c.Site(role)
	if err != nil || s.ControlTLSCert == "" {
		return nil, err
	}
	cert, err := keyPair(c, role+".control_tls_", s.ControlTLSCert, s.ControlTLSKey)
	if err != nil {
		return nil, err
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

// ControlClient returns what a client of role's control address (duplex
// status, pair, recover...) checks the site's certificate with: the CA in
// control_tls_ca (left out: the system's roots) and the name
// control_tls_server_name (left out: the host of control).
func ControlClient(c *config.Config, role string) (*tls.Config, error) {
	s, addr, err := c.Site(role)
	if err != nil || s.ControlTLSCert == "" {
		return nil, err
	}
	// Validate asks for control_tls_server_name where control names no host.
	host, _, _ := net.SplitHostPort(addr)
	conf := &tls.Config{ServerName: cmp.Or(s.ControlTLSServerName, host), MinVersion: tls.VersionTLS12}
	if s.ControlTLSCA != "" {
		conf.RootCAs, err = caPool(c, role+".control_tls_ca", s.ControlTLSCA)
	}
	return conf, err
}

// Etcd returns the client side of TLS to the coupled group's etcd servers
// ([coupling] tls_ca, tls_cert, tls_key), or nil, nil when no endpoint is
// https.
func Etcd(c *config.Config) (*tls.Config, error) {
	cp := &c.Coupling
	https := false
	for _, e := range cp.Etcd {
		https = https || strings.HasPrefix(e, "https://")
	}
	if !https {
		return nil, nil
	}
	conf := &tls.Config{MinVersion: tls.VersionTLS12}
	if cp.TLSCA != "" {
		pool, err := caPool(c, "coupling.tls_ca", cp.TLSCA)
		if err != nil {
			return nil, err
		}
		conf.RootCAs = pool
	}
	if cp.TLSCert != "" || cp.TLSKey != "" {
		cert, err := keyPair(c, "coupling.tls_", cp.TLSCert, cp.TLSKey)
		if err != nil {
			return nil, err
		}
		conf.Certificates = []tls.Certificate{cert}
	}
	return conf, nil
}

// keyPair loads a certificate and its key, the values of the keys at+"cert"
// and at+"key".
func keyPair(c *config.Config, at, certFile, keyFile string) (tls.Certificate, error) {
	// Read the files first so that an unreadable one is named plainly.
	certPEM, err := os.ReadFile(c.Resolve(certFile))
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("%scert: %w", at, err)
	}
	keyPEM, err := os.ReadFile(c.Resolve(keyFile))
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("%skey: %w", at, err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("%scert/%skey: %s and %s are %w: %w", at, at[strings.LastIndex(at, ".")+1:], c.Resolve(certFile), c.Resolve(keyFile),
			ErrUnusable, err)
	}
	return cert, nil
}

func caPool(c *config.Config, field, file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(c.Resolve(file))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", field, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: %s is %w: it holds no PEM certificate", field, c.Resolve(file), ErrUnusable)
	}
	return pool, nil
}
