package control

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestAConnectionTheSiteClosedUnusedIsNotSentOn: a connection the client
// dialed but never sent on (dialed for a call that another connection,
// freed meanwhile, served; or for a call that gave up while it dialed)
// waits in the client's pool, and the site closes it once it brings no
// request (the control server's ReadHeaderTimeout, 10 s). The client
// must see that close and drop it: a call sent on it finds it closed,
// and a POST, which is not sent again, fails ("drill: EOF"). Before, a
// connection read nothing until written to, so the close went unseen
// and the next call failed; after, a close before the first write is
// read at once.
func TestAConnectionTheSiteClosedUnusedIsNotSentOn(t *testing.T) {
	var calls atomic.Int32
	entered, release := make(chan struct{}), make(chan struct{})
	srv := &Server{Status: func() Status { return Status{Role: "secondary"} }, Token: "t",
		Drill: func(DrillRequest) (DrillResult, error) {
			if calls.Add(1) == 1 {
				close(entered)
				<-release
			}
			return DrillResult{NBD: "x"}, nil
		}}
	hs := httptest.NewUnstartedServer(srv.Handler())
	// As the control server does after 10 s: a connection that brings no
	// request is closed.
	hs.Config.ReadHeaderTimeout = 200 * time.Millisecond
	closed := make(chan struct{}, 8)
	hs.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateClosed {
			closed <- struct{}{}
		}
	}
	hs.Start()
	defer hs.Close()

	// The second dial waits at gate: the call it is for is served by the
	// first connection, freed meanwhile, and the connection it makes goes
	// to the pool unused.
	tr := plainClient.Transport.(*http.Transport).Clone()
	dial := tr.DialContext
	var dials atomic.Int32
	gate := make(chan struct{})
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		if dials.Add(1) == 2 {
			<-gate
		}
		return dial(ctx, network, addr)
	}
	saved := plainClient
	plainClient = &http.Client{Transport: tr}
	defer func() {
		plainClient = saved
		tr.CloseIdleConnections()
	}()

	at := Endpoint{Addr: strings.TrimPrefix(hs.URL, "http://")}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	errs := make(chan error, 2)
	call := func() {
		_, err := Drill(ctx, at, "t", DrillRequest{Stop: true})
		errs <- err
	}
	go call()
	<-entered
	go call()
	for dials.Load() < 2 {
		time.Sleep(time.Millisecond)
	}
	close(release)
	for i := 0; i < 2; i++ {
		if err := <-errs; err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	close(gate)
	// The site closes the unused connection; the client's pool holds it
	// until it reads the close.
	select {
	case <-closed:
	case <-ctx.Done():
		t.Fatal("the site never closed the unused connection")
	}
	time.Sleep(200 * time.Millisecond)
	if _, err := Drill(ctx, at, "t", DrillRequest{Stop: true}); err != nil {
		t.Errorf("a call after the site closed a connection the client never sent on: %v; want it sent on another", err)
	}
}
