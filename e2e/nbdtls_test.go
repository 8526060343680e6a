package e2e

import (
	"context"
	"crypto/tls"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"duplex/config"
	"duplex/internal/testenv"
	"duplex/internal/testpki"
	"duplex/nbd"
	"duplex/workload"
)

// TestNBDTLS runs both daemons with nbd_tls_cert, nbd_tls_key and nbd_tls_ca
// set: the primary's exports and the secondary's read-only exports require
// TLS and a client certificate signed by the configured CA. Clients with
// the right certificate (Go's, qemu-io, nbdinfo) read and write; a plaintext
// client and one whose certificate another CA signed are refused; and the
// writes that get in replicate with their dependencies, checked through the
// secondary's TLS export while they run and byte for byte at the end.
func TestNBDTLS(t *testing.T) {
	t.Parallel()
	pkiDir := t.TempDir()
	ca := testpki.NewCA(t, pkiDir, "nbd-ca")
	other := testpki.NewCA(t, pkiDir, "other-ca")
	srvCert, srvKey := ca.Issue(t, pkiDir, "nbd-server", testpki.Server)
	cliCert, cliKey := ca.Issue(t, pkiDir, "nbd-client", testpki.Client)
	badCert, badKey := other.Issue(t, pkiDir, "impostor", testpki.Client)

	s := newSession(t, sessionOpts{volSize: 16 << 20, edit: func(c *config.Config) {
		c.Primary.NBDTLSCert, c.Primary.NBDTLSKey, c.Primary.NBDTLSCA = srvCert, srvKey, ca.Path
		c.Secondary.NBDTLSCert, c.Secondary.NBDTLSKey, c.Secondary.NBDTLSCA = srvCert, srvKey, ca.Path
	}})
	s.start()

	good := nbdClientTLS(t, ca, cliCert, cliKey)
	bad := nbdClientTLS(t, ca, badCert, badKey)
	for _, addr := range []string{s.cfg.Primary.NBD, s.cfg.Secondary.NBD} {
		if c, err := nbd.Dial(addr, "vol1"); err == nil {
			c.Close()
			t.Fatalf("plaintext client served by %s", addr)
		} else {
			t.Logf("plaintext client at %s: %v", addr, err)
		}
		if c, err := nbd.DialTLS(addr, "vol1", bad); err == nil {
			// TLS 1.3: the server's verdict on the client certificate
			// arrives with the first read.
			err = c.ReadAt(make([]byte, 1), 0)
			c.Close()
			if err == nil {
				t.Fatalf("client with another CA's certificate served by %s", addr)
			}
		}
	}

	// Dependent writes over TLS, four clients over every volume, checked
	// through the secondary's TLS exports while they run.
	names := s.cfg.VolumeNames()
	lay := workload.Layout{Volumes: len(names), BlocksPerVolume: 256, Clients: 4}
	target := &nbdTarget{perClient: lay.BlocksPerVolume / lay.Clients}
	for range lay.Clients {
		var cs []*nbd.Client
		for _, n := range names {
			c, err := nbd.DialTLS(s.cfg.Primary.NBD, n, good)
			if err != nil {
				t.Fatal(err)
			}
			cs = append(cs, c)
		}
		target.conns = append(target.conns, cs)
	}
	defer target.close()
	// Each pass of a check opens its connections anew: a connection reads
	// the group current when it opened.
	open := func() (workload.Reader, func()) {
		var readers []*nbd.Client
		for _, n := range names {
			c, err := nbd.DialTLS(s.cfg.Secondary.NBD, n, good)
			if err != nil {
				t.Fatal(err)
			}
			readers = append(readers, c)
		}
		return func(v int, b []byte, off int64) error { return readers[v].ReadAt(b, off) }, func() {
			for _, c := range readers {
				c.Close()
			}
		}
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := workload.Run(ctx, lay, target, 400, 11)
		done <- err
	}()
	checks := 0
	for running := true; running; {
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("workload over TLS: %v", err)
			}
			running = false
		default:
		}
		vs, err := checkPinnedCopy(lay, open)
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range vs[:min(len(vs), 10)] {
			t.Errorf("while writing: %s", v)
		}
		if len(vs) > 0 {
			t.Fatalf("%d dependent-write violations on the secondary", len(vs))
		}
		checks++
	}
	if got := target.acked.Load(); got != int64(lay.Clients*400) {
		t.Fatalf("%d writes acknowledged over TLS, want %d", got, lay.Clients*400)
	}

	tools := t.TempDir()
	for _, f := range []struct{ from, to string }{{ca.Path, "ca-cert.pem"}, {cliCert, "client-cert.pem"}, {cliKey, "client-key.pem"}} {
		b, err := os.ReadFile(f.from)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(tools, f.to), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	t.Run("qemu-io", func(t *testing.T) {
		testenv.NeedTool(t, "qemu-io", "qemu-utils")
		qemuIOTLS(t, s.cfg.Primary.NBD, "vol3", tools, false, "write -P 0x6b 8M 1M", "read -P 0x6b 8M 1M", "flush")
		eventually(t, 30*time.Second, "qemu-io's write to reach the secondary", func() bool {
			out, err := testenv.RunTool(t, "qemu-io", qemuTLSArgs(s.cfg.Secondary.NBD, "vol3", tools, true, "read -P 0x6b 8M 1M")...)
			return err == nil && !strings.Contains(out, "Pattern verification failed") && !strings.Contains(out, "failed")
		})
		out, err := testenv.RunTool(t, "qemu-io", "-f", "raw", nbdURI(s.cfg.Primary.NBD, "vol3"), "-c", "write -P 1 8M 4k")
		if err == nil && !strings.Contains(out, "failed") {
			t.Errorf("qemu-io without TLS was served:\n%s", out)
		}
	})
	t.Run("nbdinfo", func(t *testing.T) {
		testenv.NeedTool(t, "nbdinfo", "libnbd-bin")
		for _, site := range []struct {
			addr     string
			readOnly bool
		}{{s.cfg.Primary.NBD, false}, {s.cfg.Secondary.NBD, true}} {
			info := testenv.NBDInfo(t, "nbds://"+site.addr+"/vol2?tls-certificates="+tools)
			if len(info.Exports) != 1 || info.Exports[0].Size != 16<<20 || info.Exports[0].ReadOnly != site.readOnly {
				t.Errorf("nbdinfo over TLS at %s: %+v", site.addr, info)
			}
			if out, err := testenv.RunTool(t, "nbdinfo", nbdURI(site.addr, "vol2")); err == nil {
				t.Errorf("nbdinfo without TLS was served by %s:\n%s", site.addr, out)
			}
		}
	})

	s.drainPrimary()
	read, closeReaders := open()
	defer closeReaders()
	vs, err := workload.Check(lay, read)
	if err != nil {
		t.Fatal(err)
	}
	if len(vs) > 0 {
		t.Fatalf("after the drain: %d dependent-write violations, first %s", len(vs), vs[0])
	}
	img, _, err := workload.ReadImage(lay, read)
	if err != nil {
		t.Fatal(err)
	}
	written, _ := img.Stats()
	t.Logf("%d writes over TLS, %d checks of the secondary while they ran; it holds %d blocks", target.acked.Load(), checks, written)
	if written == 0 {
		t.Fatal("the secondary holds none of the writes")
	}
	s.stopSecondary()
	s.assertImagesEqual()
}

// nbdClientTLS trusts ca for the server and presents certFile.
func nbdClientTLS(t *testing.T, ca *testpki.CA, certFile, keyFile string) *tls.Config {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: ca.Pool(), ServerName: "127.0.0.1"}
}

// qemuTLSArgs opens export at addr over TLS with qemu's tls-creds-x509 reading
// ca-cert.pem, client-cert.pem and client-key.pem from dir.
func qemuTLSArgs(addr, export, dir string, readOnly bool, cmds ...string) []string {
	host, port, _ := net.SplitHostPort(addr)
	args := []string{"--object", "tls-creds-x509,id=tls0,endpoint=client,dir=" + dir}
	if readOnly {
		args = append(args, "-r")
	}
	args = append(args, "--image-opts", "driver=nbd,host="+host+",port="+port+",export="+export+",tls-creds=tls0")
	for _, c := range cmds {
		args = append(args, "-c", c)
	}
	return args
}

func qemuIOTLS(t *testing.T, addr, export, dir string, readOnly bool, cmds ...string) {
	t.Helper()
	out := testenv.MustRunTool(t, "qemu-io", qemuTLSArgs(addr, export, dir, readOnly, cmds...)...)
	if strings.Contains(out, "Pattern verification failed") || strings.Contains(strings.ToLower(out), "error") ||
		strings.Contains(out, "failed") {
		t.Fatalf("qemu-io over TLS at %s:\n%s", addr, out)
	}
}
