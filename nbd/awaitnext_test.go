package nbd

import (
	"net"
	"testing"
)

// After each WRITE at queue depth 1 the read loop of the process's only
// connection may wait for the next request in poll(2). Whatever way the
// connections end (DISC, the client hanging up, a second connection coming
// and going, the server closing while the client is silent), every reply
// arrives in order, Close returns, and the count of connections in
// transmission comes back to zero: a count left above one would turn the
// wait off for good, one left at zero would wait with two clients.
func TestAwaitNextConnectionsComeAndGo(t *testing.T) {
	if n := transmitting.Load(); n != 0 {
		t.Fatalf("%d connections in transmission before the test", n)
	}
	srv := &Server{Exports: exportMap{"rw": newMemExport(1 << 20)}, Logger: testLogger(t)}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	addr := ln.Addr().String()

	writes := func(r *rawClient, n int) {
		t.Helper()
		payload := make([]byte, 4096)
		for i := range n {
			payload[0] = byte(i)
			r.request(0, CmdWrite, uint64(i), uint64(i%256)*4096, 4096, payload)
			r.expectReply(uint64(i), 0)
		}
	}

	a := rawDial(t, addr)
	a.open("rw")
	writes(a, 200)

	// A second client comes and goes by DISC and a third by hanging up,
	// while the first keeps writing.
	b := rawDial(t, addr)
	b.open("rw")
	writes(b, 10)
	writes(a, 10)
	b.request(0, CmdDisc, 0, 0, 0, nil)
	b.expectClosed()
	c := rawDial(t, addr)
	c.open("rw")
	writes(c, 10)
	c.nc.Close()

	// The first is alone again: a lone client's last write, then silence
	// while the server closes.
	writes(a, 200)
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-served; err != nil {
		t.Fatalf("Serve after Close: %v", err)
	}
	a.expectClosed()
	if n := transmitting.Load(); n != 0 {
		t.Fatalf("%d connections in transmission after Close, want 0", n)
	}
}
