package site

import (
	"context"
	"errors"
	"testing"

	"duplex/control"
	"duplex/failover"
)

// A cancelled promotion request is never carried out, across a restart of
// the secondary too: the cancel's answer is what lets the primary's writes
// resume, and a request kept on its way (a proxy or load balancer in
// front of the control address holds it while the secondary restarts, as
// heldPromotion does) reaches the new process, which must refuse it as the
// old one would have. Kept in memory only, the restarted secondary
// promotes itself on it while the old primary takes writes: two primaries.
func TestCancelledPromotionStaysCancelledAcrossARestart(t *testing.T) {
	cfg := switchoverConfig(t)
	sec := startSecondaryForSwitchover(t, cfg)
	p, _ := startPrimaryForSwitchover(t, cfg)
	waitDuplex(t, p)
	tok, err := control.ReadToken(cfg.TokenPath())
	if err != nil {
		t.Fatal(err)
	}
	acked := p.Mover().Stats().Acked
	req := control.PromoteRequest{Session: cfg.Session, ID: "00000000000000c1", Group: acked.Group, ConsistencyTime: acked.Time}
	at := control.Endpoint{Addr: sec.ControlAddr()}
	res, err := control.CancelPromotion(context.Background(), at, tok, control.CancelRequest{Session: cfg.Session, ID: req.ID})
	if err != nil || res.State != control.PromoteRefused {
		t.Fatalf("the cancel: %+v, %v; want refused", res, err)
	}
	// The secondary restarts (its addresses change: the primary, which no
	// longer reaches it, has nothing to do with what follows).
	sec.stop()
	<-sec.done
	again := startSecondaryForSwitchover(t, cfg)
	res, err = control.PromoteSecondary(context.Background(), control.Endpoint{Addr: again.ControlAddr()}, tok, req)
	if err == nil || res.State == control.PromoteDone {
		t.Errorf("the restarted secondary carried out a request cancelled before its restart: %+v, %v", res, err)
	}
	t.Logf("the restarted secondary's answer: %+v, %v", res, err)
	if _, err := failover.ReadPromotion(nil, PromotedDir(cfg)); !errors.Is(err, failover.ErrNotPromoted) {
		t.Errorf("promotion record after the cancelled request: %v, want none", err)
	}
}
