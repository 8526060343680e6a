package site

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"duplex/failover"
)

// cancelsBlocked is a control address in front of another that passes
// every request on, except cancels of a promotion while blocked is set:
// those are answered 503, as by a site that cannot be reached.
type cancelsBlocked struct {
	addr    string
	blocked atomic.Bool
}

func blockCancels(t *testing.T, target string) *cancelsBlocked {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &cancelsBlocked{addr: ln.Addr().String()}
	c.blocked.Store(true)
	rp := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: target})
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/promote/cancel" && c.blocked.Load() {
			http.Error(w, "unreachable", http.StatusServiceUnavailable)
			return
		}
		rp.ServeHTTP(w, r)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return c
}

// A switchover whose promotion answer is lost, and whose other site then
// does not answer the cancel, does not know whether that site takes over:
// it holds the writes (none is acknowledged that the other site might
// never get), says so in its error and its status, and keeps asking; once
// the other site cancels the request, the writes resume, the record is
// gone, and the request, delivered late, is refused.
func TestSwitchoverInDoubtHoldsTheWritesUntilTheOtherSiteSays(t *testing.T) {
	cfg := switchoverConfig(t)
	s := startSecondaryForSwitchover(t, cfg)
	h := holdPromotion(t, cfg.Secondary.Control)
	c := blockCancels(t, h.addr)
	pcfg := *cfg // the secondary's Run reads its own
	pcfg.Secondary.Control = c.addr
	p, _ := startPrimaryForSwitchover(t, &pcfg)
	waitDuplex(t, p)
	vols := cfg.VolumeNames()
	if err := p.Write(context.Background(), vols[0], bytes.Repeat([]byte{1}, 4096), 0); err != nil {
		t.Fatal(err)
	}
	_, err := p.Switchover(context.Background(), 2*time.Second)
	if err == nil || !strings.Contains(err.Error(), "in doubt") || !strings.Contains(err.Error(), "writes held") {
		t.Fatalf("switchover with its answer lost and no word from the other site: %v, want it in doubt, the writes held", err)
	}
	t.Logf("the switchover: %v", err)
	if st := p.Status(); st.SwitchoverInDoubt == "" {
		t.Errorf("status says nothing of the switchover in doubt: %+v", st)
	}
	if _, err := failover.ReadSwitchover(nil, PairStateDir(cfg)); err != nil {
		t.Errorf("the switchover's record: %v, want it pending", err)
	}
	written := make(chan error, 1)
	go func() { written <- p.Write(context.Background(), vols[0], bytes.Repeat([]byte{2}, 4096), 4096) }()
	select {
	case err := <-written:
		t.Fatalf("a write during the switchover in doubt ended (%v): it must be held", err)
	case <-time.After(time.Second):
	}
	if _, err := p.Switchover(context.Background(), time.Second); err == nil || !strings.Contains(err.Error(), "in doubt") {
		t.Errorf("a second switchover while one is in doubt: %v, want it refused as such", err)
	}

	c.blocked.Store(false)
	select {
	case err := <-written:
		if err != nil {
			t.Fatalf("the held write, once the other site cancelled the promotion: %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("the held write did not resume within a minute of the other site answering")
	}
	if st := p.Status(); st.SwitchoverInDoubt != "" {
		t.Errorf("status still says the switchover is in doubt: %q", st.SwitchoverInDoubt)
	}
	if _, err := failover.ReadSwitchover(nil, PairStateDir(cfg)); !errors.Is(err, failover.ErrNoSwitchover) {
		t.Errorf("the switchover's record after it was cancelled: %v, want none", err)
	}
	code, body := h.deliver(t)
	if code == http.StatusOK {
		t.Fatalf("the promotion delivered after its cancel was carried out: %s", body)
	}
	select {
	case <-s.promotedUp:
		t.Fatal("the secondary promoted itself after the request was cancelled")
	case <-time.After(time.Second):
	}
}
