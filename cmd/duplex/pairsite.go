package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"time"

	"duplex/config"
	"duplex/control"
)

// target returns the control address that the pair operation goes to: the
// one --addr names, else the session's primary now. After duplex promote
// the promoted site (the config's secondary) holds the pairs while the
// config still names the old primary; the operation goes there only when
// that site answers as the promoted primary and the config's primary does
// not answer as a primary, and the output says so. Both answering as
// primary is refused: either could be the wrong one.
func (f pairFlags) target(ctx context.Context, cfg *config.Config, stdout io.Writer) (control.Endpoint, error) {
	if *f.addr != "" {
		return f.named(cfg)
	}
	prim, err := controlOf(cfg, "primary")
	if err != nil || cfg.Secondary.Control == "" {
		return prim, err
	}
	sec, err := controlOf(cfg, "secondary")
	if err != nil {
		return prim, err
	}
	// Both asked at once: a site whose host is gone (no answer at all,
	// not a refusal) must not take the other's time.
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var ss control.Status
	var serr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		ss, serr = control.Fetch(ctx, sec)
	}()
	ps, perr := control.Fetch(ctx, prim)
	<-done
	primaryAnswers := perr == nil && ps.Role == "primary"
	promoted := serr == nil && ss.Role == "primary" && ss.PromotedAt != ""
	switch {
	case primaryAnswers && promoted:
		return control.Endpoint{}, fmt.Errorf("both sites answer as the primary: %s and %s, promoted since %s; "+
			"name the one that takes the operation with --addr", prim.Addr, sec.Addr, ss.PromotedAt)
	case promoted:
		fmt.Fprintf(stdout, "the promoted site at %s (primary since %s) takes the operation: the config's primary %s %s\n",
			sec.Addr, ss.PromotedAt, prim.Addr, notPrimary(ps, perr))
		return sec, nil
	}
	return prim, nil
}

// notPrimary says why the config's primary does not take the operation.
func notPrimary(st control.Status, err error) string {
	if err != nil {
		return "does not answer"
	}
	return "answers as the " + st.Role
}

// named returns the endpoint --addr names: with --ca, checked against that
// CA; else, where it is one of the config's control addresses, with that
// site's TLS settings.
func (f pairFlags) named(cfg *config.Config) (control.Endpoint, error) {
	var tlsConf *tls.Config
	if *f.ca != "" {
		pool, err := loadCAFile(*f.ca)
		if err != nil {
			return control.Endpoint{}, err
		}
		tlsConf = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	} else {
		for _, role := range []string{"primary", "secondary"} {
			at, err := controlOf(cfg, role)
			if err != nil {
				return control.Endpoint{}, err
			}
			if at.Addr == *f.addr {
				return at, nil
			}
		}
	}
	at, err := control.ParseEndpoint(*f.addr, tlsConf)
	if err != nil {
		return control.Endpoint{}, f.usageErrorf("--addr: %v", err)
	}
	return at, nil
}
