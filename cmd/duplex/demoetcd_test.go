package main

import (
	"log/slog"
	"net"
	"path/filepath"
	"testing"
)

// TestTheCoupledDemosEtcdTakesOtherPortsWhenOnesTaken: with --port-base 0
// the coupled demo gives etcd two ports that were free when picked, but
// etcd, which cannot take a listener handed to it, binds them itself a
// moment later, and anything on the machine may have bound one meanwhile.
// Here the first pick's client port is taken by then: the demo picks
// again and etcd starts, rather than the demo failing.
func TestTheCoupledDemosEtcdTakesOtherPortsWhenOnesTaken(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	picks := 0
	demoEtcdURLs = func(ports portBase) (string, string, error) {
		picks++
		c, p, err := coupledDemoEtcdURLs(ports)
		if picks == 1 {
			c = "http://" + taken.Addr().String()
		}
		return c, p, err
	}
	t.Cleanup(func() { demoEtcdURLs = coupledDemoEtcdURLs })
	srv, err := startDemoEtcd(filepath.Join(t.TempDir(), "etcd"), portBase{set: true}, "error", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("the coupled demo's etcd, its first client port taken: %v", err)
	}
	defer srv.Close()
	if picks != 2 || srv.ClientURL == "http://"+taken.Addr().String() {
		t.Fatalf("etcd at %s after %d picks, want at the second pick's", srv.ClientURL, picks)
	}
}
