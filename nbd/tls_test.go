package nbd

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"duplex/internal/testpki"
)

// testPKI is a throwaway certificate authority (package testpki's) with a
// server certificate for 127.0.0.1 and localhost and a client certificate,
// written as PEM in the file names qemu's tls-creds-x509 and libnbd's
// tls-certificates directory look for: ca-cert.pem, server-cert.pem,
// server-key.pem, client-cert.pem, client-key.pem.
type testPKI struct {
	dir  string
	pool *x509.CertPool
}

func newTestPKI(t testing.TB, name string) *testPKI {
	t.Helper()
	p := &testPKI{dir: t.TempDir()}
	ca := testpki.NewCA(t, p.dir, name)
	p.pool = ca.Pool()
	moves := [][2]string{{ca.Path, "ca-cert.pem"}}
	for _, role := range []struct {
		name string
		use  testpki.Use
	}{{"server", testpki.Server}, {"client", testpki.Client}} {
		cert, key := ca.Issue(t, p.dir, name+" "+role.name, role.use)
		moves = append(moves, [2]string{cert, role.name + "-cert.pem"}, [2]string{key, role.name + "-key.pem"})
	}
	for _, m := range moves {
		if err := os.Rename(m[0], filepath.Join(p.dir, m[1])); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

func (p *testPKI) keyPair(t testing.TB, role string) tls.Certificate {
	t.Helper()
	c, err := tls.LoadX509KeyPair(filepath.Join(p.dir, role+"-cert.pem"), filepath.Join(p.dir, role+"-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// serverTLS requires client certificates signed by the CA, as the site
// configures it.
func (p *testPKI) serverTLS(t testing.TB) *tls.Config {
	return &tls.Config{
		Certificates: []tls.Certificate{p.keyPair(t, "server")},
		ClientCAs:    p.pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS12,
	}
}

// clientTLS trusts server's CA and presents the client certificate of p.
func (p *testPKI) clientTLS(t testing.TB, server *testPKI) *tls.Config {
	return &tls.Config{
		Certificates: []tls.Certificate{p.keyPair(t, "client")},
		RootCAs:      server.pool,
		ServerName:   "127.0.0.1",
	}
}

// tlsServer serves a 1 MiB "disk" and a 4 KiB read-only "ro" with TLS
// required.
func tlsServer(t *testing.T, pki *testPKI) (addr string, disk *memExport) {
	disk = newMemExport(1 << 20)
	ro := newMemExport(4096)
	ro.ro = true
	return startServer(t, &Server{Exports: exportMap{"disk": disk, "ro": ro}, TLS: pki.serverTLS(t)}), disk
}

// upgrade sends NBD_OPT_STARTTLS on r and switches it to TLS.
func (r *rawClient) upgrade(conf *tls.Config) error {
	r.t.Helper()
	r.sendOpt(optStartTLS, nil)
	if typ, data := r.optReply(optStartTLS); typ != repAck {
		r.t.Fatalf("NBD_OPT_STARTTLS: reply %#x %q, want ACK", typ, data)
	}
	tc := tls.Client(r.nc, conf)
	if err := tc.Handshake(); err != nil {
		return err
	}
	r.nc, r.br = tc, bufio.NewReader(tc)
	return nil
}

func TestTLSForced(t *testing.T) {
	pki := newTestPKI(t, "duplex test CA")
	addr, disk := tlsServer(t, pki)

	t.Run("options before STARTTLS", func(t *testing.T) {
		r := rawDial(t, addr)
		r.hello(flagCFixedNewstyle | flagCNoZeroes)
		for _, o := range []struct {
			opt  uint32
			data []byte
		}{{optList, nil}, {optInfo, infoData("disk")}, {optGo, infoData("disk")}, {optStructuredReply, nil}, {0xdead, nil}} {
			if typ, _ := r.optReply(sendAnd(r, o.opt, o.data)); typ != repErrTLSReqd {
				t.Errorf("option %d before TLS: reply %#x, want NBD_REP_ERR_TLS_REQD", o.opt, typ)
			}
		}
		r.sendOpt(optStartTLS, []byte("x"))
		if typ, _ := r.optReply(optStartTLS); typ != repErrInvalid {
			t.Errorf("NBD_OPT_STARTTLS with data: reply %#x, want NBD_REP_ERR_INVALID", typ)
		}
		// Still in plaintext, and still able to upgrade.
		if err := r.upgrade(pki.clientTLS(t, pki)); err != nil {
			t.Fatal(err)
		}
		r.sendOpt(optStartTLS, nil)
		if typ, _ := r.optReply(optStartTLS); typ != repErrInvalid {
			t.Errorf("second NBD_OPT_STARTTLS: reply %#x, want NBD_REP_ERR_INVALID", typ)
		}
		r.sendOpt(optList, nil)
		for {
			typ, _ := r.optReply(optList)
			if typ == repAck {
				break
			}
			if typ != repServer {
				t.Fatalf("NBD_OPT_LIST inside TLS: reply %#x", typ)
			}
		}
		r.sendOpt(optGo, infoData("disk"))
		if final, infos := r.infoReplies(optGo); final != repAck || len(infos[infoExport]) != 10 {
			t.Fatalf("NBD_OPT_GO inside TLS: reply %#x", final)
		}
		r.request(0, CmdWrite, 1, 4096, 5, []byte("hello"))
		r.expectReply(1, 0)
		r.request(0, CmdRead, 2, 4096, 5, nil)
		r.expectReply(2, 0)
		if got := r.read(5); string(got) != "hello" {
			t.Errorf("read back %q", got)
		}
		if got := disk.snapshot(4096, 5); string(got) != "hello" {
			t.Errorf("export holds %q", got)
		}
	})

	t.Run("abort before STARTTLS", func(t *testing.T) {
		r := rawDial(t, addr)
		r.hello(flagCFixedNewstyle)
		r.sendOpt(optAbort, nil)
		if typ, _ := r.optReply(optAbort); typ != repAck {
			t.Errorf("NBD_OPT_ABORT before TLS: reply %#x, want ACK", typ)
		}
		r.expectClosed()
	})

	t.Run("export name before STARTTLS", func(t *testing.T) {
		r := rawDial(t, addr)
		r.hello(flagCFixedNewstyle | flagCNoZeroes)
		r.sendOpt(optExportName, []byte("disk"))
		r.expectClosed()
	})

	t.Run("plain newstyle client", func(t *testing.T) {
		r := rawDial(t, addr)
		r.hello(0)
		r.expectClosed()
	})

	t.Run("client", func(t *testing.T) {
		c, err := DialTLS(addr, "disk", pki.clientTLS(t, pki))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		data := bytes.Repeat([]byte{0xa5}, 64<<10)
		if err := c.WriteAtFUA(data, 128<<10); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, len(data))
		if err := c.ReadAt(got, 128<<10); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, data) || !bytes.Equal(disk.snapshot(128<<10, len(data)), data) {
			t.Fatal("data read back over TLS differs from what was written")
		}
		ro, err := DialTLS(addr, "ro", pki.clientTLS(t, pki))
		if err != nil {
			t.Fatal(err)
		}
		defer ro.Close()
		if err := ro.WriteAt([]byte("x"), 0); !errors.Is(err, EPERM) {
			t.Errorf("write to read-only export over TLS: %v, want EPERM", err)
		}
	})

	t.Run("plaintext client refused", func(t *testing.T) {
		_, err := Dial(addr, "disk")
		if err == nil || !strings.Contains(err.Error(), "0x80000005") {
			t.Fatalf("plaintext client: %v, want NBD_OPT_GO refused with NBD_REP_ERR_TLS_REQD", err)
		}
	})

	t.Run("no client certificate refused", func(t *testing.T) {
		conf := pki.clientTLS(t, pki)
		conf.Certificates = nil
		if c, err := DialTLS(addr, "disk", conf); err == nil {
			// TLS 1.3 reports the client certificate's refusal on the
			// first read after the handshake.
			if err := c.ReadAt(make([]byte, 1), 0); err == nil {
				t.Fatal("client without a certificate was served")
			}
			c.Close()
		}
	})

	t.Run("client certificate from another CA refused", func(t *testing.T) {
		other := newTestPKI(t, "other CA")
		c, err := DialTLS(addr, "disk", other.clientTLS(t, pki))
		if err == nil {
			err = c.ReadAt(make([]byte, 1), 0)
			c.Close()
		}
		if err == nil {
			t.Fatal("client with a certificate from another CA was served")
		}
		t.Logf("refused: %v", err)
	})

	t.Run("server certificate from another CA refused by the client", func(t *testing.T) {
		other := newTestPKI(t, "other CA")
		if c, err := DialTLS(addr, "disk", pki.clientTLS(t, other)); err == nil {
			c.Close()
			t.Fatal("client accepted a server certificate its CA did not sign")
		}
	})
}

// sendAnd sends an option and returns it, for reading its reply.
func sendAnd(r *rawClient, opt uint32, data []byte) uint32 {
	r.t.Helper()
	r.sendOpt(opt, data)
	return opt
}

// TestTLSHandshakeBuffered: a client that pipelines its ClientHello right
// behind NBD_OPT_STARTTLS, before reading the ACK, still gets TLS: the
// server hands what it already buffered to the TLS layer.
func TestTLSHandshakeBuffered(t *testing.T) {
	pki := newTestPKI(t, "duplex test CA")
	addr, _ := tlsServer(t, pki)
	r := rawDial(t, addr)
	r.hello(flagCFixedNewstyle | flagCNoZeroes)

	opt := binary.BigEndian.AppendUint64(nil, optMagic)
	opt = binary.BigEndian.AppendUint32(opt, optStartTLS)
	opt = binary.BigEndian.AppendUint32(opt, 0)
	pc := &pipelinedConn{Conn: r.nc, prefix: opt}
	tc := tls.Client(pc, pki.clientTLS(t, pki))
	if err := tc.Handshake(); err != nil {
		t.Fatalf("handshake pipelined behind NBD_OPT_STARTTLS: %v", err)
	}
	if !pc.acked {
		t.Fatal("no ACK read before the TLS records")
	}
	r.nc, r.br = tc, bufio.NewReader(tc)
	r.sendOpt(optGo, infoData("disk"))
	if final, _ := r.infoReplies(optGo); final != repAck {
		t.Fatalf("NBD_OPT_GO inside TLS: reply %#x", final)
	}
}

// pipelinedConn sends prefix (NBD_OPT_STARTTLS) glued to the first Write
// (the ClientHello), and reads and checks the option's ACK before the
// first TLS record.
type pipelinedConn struct {
	net.Conn
	prefix []byte
	acked  bool
}

func (p *pipelinedConn) Write(b []byte) (int, error) {
	if p.prefix != nil {
		msg := append(p.prefix, b...)
		p.prefix = nil
		if _, err := p.Conn.Write(msg); err != nil {
			return 0, err
		}
		return len(b), nil
	}
	return p.Conn.Write(b)
}

func (p *pipelinedConn) Read(b []byte) (int, error) {
	if !p.acked {
		var h [20]byte
		if _, err := io.ReadFull(p.Conn, h[:]); err != nil {
			return 0, err
		}
		if binary.BigEndian.Uint64(h[:]) != optReplyMagic || binary.BigEndian.Uint32(h[12:]) != repAck {
			return 0, fmt.Errorf("NBD_OPT_STARTTLS reply % x, want ACK", h)
		}
		p.acked = true
	}
	return p.Conn.Read(b)
}
