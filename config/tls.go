package config

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
)

func (c *Config) primaryHasTLS() bool {
	return c.Primary.TLSCert != "" && c.Primary.TLSKey != "" && c.Primary.TLSCA != ""
}

func (c *Config) secondaryHasTLS() bool {
	return c.Secondary.TLSCert != "" && c.Secondary.TLSKey != "" && c.Secondary.TLSCA != ""
}

// PrimaryTLS returns the client side of the link's mutual TLS: the primary's
// certificate and key, the CA that must have signed the secondary's
// certificate, TLS 1.3 at least, and the server name expected in it
// (tls_server_name, or the host of primary.secondary). It returns nil, nil
// when [primary] has no TLS settings.
func (c *Config) PrimaryTLS() (*tls.Config, error) {
	p := &c.Primary
	if p.TLSCert == "" && p.TLSKey == "" && p.TLSCA == "" {
		return nil, nil
	}
	if !c.primaryHasTLS() {
		return nil, errors.New("primary: tls_cert, tls_key and tls_ca must all be set (or none of them)")
	}
	cert, err := loadKeyPair("primary", c.Resolve(p.TLSCert), c.Resolve(p.TLSKey))
	if err != nil {
		return nil, err
	}
	pool, err := loadCA("primary.tls_ca", c.Resolve(p.TLSCA))
	if err != nil {
		return nil, err
	}
	name := p.ServerName
	if name == "" {
		host, _, err := net.SplitHostPort(p.Secondary)
		if err != nil || host == "" {
			return nil, fmt.Errorf("primary.secondary: %q has no host to check the secondary's certificate against: set tls_server_name", p.Secondary)
		}
		name = host
	}
	return &tls.Config{
		// Always present our certificate, even when the secondary asks for
		// another CA: then it can log "unknown authority" instead of a
		// puzzling "no certificate".
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil },
		RootCAs:              pool,
		ServerName:           name,
		MinVersion:           tls.VersionTLS13,
	}, nil
}

// SecondaryTLS returns the server side of the link's mutual TLS: the
// secondary's certificate and key, and a requirement that the primary
// present a certificate signed by tls_ca; TLS 1.3 at least. It returns
// nil, nil when [secondary] has no TLS settings.
func (c *Config) SecondaryTLS() (*tls.Config, error) {
	s := &c.Secondary
	if s.TLSCert == "" && s.TLSKey == "" && s.TLSCA == "" {
		return nil, nil
	}
	if !c.secondaryHasTLS() {
		return nil, errors.New("secondary: tls_cert, tls_key and tls_ca must all be set (or none of them)")
	}
	cert, err := loadKeyPair("secondary", c.Resolve(s.TLSCert), c.Resolve(s.TLSKey))
	if err != nil {
		return nil, err
	}
	pool, err := loadCA("secondary.tls_ca", c.Resolve(s.TLSCA))
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		ClientCAs:    pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS13,
	}, nil
}

func loadKeyPair(site, certFile, keyFile string) (tls.Certificate, error) {
	// Read the files first so that an unreadable one is named plainly.
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("%s.tls_cert: %w", site, err)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("%s.tls_key: %w", site, err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("%s.tls_cert/tls_key: %s and %s: %w", site, certFile, keyFile, err)
	}
	return cert, nil
}

func loadCA(field, file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", field, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: %s holds no PEM certificate", field, file)
	}
	return pool, nil
}

// CheckLinkSecurity refuses a link that would carry volume data in plaintext
// off this machine: when primary.secondary or secondary.listen is not a
// loopback address, that site must have tls_cert, tls_key and tls_ca, or
// insecure = true to say a plaintext link is intended. Every problem is
// returned, joined.
func (c *Config) CheckLinkSecurity() error {
	var p problems
	if c.HasPrimary() && c.Primary.Secondary != "" && !isLoopbackAddr(c.Primary.Secondary) &&
		!c.primaryHasTLS() && !c.Primary.Insecure {
		p.add("primary.secondary", "%q is not a loopback address, so the link would carry volume data unencrypted and unauthenticated: "+
			"set tls_cert, tls_key and tls_ca in [primary] and [secondary] for mutual TLS, or insecure = true in [primary] to accept a plaintext link",
			c.Primary.Secondary)
	}
	if c.HasSecondary() && c.Secondary.Listen != "" && !isLoopbackAddr(c.Secondary.Listen) &&
		!c.secondaryHasTLS() && !c.Secondary.Insecure {
		p.add("secondary.listen", "%q is not a loopback address, so the link would accept volume data unencrypted and unauthenticated: "+
			"set tls_cert, tls_key and tls_ca in [secondary] and [primary] for mutual TLS, or insecure = true in [secondary] to accept a plaintext link",
			c.Secondary.Listen)
	}
	return errors.Join(p...)
}
