package site

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"

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

// Listeners are the NBD and control listeners of a secondary promoted in
// place, which the site it becomes serves on (Secondary.HandOver,
// PromotedOptions and PrimaryOptions): bound from the secondary's start to
// the new site's, so that no other process can bind the addresses between
// the two. A port the system picked (port 0 in the config) is one any bind
// of port 0 on the machine may be given once it is free. Either may be nil.
type Listeners struct {
	NBD, Control net.Listener
}

// Close closes the listeners that are set.
func (h Listeners) Close() {
	if h.NBD != nil {
		h.NBD.Close()
	}
	if h.Control != nil {
		h.Control.Close()
	}
}

// listen binds nbd and control, each unless "", the control address with
// the certificate of the config's site role; what names the site in errors.
// A listener handed over in kept is served on as it is, not bound again,
// where it listens on the address named here; one for an address named ""
// or another address is closed (see handedFor).
func (l *listeners) listen(cfg *config.Config, role, what, nbd, control string, kept Listeners) (err error) {
	defer func() {
		if err != nil {
			kept.Close()
		}
	}()
	if nbd != "" {
		if l.nbdLn, kept.NBD = handedFor(kept.NBD, nbd), nil; l.nbdLn == nil {
			if l.nbdLn, err = net.Listen("tcp", nbd); err != nil {
				return fmt.Errorf("%s: NBD address: %w", what, err)
			}
		}
	}
	if control != "" {
		if l.ctlTLS, err = tlsconf.ControlServer(cfg, role); err != nil {
			return fmt.Errorf("%s: control address: %w", what, err)
		}
		if l.ctlLn, kept.Control = handedFor(kept.Control, control), nil; l.ctlLn == nil {
			if l.ctlLn, err = net.Listen("tcp", control); err != nil {
				return fmt.Errorf("%s: control address: %w", what, err)
			}
		}
	}
	kept.Close()
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

// handedFor returns ln, a listener handed over, if it listens where a bind
// of named would (a port the system picked stands for port 0), else closes
// it and returns nil: the site then binds named. Served instead, the site
// would listen where its config, its status and its operator do not say.
func handedFor(ln net.Listener, named string) net.Listener {
	if ln == nil {
		return nil
	}
	if got, ok := ln.Addr().(*net.TCPAddr); ok {
		if want, err := net.ResolveTCPAddr("tcp", named); err == nil && (want.Port == 0 || want.Port == got.Port) &&
			(want.IP.Equal(got.IP) || (want.IP == nil || want.IP.IsUnspecified()) && got.IP.IsUnspecified()) {
			return ln
		}
	}
	ln.Close()
	return nil
}

// keep returns listeners on the same sockets as l's, which stay bound and
// listening when l's are closed. One that cannot be duplicated is left out,
// and said in the error: the next site binds its address again.
func (l *listeners) keep() (Listeners, error) {
	var h Listeners
	var nbdErr, ctlErr error
	if l.nbdLn != nil {
		if h.NBD, nbdErr = dupListener(l.nbdLn); nbdErr != nil {
			nbdErr = fmt.Errorf("NBD address: %w", nbdErr)
		}
	}
	if l.ctlLn != nil {
		if h.Control, ctlErr = dupListener(l.ctlLn); ctlErr != nil {
			ctlErr = fmt.Errorf("control address: %w", ctlErr)
		}
	}
	return h, errors.Join(nbdErr, ctlErr)
}

// dupListener is a second listener on ln's socket: closing ln leaves the
// socket bound and listening, and connections that arrive meanwhile wait in
// its backlog for the new listener's Accept.
func dupListener(ln net.Listener) (net.Listener, error) {
	fl, ok := ln.(interface{ File() (*os.File, error) })
	if !ok {
		return nil, fmt.Errorf("%s: a %T cannot be handed over", ln.Addr(), ln)
	}
	f, err := fl.File()
	if err != nil {
		return nil, fmt.Errorf("%s: handing the listener over: %w", ln.Addr(), err)
	}
	defer f.Close()
	dup, err := net.FileListener(f)
	if err != nil {
		return nil, fmt.Errorf("%s: handing the listener over: %w", ln.Addr(), err)
	}
	return dup, nil
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
