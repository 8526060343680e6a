package site

import (
	"crypto/tls"
	"fmt"
	"net"

	"duplex/config"
	"duplex/tlsconf"
)

// listeners are a site's NBD and control listeners, bound when the site
// opens, so that an address taken fails the start and port 0 is resolved
// before the site reports where it listens, with the control address's TLS.
type listeners struct {
	nbdLn  net.Listener
	ctlLn  net.Listener
	ctlTLS *tls.Config // nil: plain HTTP
}

// listen binds nbd and control, each unless "", the control address with
// the certificate of the config's site role; what names the site in errors.
func (l *listeners) listen(cfg *config.Config, role, what, nbd, control string) (err error) {
	if nbd != "" {
		if l.nbdLn, err = net.Listen("tcp", nbd); err != nil {
			return fmt.Errorf("%s: NBD address: %w", what, err)
		}
	}
	if control != "" {
		if l.ctlTLS, err = tlsconf.ControlServer(cfg, role); err != nil {
			return fmt.Errorf("%s: control address: %w", what, err)
		}
		if l.ctlLn, err = net.Listen("tcp", control); err != nil {
			return fmt.Errorf("%s: control address: %w", what, err)
		}
	}
	return nil
}

func (l *listeners) close() {
	if l.nbdLn != nil {
		l.nbdLn.Close()
	}
	if l.ctlLn != nil {
		l.ctlLn.Close()
	}
}

// NBDAddr returns the NBD listening address ("" if none).
func (l *listeners) NBDAddr() string {
	if l.nbdLn == nil {
		return ""
	}
	return l.nbdLn.Addr().String()
}

// ControlAddr returns the control listening address ("" if none).
func (l *listeners) ControlAddr() string {
	if l.ctlLn == nil {
		return ""
	}
	return l.ctlLn.Addr().String()
}
