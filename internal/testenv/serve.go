package testenv

import (
	"io"
	"net"
	"testing"
)

// ServeConns listens on a loopback port until the test ends and serves
// each connection with serve, on a goroutine of its own, closing it once
// serve returns: what answers at an address a test points a client at
// (an NBD server's greeting, a reset, an echo). It returns the address.
func ServeConns(t testing.TB, serve func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				serve(c)
			}()
		}
	}()
	return ln.Addr().String()
}

// NBDGreeter listens where an NBD export would and greets each connection
// as an NBD server does (newstyle, fixed), then reads the client's flags
// and, not knowing those an HTTP request's first bytes make, hangs up: a
// site's NBD export address given where its control address is wanted.
func NBDGreeter(t testing.TB) string {
	t.Helper()
	return ServeConns(t, func(c net.Conn) {
		c.Write([]byte("NBDMAGICIHAVEOPT\x00\x03"))
		io.ReadFull(c, make([]byte, 4))
	})
}
