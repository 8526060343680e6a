package nbd

import (
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

// TestSilentClientBeforeTLSIsDropped: a server that requires TLS is reached
// from other hosts, so anyone who can connect can hold a connection before
// authenticating: one that sends nothing, or stops in the middle of an
// option, is never dropped (the handshake has no deadline; only the TLS
// handshake after STARTTLS has one, of 30 s), and each holds a goroutine and
// 64 KiB of read buffer for ever, so enough of them exhaust the primary's
// memory or file descriptors without a certificate. qemu-nbd drops a
// client that has not finished its handshake after 10 s
// (--handshake-limit); the test allows 15 s.
func TestSilentClientBeforeTLSIsDropped(t *testing.T) {
	if testing.Short() {
		t.Skip("waits 15 s")
	}
	pki := newTestPKI(t, "duplex test CA")
	addr, _ := tlsServer(t, pki)
	const limit = 15 * time.Second

	silent := rawDial(t, addr) // reads the greeting, then says nothing
	silent.read(18)
	partial := rawDial(t, addr) // stops in the middle of an option header
	partial.hello(flagCFixedNewstyle | flagCNoZeroes)
	partial.write([]byte("IHAVEOPT"))

	start := time.Now()
	for name, r := range map[string]*rawClient{"silent after the greeting": silent, "stopped mid-option": partial} {
		r.nc.SetReadDeadline(start.Add(limit))
		_, err := r.br.ReadByte()
		switch {
		case errors.Is(err, os.ErrDeadlineExceeded):
			t.Errorf("%s: still connected after %s without starting TLS", name, time.Since(start).Round(time.Second))
		case err == nil:
			t.Errorf("%s: the server sent a byte unasked", name)
		case !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed):
			t.Logf("%s: dropped (%v)", name, err)
		}
	}
}

// TestHandshakesAreCapped: within the handshake deadline a client can still
// open connections faster than they time out, each a goroutine and a 64
// KiB buffer before it has authenticated. Past MaxHandshakes connections
// in their handshake a new one is closed at once; connections in
// transmission do not count, and a slot is free again once a handshake
// ends.
func TestHandshakesAreCapped(t *testing.T) {
	disk := newMemExport(1 << 20)
	addr := startServer(t, &Server{Exports: exportMap{"disk": disk}, MaxHandshakes: 2})
	var stalled []*rawClient
	for range 2 {
		r := rawDial(t, addr)
		r.read(18)
		stalled = append(stalled, r)
	}
	over := rawDial(t, addr)
	over.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := over.br.ReadByte(); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("a third connection in its handshake, over MaxHandshakes 2: read %v, want it closed", err)
	}
	// A stalled client leaves: its slot serves the next one.
	stalled[0].nc.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		r := rawDial(t, addr)
		r.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := r.br.ReadByte(); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no handshake served after a stalled client left")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
