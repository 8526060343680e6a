package config

import (
	"cmp"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
)

func (s *Security) linkTLS() bool { return s.TLSCert != "" && s.TLSKey != "" && s.TLSCA != "" }
func (s *Security) nbdTLS() bool  { return s.NBDTLSCert != "" && s.NBDTLSKey != "" && s.NBDTLSCA != "" }

// PrimaryNBDTLS returns the TLS configuration of the primary's NBD
// listener: its certificate (nbd_tls_cert, nbd_tls_key) and a requirement
// that every client present a certificate signed by nbd_tls_ca, as
// qemu-nbd's tls-creds-x509 with verify-peer=on and nbdkit's
// --tls-verify-peer do. The NBD protocol requires TLS 1.2 of every
// implementation; the clients (qemu, libnbd, both GnuTLS) negotiate 1.3
// when they can. It returns nil, nil when [primary] has no nbd_tls_*
// settings.
func (c *Config) PrimaryNBDTLS() (*tls.Config, error) {
	s := &c.Primary.Security
	return c.serverTLS("primary.nbd_", s.NBDTLSCert, s.NBDTLSKey, s.NBDTLSCA, tls.VersionTLS12)
}

// SecondaryNBDTLS is PrimaryNBDTLS for the secondary's read-only exports.
func (c *Config) SecondaryNBDTLS() (*tls.Config, error) {
	s := &c.Secondary.Security
	return c.serverTLS("secondary.nbd_", s.NBDTLSCert, s.NBDTLSKey, s.NBDTLSCA, tls.VersionTLS12)
}

// SecondaryTLS returns the server side of the link's mutual TLS: the
// secondary's certificate and key, and a requirement that the primary
// present a certificate signed by tls_ca; TLS 1.3 at least. It returns
// nil, nil when [secondary] has no TLS settings.
func (c *Config) SecondaryTLS() (*tls.Config, error) {
	s := &c.Secondary.Security
	return c.serverTLS("secondary.", s.TLSCert, s.TLSKey, s.TLSCA, tls.VersionTLS13)
}

// serverTLS is the server side of mutual TLS, from the keys at (a site and
// the prefix of its keys) tls_cert, tls_key and tls_ca, which Validate
// keeps all set or none: nil, nil when none is.
func (c *Config) serverTLS(at, certFile, keyFile, caFile string, minVersion uint16) (*tls.Config, error) {
	if certFile == "" {
		return nil, nil
	}
	cert, err := c.loadKeyPair(at+"tls_", certFile, keyFile)
	if err != nil {
		return nil, err
	}
	pool, err := c.loadCA(at+"tls_ca", caFile)
	if err != nil {
		return nil, err
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: minVersion}, nil
}

// PrimaryTLS returns the client side of the link's mutual TLS: the primary's
// certificate and key, the CA that must have signed the secondary's
// certificate, TLS 1.3 at least, and the server name expected in it
// (tls_server_name, or the host of primary.secondary). It returns nil, nil
// when [primary] has no TLS settings.
func (c *Config) PrimaryTLS() (*tls.Config, error) {
	p := &c.Primary
	server, err := c.serverTLS("primary.", p.TLSCert, p.TLSKey, p.TLSCA, tls.VersionTLS13) // the same files, the other side
	if server == nil {
		return nil, err
	}
	cert := &server.Certificates[0]
	host, _, _ := net.SplitHostPort(p.Secondary) // Validate: a dial address has a host
	return &tls.Config{
		// Always present our certificate, even when the secondary asks for
		// another CA: then it can log "unknown authority" instead of a
		// puzzling "no certificate".
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil },
		RootCAs:              server.ClientCAs,
		ServerName:           cmp.Or(p.ServerName, host),
		MinVersion:           tls.VersionTLS13,
	}, nil
}

// site returns the keys protecting the site role ("primary" or
// "secondary") and its control address.
func (c *Config) site(role string) (*Security, string, error) {
	switch role {
	case "primary":
		return &c.Primary.Security, c.Primary.Control, nil
	case "secondary":
		return &c.Secondary.Security, c.Secondary.Control, nil
	}
	return nil, "", fmt.Errorf("config: no site %q", role)
}

// ControlServerTLS returns the TLS configuration of the control address of
// the site role ("primary" or "secondary"; a promoted secondary keeps its
// own): its certificate and key (control_tls_cert, control_tls_key). No
// client certificate is asked for: browsers show the status page, and the
// control token authorises what changes anything. TLS 1.2 serves the
// scrapers and tools that read /metrics and the status; browsers and Go
// negotiate 1.3. It returns nil, nil when the site serves plain HTTP.
func (c *Config) ControlServerTLS(role string) (*tls.Config, error) {
	s, _, err := c.site(role)
	if err != nil || s.ControlTLSCert == "" {
		return nil, err
	}
	cert, err := c.loadKeyPair(role+".control_tls_", s.ControlTLSCert, s.ControlTLSKey)
	if err != nil {
		return nil, err
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

// ControlClientTLS returns what a client of role's control address (duplex
// status, pair, recover...) checks the site's certificate with: the CA in
// control_tls_ca (left out: the system's roots) and the name
// control_tls_server_name (left out: the host of control). It returns nil,
// nil when the site serves plain HTTP.
func (c *Config) ControlClientTLS(role string) (*tls.Config, error) {
	s, addr, err := c.site(role)
	if err != nil || s.ControlTLSCert == "" {
		return nil, err
	}
	// Validate asks for control_tls_server_name where control names no host.
	host, _, _ := net.SplitHostPort(addr)
	conf := &tls.Config{ServerName: cmp.Or(s.ControlTLSServerName, host), MinVersion: tls.VersionTLS12}
	if s.ControlTLSCA != "" {
		conf.RootCAs, err = c.loadCA(role+".control_tls_ca", s.ControlTLSCA)
	}
	return conf, err
}

// loadKeyPair loads a certificate and its key, the values of the keys
// at+"cert" and at+"key".
func (c *Config) loadKeyPair(at, certFile, keyFile string) (tls.Certificate, error) {
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
		return tls.Certificate{}, fmt.Errorf("%scert/%skey: %s and %s: %w", at, at[strings.LastIndex(at, ".")+1:], c.Resolve(certFile), c.Resolve(keyFile), err)
	}
	return cert, nil
}

func (c *Config) loadCA(field, file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(c.Resolve(file))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", field, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: %s holds no PEM certificate", field, c.Resolve(file))
	}
	return pool, nil
}

// CheckSecurity refuses a site that would expose volume data or control
// off this machine unprotected, for each site the config describes. Off
// loopback (":port" and "0.0.0.0:port" listen on every interface, so they
// are off it too), the link needs mutual TLS (tls_*, at both sites), NBD
// TLS with client certificates (nbd_tls_*), and control the token, without
// which any host could reach the profiles, and HTTPS (control_tls_*), so
// that the token and the status cross the network encrypted. insecure =
// true in the site's section accepts all of these unprotected. Every
// problem is returned, joined, each naming its key and what to set.
func (c *Config) CheckSecurity() error {
	var p problems
	if c.HasPrimary() && !c.Primary.Insecure {
		c.unprotected(&p, "primary", isLoopbackAddr)
	}
	if c.HasSecondary() && !c.Secondary.Insecure {
		c.unprotected(&p, "secondary", isLoopbackAddr)
	}
	return errors.Join(p...)
}

// unprotected adds what site leaves unprotected at its addresses that are
// not local, as CheckSecurity says.
func (c *Config) unprotected(p *problems, site string, local func(addr string) bool) {
	s, control, _ := c.site(site)
	type link struct{ key, addr, would string }
	links, other, nbd, reach := []link{{"listen", c.Secondary.Listen, "the link would accept"}}, "primary", c.Secondary.NBD, "read the volumes' copies"
	if site == "primary" {
		links = []link{{"secondary", c.Primary.Secondary, "the link would carry"}, {"listen", c.Primary.Listen, "after a rejoin the link would accept"}}
		other, nbd, reach = "secondary", c.Primary.NBD, "read and write the volumes"
	}
	for _, l := range links {
		if l.addr != "" && !local(l.addr) && !s.linkTLS() {
			p.add(site+"."+l.key, "%q is not a loopback address, so %s volume data unencrypted and unauthenticated: "+
				"set tls_cert, tls_key and tls_ca in [%s] and [%s] for mutual TLS, or insecure = true in [%s] to accept a plaintext link",
				l.addr, l.would, site, other, site)
		}
	}
	if nbd != "" && !local(nbd) && !s.nbdTLS() {
		p.add(site+".nbd", "%q is not a loopback address, so any host that reaches it could %s in plaintext: "+
			"set nbd_tls_cert, nbd_tls_key and nbd_tls_ca in [%s] to require TLS with client certificates, or insecure = true in [%s]",
			nbd, reach, site, site)
	}
	if control != "" && !local(control) {
		checkControlSecurity(p, site, control, c.ControlTokenFile != "", s.ControlTLSCert != "")
	}
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

// EtcdTLS returns the client side of TLS to the coupled group's etcd
// servers ([coupling] tls_ca, tls_cert, tls_key), or nil, nil when no
// endpoint is https.
func (c *Config) EtcdTLS() (*tls.Config, error) {
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
		pool, err := c.loadCA("coupling.tls_ca", cp.TLSCA)
		if err != nil {
			return nil, err
		}
		conf.RootCAs = pool
	}
	if cp.TLSCert != "" || cp.TLSKey != "" {
		cert, err := c.loadKeyPair("coupling.tls_", cp.TLSCert, cp.TLSKey)
		if err != nil {
			return nil, err
		}
		conf.Certificates = []tls.Certificate{cert}
	}
	return conf, nil
}

// EtcdPassword reads [coupling] password_file ("" when no username is set).
func (c *Config) EtcdPassword() (string, error) {
	if c.Coupling.Username == "" {
		return "", nil
	}
	b, err := os.ReadFile(c.Resolve(c.Coupling.PasswordFile))
	if err != nil {
		return "", fmt.Errorf("coupling.password_file: %w", err)
	}
	return strings.TrimRight(string(b), "\r\n"), nil
}
