package transport

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"errors"
	"math/big"
	"net"
	"runtime"
	"testing"
	"time"
)

func listenTCP(t *testing.T, conf *tls.Config, maxFrame int) *TCPListener {
	t.Helper()
	ln, err := ListenTCP("127.0.0.1:0", conf, maxFrame)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

type acceptResult struct {
	c   Conn
	err error
}

// acceptAsync accepts one connection in the background and completes its
// handshake, as the secondary does.
func acceptAsync(t *testing.T, ln *TCPListener) <-chan acceptResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	ch := make(chan acceptResult, 1)
	go func() {
		defer cancel()
		c, err := ln.Accept(ctx)
		if err == nil {
			if err = Handshake(ctx, c); err != nil {
				c = nil
			}
		}
		ch <- acceptResult{c, err}
	}()
	return ch
}

func awaitAccept(t *testing.T, ch <-chan acceptResult) acceptResult {
	t.Helper()
	select {
	case r := <-ch:
		if r.c != nil {
			t.Cleanup(func() { r.c.Close() })
		}
		return r
	case <-time.After(30 * time.Second):
		t.Fatal("Accept did not return")
		return acceptResult{}
	}
}

func tcpPair(t *testing.T, ln *TCPListener, d *TCPDialer) (client, server Conn) {
	t.Helper()
	ch := acceptAsync(t, ln)
	c, err := d.Dial(context.Background())
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	r := awaitAccept(t, ch)
	if r.err != nil {
		t.Fatalf("Accept: %v", r.err)
	}
	return c, r.c
}

// tcpPairOver is tcpPair of a connection taking frames up to 64 MiB, over
// TLS (mutual, under a CA of its own) or plain TCP.
func tcpPairOver(t *testing.T, useTLS bool) (client, server Conn) {
	t.Helper()
	if !useTLS {
		ln := listenTCP(t, nil, 0)
		return tcpPair(t, ln, &TCPDialer{Addr: ln.Addr(), MaxRecv: 64 << 20})
	}
	ca := newCA(t, "duplex test CA")
	cert := ca.issue(t, "primary")
	ln := listenTCP(t, serverTLS(ca, ca.issue(t, "secondary")), 0)
	return tcpPair(t, ln, &TCPDialer{Addr: ln.Addr(), MaxRecv: 64 << 20, TLS: clientTLS(ca, &cert)})
}

// tlsName names a subtest of tcpPairOver's useTLS.
func tlsName(useTLS bool) string {
	if useTLS {
		return "tls"
	}
	return "plain"
}

func patterned(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = seed + byte(i) + byte(i>>8)*3
	}
	return b
}

func testRoundTrip(t *testing.T, client, server Conn) {
	frames := [][]byte{{}, {1}, EncodeHello(Hello{Session: "s", Subsystems: []string{"a"}, Instance: 1}), patterned(65536, 1), patterned(10<<20, 7), patterned(3, 9)}
	// Client to server, concurrently with the reading so that a large frame
	// does not deadlock on socket buffers.
	errc := make(chan error, 1)
	go func() {
		for _, f := range frames {
			if err := client.Send(f); err != nil {
				errc <- err
				return
			}
		}
		errc <- nil
	}()
	for i, want := range frames {
		got, err := server.Recv()
		if err != nil {
			t.Fatalf("frame %d: Recv: %v", i, err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("frame %d: got %d bytes, want %d (contents differ: %v)", i, len(got), len(want), len(got) == len(want))
		}
	}
	if err := <-errc; err != nil {
		t.Fatalf("Send: %v", err)
	}
	// And back.
	reply := EncodePosition(TypeAck, Position{Group: 3, Through: map[string]uint64{"a": 9}})
	if err := server.Send(reply); err != nil {
		t.Fatal(err)
	}
	got, err := client.Recv()
	if err != nil || !bytes.Equal(got, reply) {
		t.Fatalf("reply: %x, %v", got, err)
	}
}

func TestTCPRoundTrip(t *testing.T) {
	ln := listenTCP(t, nil, 0)
	c, s := tcpPair(t, ln, &TCPDialer{Addr: ln.Addr()})
	testRoundTrip(t, c, s)
	if c.Peer() != ln.Addr() {
		t.Errorf("client Peer = %q, want %q", c.Peer(), ln.Addr())
	}
}

func TestTCPSendRefusesFrameAboveMaxFrame(t *testing.T) {
	ln := listenTCP(t, nil, 0)
	c, s := tcpPair(t, ln, &TCPDialer{Addr: ln.Addr(), MaxFrame: 1024})
	if err := c.Send(make([]byte, 1025)); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("Send of 1025 bytes with MaxFrame 1024: %v, want ErrFrameTooLarge", err)
	}
	// Nothing of it went on the wire: the next frame arrives intact.
	want := patterned(1024, 3)
	if err := c.Send(want); err != nil {
		t.Fatalf("Send of exactly MaxFrame: %v", err)
	}
	got, err := s.Recv()
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("Recv after a refused Send: %d bytes, %v", len(got), err)
	}
}

// rawClient connects without the transport's framing.
func rawClient(t *testing.T, ln *TCPListener) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", ln.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestTCPRecvRefusesHugeLengthWithoutAllocating(t *testing.T) {
	for _, tc := range []struct {
		name     string
		maxFrame int
		length   uint32
	}{
		{"default max", 0, 0xffffffff},
		{"small max", 4096, 4097},
		{"small max huge", 4096, 1 << 31},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ln := listenTCP(t, nil, tc.maxFrame)
			ch := acceptAsync(t, ln)
			raw := rawClient(t, ln)
			r := awaitAccept(t, ch)
			if r.err != nil {
				t.Fatal(r.err)
			}
			var hdr [4]byte
			binary.BigEndian.PutUint32(hdr[:], tc.length)
			if _, err := raw.Write(hdr[:]); err != nil {
				t.Fatal(err)
			}
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			f, err := r.c.Recv()
			runtime.ReadMemStats(&after)
			if !errors.Is(err, ErrFrameTooLarge) {
				t.Fatalf("Recv of a %d-byte announcement: %d bytes, %v; want ErrFrameTooLarge", tc.length, len(f), err)
			}
			if grew := after.TotalAlloc - before.TotalAlloc; grew > 1<<20 {
				t.Fatalf("Recv allocated %d bytes for a refused frame", grew)
			}
		})
	}
}

// A peer that announces a frame and hangs up in the middle of it makes Recv
// fail, not return a short frame.
func TestTCPRecvTruncatedFrame(t *testing.T) {
	ln := listenTCP(t, nil, 0)
	ch := acceptAsync(t, ln)
	raw := rawClient(t, ln)
	r := awaitAccept(t, ch)
	if r.err != nil {
		t.Fatal(r.err)
	}
	var hdr [4]byte
	binary.BigEndian.PutUint32(hdr[:], 100)
	raw.Write(hdr[:])
	raw.Write(make([]byte, 50))
	raw.Close()
	if f, err := r.c.Recv(); err == nil {
		t.Fatalf("Recv of a truncated frame returned %d bytes", len(f))
	}
}

func TestTCPAcceptHonoursContext(t *testing.T) {
	ln := listenTCP(t, nil, 0)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := ln.Accept(ctx)
		errc <- err
	}()
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Accept after cancel: %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Accept did not return after its context was cancelled")
	}
	// Already cancelled before the call.
	if _, err := ln.Accept(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Accept with a cancelled context: %v, want context.Canceled", err)
	}
}

func TestTCPDialFailsWithoutListener(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	if c, err := (&TCPDialer{Addr: addr, Timeout: 5 * time.Second}).Dial(context.Background()); err == nil {
		c.Close()
		t.Fatal("Dial to a closed port succeeded")
	}
}

// pki is a throwaway certificate authority.
type pki struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

var serial int64

func newCA(t *testing.T, name string) *pki {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial++
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(serial),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &pki{cert: cert, key: key, pool: pool}
}

// issue returns a leaf certificate for both server and client use.
func (ca *pki) issue(t *testing.T, name string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial++
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: name},
		DNSNames:     []string{name},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func serverTLS(ca *pki, cert tls.Certificate) *tls.Config {
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		ClientCAs:    ca.pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS12,
	}
}

func clientTLS(ca *pki, cert *tls.Certificate) *tls.Config {
	c := &tls.Config{RootCAs: ca.pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
	if cert != nil {
		c.Certificates = []tls.Certificate{*cert}
	}
	return c
}

func TestTCPMutualTLS(t *testing.T) {
	ca := newCA(t, "duplex test CA")
	ln := listenTCP(t, serverTLS(ca, ca.issue(t, "secondary")), 0)
	cert := ca.issue(t, "primary")
	c, s := tcpPair(t, ln, &TCPDialer{Addr: ln.Addr(), TLS: clientTLS(ca, &cert)})
	testRoundTrip(t, c, s)
}

// expectHandshakeError checks that the listener refused the last connection
// with a *HandshakeError, and that the client cannot exchange frames.
func expectHandshakeError(t *testing.T, r acceptResult, client Conn) {
	t.Helper()
	if r.err == nil {
		t.Fatal("Accept succeeded")
	}
	var he *HandshakeError
	if !errors.As(r.err, &he) {
		t.Fatalf("Accept: %v (%T), want a *HandshakeError", r.err, r.err)
	}
	if he.Peer == "" || he.Err == nil {
		t.Fatalf("HandshakeError without peer or cause: %+v", he)
	}
	if client != nil {
		if f, err := client.Recv(); err == nil {
			t.Fatalf("client received %x over a refused connection", f)
		}
	}
}

func TestTCPMutualTLSRefusesClientOfWrongCA(t *testing.T) {
	ca, other := newCA(t, "duplex test CA"), newCA(t, "some other CA")
	ln := listenTCP(t, serverTLS(ca, ca.issue(t, "secondary")), 0)
	cert := other.issue(t, "intruder")
	ch := acceptAsync(t, ln)
	// With TLS 1.3 the client finishes its side before the server has
	// checked its certificate, so Dial may succeed; the server must not.
	c, dialErr := (&TCPDialer{Addr: ln.Addr(), TLS: clientTLS(ca, &cert)}).Dial(context.Background())
	if dialErr == nil {
		t.Cleanup(func() { c.Close() })
	}
	expectHandshakeError(t, awaitAccept(t, ch), c)

	// The listener keeps accepting after a refused handshake.
	good := ca.issue(t, "primary")
	cc, s := tcpPair(t, ln, &TCPDialer{Addr: ln.Addr(), TLS: clientTLS(ca, &good)})
	if err := cc.Send([]byte("after")); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Recv(); err != nil || string(got) != "after" {
		t.Fatalf("Recv: %q, %v", got, err)
	}
}

func TestTCPMutualTLSRefusesClientWithoutCertificate(t *testing.T) {
	ca := newCA(t, "duplex test CA")
	ln := listenTCP(t, serverTLS(ca, ca.issue(t, "secondary")), 0)
	ch := acceptAsync(t, ln)
	c, dialErr := (&TCPDialer{Addr: ln.Addr(), TLS: clientTLS(ca, nil)}).Dial(context.Background())
	if dialErr == nil {
		t.Cleanup(func() { c.Close() })
	}
	expectHandshakeError(t, awaitAccept(t, ch), c)
}

func TestTCPClientRefusesServerOfWrongCA(t *testing.T) {
	ca, other := newCA(t, "duplex test CA"), newCA(t, "some other CA")
	ln := listenTCP(t, serverTLS(ca, other.issue(t, "127.0.0.1")), 0)
	ch := acceptAsync(t, ln)
	cert := ca.issue(t, "primary")
	c, err := (&TCPDialer{Addr: ln.Addr(), TLS: clientTLS(ca, &cert)}).Dial(context.Background())
	if err == nil {
		c.Close()
		t.Fatal("Dial to a server whose certificate the client's CA did not sign succeeded")
	}
	var ue x509.UnknownAuthorityError
	if !errors.As(err, &ue) {
		t.Errorf("Dial error %v does not wrap x509.UnknownAuthorityError", err)
	}
	r := awaitAccept(t, ch)
	if r.err == nil {
		t.Fatal("server Accept succeeded although the client refused it")
	}
}

func TestTCPPlainClientAgainstTLSListener(t *testing.T) {
	ca := newCA(t, "duplex test CA")
	ln := listenTCP(t, serverTLS(ca, ca.issue(t, "secondary")), 0)
	ch := acceptAsync(t, ln)
	c, err := (&TCPDialer{Addr: ln.Addr()}).Dial(context.Background())
	if err != nil {
		t.Fatalf("plain Dial: %v", err) // TCP connects; the handshake is what fails
	}
	t.Cleanup(func() { c.Close() })
	// The plain client speaks first, with a frame where a ClientHello should be.
	c.Send(EncodeHello(Hello{Session: "s", Subsystems: []string{"a"}, Instance: 1}))
	expectHandshakeError(t, awaitAccept(t, ch), c)
}

// A TLS client against a plain listener fails to connect, and the plain
// listener does not hand the garbage on as a connection that works.
func TestTCPTLSClientAgainstPlainListener(t *testing.T) {
	ca := newCA(t, "duplex test CA")
	ln := listenTCP(t, nil, 1<<20)
	ch := acceptAsync(t, ln)
	cert := ca.issue(t, "primary")
	c, err := (&TCPDialer{Addr: ln.Addr(), TLS: clientTLS(ca, &cert), Timeout: 2 * time.Second}).Dial(context.Background())
	if err == nil {
		c.Close()
		t.Fatal("TLS Dial to a plain listener succeeded")
	}
	r := awaitAccept(t, ch)
	if r.err != nil {
		return
	}
	// The ClientHello read as a frame: too large for 1 MiB or not a valid frame.
	if f, err := r.c.Recv(); err == nil {
		if _, _, err := Open(f); err == nil {
			t.Fatalf("a ClientHello passed as a frame: %x", f)
		}
	}
}

// A client that connects and never starts its TLS handshake (a port scanner,
// a stuck peer) must not keep the listener from accepting a real primary in
// the meantime: the handshake runs per connection (Handshake), not in Accept.
func TestTCPIdleClientDoesNotBlockAccept(t *testing.T) {
	ca := newCA(t, "duplex test CA")
	ln := listenTCP(t, serverTLS(ca, ca.issue(t, "secondary")), 0)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	accepted := make(chan Conn, 4)
	go func() {
		for {
			c, err := ln.Accept(ctx)
			if err != nil {
				return
			}
			go func() {
				if Handshake(ctx, c) == nil {
					accepted <- c
				}
			}()
		}
	}()
	rawClient(t, ln) // connects, sends nothing
	cert := ca.issue(t, "primary")
	// Well below the listener's 10 s handshake limit for the idle one.
	c, err := (&TCPDialer{Addr: ln.Addr(), TLS: clientTLS(ca, &cert), Timeout: 3 * time.Second}).Dial(context.Background())
	if err != nil {
		t.Fatalf("a real primary could not connect while an idle client held the listener: %v", err)
	}
	defer c.Close()
	select {
	case s := <-accepted:
		s.Close()
	case <-time.After(deadlineTCP):
		t.Fatal("listener did not hand over the real primary's connection")
	}
}

const deadlineTCP = 20 * time.Second
