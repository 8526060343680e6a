package main

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"duplex/config"
	"duplex/failover"
	"duplex/site"
)

// handedOver is a secondary a switchover promoted, its NBD and control
// addresses bound, for rejoinedEnded.
type handedOver struct {
	cfg          *config.Config
	nbd, control net.Listener
}

func (h *handedOver) NBDAddr() string                { return h.nbd.Addr().String() }
func (h *handedOver) ControlAddr() string            { return h.control.Addr().String() }
func (h *handedOver) PromotedConfig() *config.Config { return h.cfg }
func (h *handedOver) HandOver() site.Listeners       { return site.Listeners{NBD: h.nbd, Control: h.control} }

// A rejoined site's secondary that a switchover promoted as the operator
// stopped it (its Run ended promoted, the stop requested) stops, as duplex
// secondary does: the promotion is recorded, and the next start serves
// it. Neither the promoted site (promoted again) nor the session's primary
// (the session handed back) is started with the stop requested, and the
// addresses it had are let go.
func TestARejoinedSitePromotedAsItStopsStops(t *testing.T) {
	for _, back := range []bool{true, false} {
		name := "handed back"
		if back {
			name = "promoted again"
		}
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			cfg := startupSession(dir)
			h := &handedOver{cfg: cfg}
			var err error
			if h.nbd, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
				t.Fatal(err)
			}
			defer h.nbd.Close()
			if h.control, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
				t.Fatal(err)
			}
			defer h.control.Close()
			ctx, cancel := context.WithCancel(context.Background())
			cancel() // the operator's stop
			var logs, out bytes.Buffer
			log := slog.New(slog.NewTextHandler(&logs, nil))
			runErr := &site.PromotedError{Promotion: failover.Promotion{Session: cfg.Session, At: time.Now().UnixNano()}}
			err = rejoinedEnded(ctx, cfg, log, h, runErr, back, &out)
			t.Logf("rejoinedEnded: %v; stdout %q", err, out.String())
			if err != nil {
				t.Errorf("the stop of a rejoined site promoted as it stopped returned %v, want nil (the stop is the operator's)", err)
			}
			if strings.Contains(out.String(), "serving") || strings.Contains(logs.String(), "serving") {
				t.Errorf("the next site was started with the stop requested:\nstdout %q\nlog %s", out.String(), logs.String())
			}
			if !strings.Contains(logs.String(), "as the secondary stopped") {
				t.Errorf("the log does not say the site was promoted as it stopped:\n%s", logs.String())
			}
			for what, ln := range map[string]net.Listener{"NBD": h.nbd, "control": h.control} {
				if c, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second); err == nil {
					c.Close()
					t.Errorf("the %s address is still bound after the stop", what)
				}
			}
		})
	}
}
