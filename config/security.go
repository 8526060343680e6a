package config

import (
	"errors"
	"fmt"
	"strings"
)

func (s *Security) linkTLS() bool { return s.TLSCert != "" && s.TLSKey != "" && s.TLSCA != "" }
func (s *Security) nbdTLS() bool  { return s.NBDTLSCert != "" && s.NBDTLSKey != "" && s.NBDTLSCA != "" }

// Site returns the keys protecting the site role ("primary" or
// "secondary") and its control address.
func (c *Config) Site(role string) (*Security, string, error) {
	switch role {
	case "primary":
		return &c.Primary.Security, c.Primary.Control, nil
	case "secondary":
		return &c.Secondary.Security, c.Secondary.Control, nil
	}
	return nil, "", fmt.Errorf("config: no site %q", role)
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
	s, control, _ := c.Site(site)
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
