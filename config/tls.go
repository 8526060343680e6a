package config

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
)

func (c *Config) primaryHasTLS() bool {
	return c.Primary.TLSCert != "" && c.Primary.TLSKey != "" && c.Primary.TLSCA != ""
}

func (c *Config) secondaryHasTLS() bool {
	return c.Secondary.TLSCert != "" && c.Secondary.TLSKey != "" && c.Secondary.TLSCA != ""
}

func (c *Config) primaryHasNBDTLS() bool {
	return c.Primary.NBDTLSCert != "" && c.Primary.NBDTLSKey != "" && c.Primary.NBDTLSCA != ""
}

func (c *Config) secondaryHasNBDTLS() bool {
	return c.Secondary.NBDTLSCert != "" && c.Secondary.NBDTLSKey != "" && c.Secondary.NBDTLSCA != ""
}

// PrimaryNBDTLS returns the TLS configuration of the primary's NBD
// listener: its certificate (nbd_tls_cert, nbd_tls_key) and a requirement
// that every client present a certificate signed by nbd_tls_ca, as
// qemu-nbd's tls-creds-x509 with verify-peer=on and nbdkit's
// --tls-verify-peer do. It returns nil, nil when [primary] has no
// nbd_tls_* settings.
func (c *Config) PrimaryNBDTLS() (*tls.Config, error) {
	p := &c.Primary
	return c.nbdTLS("primary", p.NBDTLSCert, p.NBDTLSKey, p.NBDTLSCA)
}

// SecondaryNBDTLS is PrimaryNBDTLS for the secondary's read-only exports.
func (c *Config) SecondaryNBDTLS() (*tls.Config, error) {
	s := &c.Secondary
	return c.nbdTLS("secondary", s.NBDTLSCert, s.NBDTLSKey, s.NBDTLSCA)
}

func (c *Config) nbdTLS(site, certFile, keyFile, caFile string) (*tls.Config, error) {
	if certFile == "" && keyFile == "" && caFile == "" {
		return nil, nil
	}
	if certFile == "" || keyFile == "" || caFile == "" {
		return nil, fmt.Errorf("%s: nbd_tls_cert, nbd_tls_key and nbd_tls_ca must all be set (or none of them)", site)
	}
	cert, err := loadKeyPair(site, "nbd_tls_cert", "nbd_tls_key", c.Resolve(certFile), c.Resolve(keyFile))
	if err != nil {
		return nil, err
	}
	pool, err := loadCA(site+".nbd_tls_ca", c.Resolve(caFile))
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		ClientCAs:    pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		// The NBD protocol requires TLS 1.2 of every implementation; the
		// clients (qemu, libnbd, both GnuTLS) negotiate 1.3 when they can.
		MinVersion: tls.VersionTLS12,
	}, nil
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
	cert, err := loadKeyPair("primary", "tls_cert", "tls_key", c.Resolve(p.TLSCert), c.Resolve(p.TLSKey))
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
	cert, err := loadKeyPair("secondary", "tls_cert", "tls_key", c.Resolve(s.TLSCert), c.Resolve(s.TLSKey))
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

// controlTLS is one site's control address and control_tls_* keys.
type controlTLS struct {
	addr, cert, key, ca, serverName string
}

func (c *Config) controlTLS(role string) (controlTLS, error) {
	switch role {
	case "primary":
		p := &c.Primary
		return controlTLS{p.Control, c.Resolve(p.ControlTLSCert), c.Resolve(p.ControlTLSKey), c.Resolve(p.ControlTLSCA), p.ControlTLSServerName}, nil
	case "secondary":
		s := &c.Secondary
		return controlTLS{s.Control, c.Resolve(s.ControlTLSCert), c.Resolve(s.ControlTLSKey), c.Resolve(s.ControlTLSCA), s.ControlTLSServerName}, nil
	}
	return controlTLS{}, fmt.Errorf("config: no site %q", role)
}

// ControlServerTLS returns the TLS configuration of the control address of
// the site role ("primary" or "secondary"; a promoted secondary keeps its
// own): its certificate and key (control_tls_cert, control_tls_key). No
// client certificate is asked for: browsers show the status page, and the
// control token authorises what changes anything. It returns nil, nil when
// the site serves plain HTTP.
func (c *Config) ControlServerTLS(role string) (*tls.Config, error) {
	ct, err := c.controlTLS(role)
	if err != nil || ct.cert == "" && ct.key == "" {
		return nil, err
	}
	cert, err := loadKeyPair(role, "control_tls_cert", "control_tls_key", ct.cert, ct.key)
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		// TLS 1.2 for the scrapers and tools that read /metrics and the
		// status; browsers and Go negotiate 1.3.
		MinVersion: tls.VersionTLS12,
	}, nil
}

// ControlClientTLS returns what a client of role's control address (duplex
// status, pair, recover...) checks the site's certificate with: the CA in
// control_tls_ca (left out: the system's roots) and the name
// control_tls_server_name (left out: the host of control). It returns nil,
// nil when the site serves plain HTTP.
func (c *Config) ControlClientTLS(role string) (*tls.Config, error) {
	ct, err := c.controlTLS(role)
	if err != nil || ct.cert == "" && ct.key == "" {
		return nil, err
	}
	conf := &tls.Config{ServerName: ct.serverName, MinVersion: tls.VersionTLS12}
	if conf.ServerName == "" {
		host, _, err := net.SplitHostPort(ct.addr)
		if err != nil || unspecifiedHost(ct.addr) {
			return nil, fmt.Errorf("%s.control: %q names no host to check the site's certificate against: set control_tls_server_name", role, ct.addr)
		}
		conf.ServerName = host
	}
	if ct.ca != "" {
		if conf.RootCAs, err = loadCA(role+".control_tls_ca", ct.ca); err != nil {
			return nil, err
		}
	}
	return conf, nil
}

// loadKeyPair loads a certificate and its key, the values of the keys
// site.certKey and site.keyKey.
func loadKeyPair(site, certKey, keyKey, certFile, keyFile string) (tls.Certificate, error) {
	// Read the files first so that an unreadable one is named plainly.
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("%s.%s: %w", site, certKey, err)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("%s.%s: %w", site, keyKey, err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("%s.%s/%s: %s and %s: %w", site, certKey, keyKey, certFile, keyFile, err)
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

// CheckSecurity refuses a site that would expose volume data or control
// off this machine unprotected, for each site the config describes. An
// address that is not loopback (":port" and "0.0.0.0:port" listen on every
// interface, so they are not loopback either) needs, at that site:
//
//   - the link (primary.secondary, secondary.listen, and primary.listen, the
//     reverse link after a rejoin): tls_cert, tls_key and
//     tls_ca, for mutual TLS between the sites;
//   - NBD (primary.nbd, secondary.nbd): nbd_tls_cert, nbd_tls_key and
//     nbd_tls_ca, so that clients must use TLS and present a certificate
//     signed by nbd_tls_ca;
//   - control (primary.control, secondary.control): control_token_file,
//     without which any host could reach the profiles, and mutating calls
//     would be refused anyway; and control_tls_cert and control_tls_key,
//     so that the token, the status and the profiles cross the network
//     encrypted.
//
// insecure = true in the site's section accepts all of these unprotected.
// Every problem is returned, joined, each naming its key.
func (c *Config) CheckSecurity() error {
	var p problems
	token := c.ControlTokenFile != ""
	if c.HasPrimary() && !c.Primary.Insecure {
		pr := &c.Primary
		if pr.Secondary != "" && !isLoopbackAddr(pr.Secondary) && !c.primaryHasTLS() {
			p.add("primary.secondary", "%q is not a loopback address, so the link would carry volume data unencrypted and unauthenticated: "+
				"set tls_cert, tls_key and tls_ca in [primary] and [secondary] for mutual TLS, or insecure = true in [primary] to accept a plaintext link",
				pr.Secondary)
		}
		if pr.Listen != "" && !isLoopbackAddr(pr.Listen) && !c.primaryHasTLS() {
			p.add("primary.listen", "%q is not a loopback address, so after a rejoin the link would accept volume data unencrypted and unauthenticated: "+
				"set tls_cert, tls_key and tls_ca in [primary] and [secondary] for mutual TLS, or insecure = true in [primary] to accept a plaintext link",
				pr.Listen)
		}
		if pr.NBD != "" && !isLoopbackAddr(pr.NBD) && !c.primaryHasNBDTLS() {
			p.add("primary.nbd", "%q is not a loopback address, so any host that reaches it could read and write the volumes in plaintext: "+
				"set nbd_tls_cert, nbd_tls_key and nbd_tls_ca in [primary] to require TLS with client certificates, or insecure = true in [primary]",
				pr.NBD)
		}
		if pr.Control != "" && !isLoopbackAddr(pr.Control) {
			checkControlSecurity(&p, "primary", pr.Control, token, pr.ControlTLSCert != "")
		}
	}
	if c.HasSecondary() && !c.Secondary.Insecure {
		s := &c.Secondary
		if s.Listen != "" && !isLoopbackAddr(s.Listen) && !c.secondaryHasTLS() {
			p.add("secondary.listen", "%q is not a loopback address, so the link would accept volume data unencrypted and unauthenticated: "+
				"set tls_cert, tls_key and tls_ca in [secondary] and [primary] for mutual TLS, or insecure = true in [secondary] to accept a plaintext link",
				s.Listen)
		}
		if s.NBD != "" && !isLoopbackAddr(s.NBD) && !c.secondaryHasNBDTLS() {
			p.add("secondary.nbd", "%q is not a loopback address, so any host that reaches it could read the volumes' copies in plaintext: "+
				"set nbd_tls_cert, nbd_tls_key and nbd_tls_ca in [secondary] to require TLS with client certificates, or insecure = true in [secondary]",
				s.NBD)
		}
		if s.Control != "" && !isLoopbackAddr(s.Control) {
			checkControlSecurity(&p, "secondary", s.Control, token, s.ControlTLSCert != "")
		}
	}
	return errors.Join(p...)
}

// checkControlSecurity adds what a control address off loopback lacks: the
// token, HTTPS, or both.
func checkControlSecurity(p *problems, site, addr string, token, https bool) {
	var lacks, fix []string
	if !token {
		lacks = append(lacks, "the session has no control_token_file")
		fix = append(fix, "set control_token_file (a file only its owner can read, holding a random token)")
	}
	if !https {
		lacks = append(lacks, "it serves plain HTTP, so the token and the status would cross the network in clear")
		fix = append(fix, fmt.Sprintf("set control_tls_cert and control_tls_key in [%s] for HTTPS", site))
	}
	if lacks == nil {
		return
	}
	p.add(site+".control", "%q is not a loopback address and %s: %s, or insecure = true in [%s]",
		addr, strings.Join(lacks, ", and "), strings.Join(fix, " and "), site)
}
