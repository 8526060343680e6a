package control

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// ErrStarting is why a site refuses a call that changes its state while
// it starts (see ServeStarting): it has not read its state yet.
var ErrStarting = errors.New("not yet: starting")

// StartingStatus is a starting site's status field Starting: since when
// it starts, and what the start waits for now and for how long.
type StartingStatus struct {
	Since string `json:"since"` // RFC 3339
	// Step is what the start does now: the file of the state directory
	// it reads or writes (its disk may have stopped answering), or what
	// names it.
	Step        string  `json:"step,omitempty"`
	StepSince   string  `json:"step_since,omitempty"` // RFC 3339
	StepSeconds float64 `json:"step_seconds"`
}

// Starting is a site's control address while the site starts: bound and
// answering from right after the site's lock is taken, before its state
// is read, so that an operator tells a start that waits (on a disk that
// stopped answering, a long replay) from a site that is not there. Its
// first Server answers status and metrics, and refuses every call that
// changes the site's state (503, "not yet: starting: ..."); the site's
// own Server, once it runs, takes the address over (its Early), on the
// same socket: no connection is refused in between.
type Starting struct {
	srv     *http.Server
	handler atomic.Pointer[http.Handler]
	served  chan struct{}
	err     error // Serve's, once served is closed
	close   sync.Once
}

// ServeStarting serves s (a Server whose Status says the site starts:
// Starting set) on ln until the site's Server takes over (Server.Early)
// or Close. Every call that changes the site's state is refused, saying
// why (see ErrStarting).
func ServeStarting(ln net.Listener, s *Server, why string) *Starting {
	s.changes.stop(ErrStartingRefusal(why))
	st := &Starting{served: make(chan struct{})}
	h := s.Handler()
	st.handler.Store(&h)
	st.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		(*st.handler.Load()).ServeHTTP(w, r)
	}), ReadHeaderTimeout: 10 * time.Second, TLSConfig: s.TLS}
	warnReachable(ln, s.TLS, s.Logger)
	go func() {
		defer close(st.served)
		if err := serveOn(st.srv, ln, s.TLS); err != nil && !errors.Is(err, http.ErrServerClosed) {
			st.err = fmt.Errorf("control %s: %w", ln.Addr(), err)
		}
	}()
	return st
}

// Close ends the serving at once (a start that failed): the listener is
// closed.
func (st *Starting) Close() {
	if st == nil {
		return
	}
	st.close.Do(func() { st.srv.Close() })
	<-st.served
}

// serveAs serves s's handler from now on, until ctx ends: Server.Serve
// for a site whose control address answered while it started.
func (st *Starting) serveAs(ctx context.Context, s *Server) error {
	h := s.Handler()
	st.handler.Store(&h)
	select {
	case <-st.served:
		// Closed, or the listener failed, before the site ran.
		if st.err != nil {
			return st.err
		}
		return fmt.Errorf("control: %w", net.ErrClosed)
	case <-ctx.Done():
	}
	st.close.Do(func() {
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if st.srv.Shutdown(sctx) != nil {
			st.srv.Close()
		}
	})
	<-st.served
	return st.err
}

// ErrStartingRefusal is the refusal of a starting site, saying why.
func ErrStartingRefusal(why string) error { return fmt.Errorf("%w: %s", ErrStarting, why) }

// RefusedStarting reports whether err is a site's refusal of a call
// because it starts (see ServeStarting): the call was not carried out,
// nor begun, by a site that has not read its state yet.
func RefusedStarting(err error) bool {
	var r *RefusedError
	return errors.As(err, &r) && r.Code == http.StatusServiceUnavailable && strings.HasPrefix(r.Reason, ErrStarting.Error()+": ")
}

// warnReachable says in the log what a control address reachable from
// other hosts serves them.
func warnReachable(ln net.Listener, tlsConf *tls.Config, log *slog.Logger) {
	a, ok := ln.Addr().(*net.TCPAddr)
	if !ok || a.IP.IsLoopback() || log == nil {
		return
	}
	if tlsConf == nil {
		log.Warn("control address is reachable from other hosts: status, metrics and the status page are readable by anyone who can connect; mutating calls and profiles need the token, which crosses the network in plaintext",
			"addr", a.String())
	} else {
		log.Info("control address is reachable from other hosts over HTTPS: status, metrics and the status page are readable by anyone who can connect; mutating calls and profiles need the token",
			"addr", a.String())
	}
}

// serveOn serves srv on ln, over TLS when tlsConf is set.
func serveOn(srv *http.Server, ln net.Listener, tlsConf *tls.Config) error {
	if tlsConf != nil {
		// ServeTLS takes the certificate from TLSConfig, offers HTTP/2, and
		// answers a plain HTTP request with 400 "Client sent an HTTP
		// request to an HTTPS server".
		return srv.ServeTLS(ln, "", "")
	}
	return srv.Serve(ln)
}
