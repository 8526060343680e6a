package tlsconf

import (
	"crypto/tls"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"duplex/config"
	"duplex/internal/testpki"
)

// TestNone: a config without TLS keys has no TLS configurations.
func TestNone(t *testing.T) {
	c, err := config.Load("../config/testdata/example.toml")
	if err != nil {
		t.Fatal(err)
	}
	for name, get := range map[string]func(*config.Config) (*tls.Config, error){"PrimaryLink": PrimaryLink, "SecondaryLink": SecondaryLink,
		"PrimaryNBD": PrimaryNBD, "SecondaryNBD": SecondaryNBD, "Etcd": Etcd} {
		if tc, err := get(c); tc != nil || err != nil {
			t.Errorf("%s without settings = %v, %v; want nil, nil", name, tc, err)
		}
	}
}

func TestTLS(t *testing.T) {
	dir := testpki.SitesDir(t)
	c, err := config.Parse([]byte(testpki.SitesConfig), dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.CheckSecurity(); err != nil {
		t.Errorf("TLS link refused: %v", err)
	}
	client, err := PrimaryLink(c)
	if err != nil {
		t.Fatal(err)
	}
	server, err := SecondaryLink(c)
	if err != nil {
		t.Fatal(err)
	}
	if client.MinVersion != tls.VersionTLS13 || server.MinVersion != tls.VersionTLS13 {
		t.Errorf("MinVersion client %x server %x, want TLS 1.3", client.MinVersion, server.MinVersion)
	}
	if client.ServerName != "10.0.0.1" || client.GetClientCertificate == nil || client.RootCAs == nil {
		t.Errorf("client config: ServerName %q, no client certificate, RootCAs %v", client.ServerName, client.RootCAs)
	}
	if server.ClientAuth != tls.RequireAndVerifyClientCert || server.ClientCAs == nil || len(server.Certificates) != 1 {
		t.Errorf("server config: ClientAuth %v, ClientCAs %v, %d certificates", server.ClientAuth, server.ClientCAs, len(server.Certificates))
	}
	handshake(t, client, server, "")

	// tls_server_name overrides the host of primary.secondary.
	c.Primary.ServerName = "secondary.example"
	client, err = PrimaryLink(c)
	if err != nil || client.ServerName != "secondary.example" {
		t.Fatalf("ServerName = %q, %v", client.ServerName, err)
	}
	handshake(t, client, server, "")
	c.Primary.ServerName = "primary.example" // the wrong certificate's name
	client, _ = PrimaryLink(c)
	handshake(t, client, server, "certificate")

	// A primary without a certificate is refused by the secondary.
	noCert := client.Clone()
	noCert.ServerName = "secondary.example"
	noCert.Certificates, noCert.GetClientCertificate = nil, nil
	handshake(t, noCert, server, "certificate")

	// NBD: the primary's server certificate, and client certificates
	// signed by nbd_tls_ca required.
	nbdServer, err := PrimaryNBD(c)
	if err != nil {
		t.Fatal(err)
	}
	if nbdServer.ClientAuth != tls.RequireAndVerifyClientCert || nbdServer.ClientCAs == nil || len(nbdServer.Certificates) != 1 ||
		nbdServer.MinVersion != tls.VersionTLS12 {
		t.Errorf("NBD server config: ClientAuth %v, ClientCAs %v, %d certificates, MinVersion %x",
			nbdServer.ClientAuth, nbdServer.ClientCAs, len(nbdServer.Certificates), nbdServer.MinVersion)
	}
	secCert, err := tls.LoadX509KeyPair(filepath.Join(dir, "pki", "secondary.crt"), filepath.Join(dir, "pki", "secondary.key"))
	if err != nil {
		t.Fatal(err)
	}
	nbdClient := &tls.Config{Certificates: []tls.Certificate{secCert}, RootCAs: client.RootCAs, ServerName: "primary.example"}
	handshake(t, nbdClient, nbdServer, "")
	nbdAnon := nbdClient.Clone()
	nbdAnon.Certificates = nil
	handshake(t, nbdAnon, nbdServer, "certificate")
	if tc, err := SecondaryNBD(c); tc != nil || err != nil {
		t.Errorf("SecondaryNBD without settings = %v, %v; want nil, nil", tc, err)
	}

	// The control address: a server certificate, no client certificate
	// asked for, and clients checking it against control_tls_ca and the
	// host of control or control_tls_server_name.
	if tc, err := ControlServer(c, "primary"); tc != nil || err != nil {
		t.Errorf("ControlServer without settings = %v, %v; want nil, nil", tc, err)
	}
	if tc, err := ControlClient(c, "secondary"); tc != nil || err != nil {
		t.Errorf("ControlClient without settings = %v, %v; want nil, nil", tc, err)
	}
	c.Primary.Control = "10.0.0.1:7401"
	c.Primary.ControlTLSCert, c.Primary.ControlTLSKey = filepath.Join(dir, "pki", "primary.crt"), filepath.Join(dir, "pki", "primary.key")
	c.Primary.ControlTLSCA = filepath.Join(dir, "pki", "ca.crt")
	ctlServer, err := ControlServer(c, "primary")
	if err != nil {
		t.Fatal(err)
	}
	if ctlServer.ClientAuth != tls.NoClientCert || len(ctlServer.Certificates) != 1 {
		t.Errorf("control server config: ClientAuth %v, %d certificates", ctlServer.ClientAuth, len(ctlServer.Certificates))
	}
	ctlClient, err := ControlClient(c, "primary")
	if err != nil {
		t.Fatal(err)
	}
	if ctlClient.ServerName != "10.0.0.1" || ctlClient.RootCAs == nil || ctlClient.Certificates != nil {
		t.Errorf("control client config: ServerName %q, RootCAs %v, %d certificates", ctlClient.ServerName, ctlClient.RootCAs, len(ctlClient.Certificates))
	}
	handshake(t, ctlClient, ctlServer, "")
	c.Primary.ControlTLSServerName = "secondary.example" // not in the primary's certificate
	ctlClient, _ = ControlClient(c, "primary")
	handshake(t, ctlClient, ctlServer, "certificate is valid for")
	c.Primary.ControlTLSServerName = "primary.example"
	ctlClient, _ = ControlClient(c, "primary")
	handshake(t, ctlClient, ctlServer, "")
	c.Primary.ControlTLSCA = ""
	if ctlClient, err = ControlClient(c, "primary"); err != nil || ctlClient.RootCAs != nil {
		t.Errorf("without control_tls_ca: RootCAs %v, %v; want the system's roots (nil)", ctlClient.RootCAs, err)
	}

	// Missing or unusable files are named.
	ctl := func(c *config.Config) {
		c.Secondary.Control = "127.0.0.1:7403"
		c.Secondary.ControlTLSCert, c.Secondary.ControlTLSKey = filepath.Join(dir, "pki", "secondary.crt"), filepath.Join(dir, "pki", "secondary.key")
		c.Secondary.ControlTLSCA = filepath.Join(dir, "pki", "ca.crt")
	}
	ctlServerTLS := func(c *config.Config) (*tls.Config, error) { return ControlServer(c, "secondary") }
	ctlClientTLS := func(c *config.Config) (*tls.Config, error) { return ControlClient(c, "secondary") }
	for _, tc := range []struct {
		set   func(c *config.Config)
		get   func(c *config.Config) (*tls.Config, error)
		field string
		file  string
	}{
		{func(c *config.Config) { c.Primary.TLSCert = filepath.Join(dir, "pki", "gone.crt") }, PrimaryLink, "primary.tls_cert", "gone.crt"},
		{func(c *config.Config) { c.Primary.TLSKey = filepath.Join(dir, "pki", "gone.key") }, PrimaryLink, "primary.tls_key", "gone.key"},
		{func(c *config.Config) { c.Primary.TLSCA = filepath.Join(dir, "pki", "gone-ca.crt") }, PrimaryLink, "primary.tls_ca", "gone-ca.crt"},
		{func(c *config.Config) { c.Secondary.TLSCA = filepath.Join(dir, "pki", "primary.key") }, SecondaryLink, "secondary.tls_ca", "primary.key"},
		{func(c *config.Config) { c.Secondary.TLSKey = filepath.Join(dir, "pki", "primary.key") }, SecondaryLink, "secondary.tls_cert/tls_key", "primary.key"},
		{func(c *config.Config) { c.Secondary.TLSCert = filepath.Join(dir, "pki", "nope.crt") }, SecondaryLink, "secondary.tls_cert", "nope.crt"},
		{func(c *config.Config) { c.Primary.NBDTLSCert = filepath.Join(dir, "pki", "gone.crt") }, PrimaryNBD, "primary.nbd_tls_cert", "gone.crt"},
		{func(c *config.Config) { c.Primary.NBDTLSKey = filepath.Join(dir, "pki", "gone.key") }, PrimaryNBD, "primary.nbd_tls_key", "gone.key"},
		{func(c *config.Config) { c.Primary.NBDTLSCA = filepath.Join(dir, "pki", "primary.key") }, PrimaryNBD, "primary.nbd_tls_ca", "primary.key"},
		{func(c *config.Config) { c.Primary.NBDTLSKey = filepath.Join(dir, "pki", "secondary.key") }, PrimaryNBD, "primary.nbd_tls_cert/nbd_tls_key", "secondary.key"},
		{func(c *config.Config) {
			c.Secondary.NBD = "0.0.0.0:10810"
			c.Secondary.NBDTLSCert, c.Secondary.NBDTLSKey = filepath.Join(dir, "pki", "secondary.crt"), filepath.Join(dir, "pki", "secondary.key")
			c.Secondary.NBDTLSCA = filepath.Join(dir, "pki", "none.crt")
		}, SecondaryNBD, "secondary.nbd_tls_ca", "none.crt"},
		{func(c *config.Config) { ctl(c); c.Secondary.ControlTLSCert = filepath.Join(dir, "pki", "gone.crt") }, ctlServerTLS, "secondary.control_tls_cert", "gone.crt"},
		{func(c *config.Config) { ctl(c); c.Secondary.ControlTLSKey = filepath.Join(dir, "pki", "gone.key") }, ctlServerTLS, "secondary.control_tls_key", "gone.key"},
		{func(c *config.Config) { ctl(c); c.Secondary.ControlTLSKey = filepath.Join(dir, "pki", "primary.key") }, ctlServerTLS,
			"secondary.control_tls_cert/control_tls_key", "primary.key"},
		{func(c *config.Config) { ctl(c); c.Secondary.ControlTLSCA = filepath.Join(dir, "pki", "gone-ca.crt") }, ctlClientTLS, "secondary.control_tls_ca", "gone-ca.crt"},
		{func(c *config.Config) { ctl(c); c.Secondary.ControlTLSCA = filepath.Join(dir, "pki", "secondary.key") }, ctlClientTLS, "secondary.control_tls_ca", "secondary.key"},
	} {
		c, err := config.Parse([]byte(testpki.SitesConfig), dir)
		if err != nil {
			t.Fatal(err)
		}
		tc.set(c)
		cfg, err := tc.get(c)
		if err == nil || !strings.HasPrefix(err.Error(), tc.field+": ") || !strings.Contains(err.Error(), tc.file) {
			t.Errorf("got %v, %v; want an error naming %s and %s", cfg, err, tc.field, tc.file)
		}
	}
}

// handshake runs a TLS handshake over loopback TCP and checks it succeeds
// (wantErr == "") or fails with an error containing wantErr. (Not a
// net.Pipe: it has no buffer, so a client that rejects the server's flight
// mid-way blocks sending its alert while the server blocks sending the rest.)
func handshake(t *testing.T, client, server *tls.Config, wantErr string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	a, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	done := make(chan error, 1)
	go func() {
		s := tls.Server(b, server)
		err := s.Handshake()
		if err == nil {
			// Tell the client it was accepted.
			_, err = s.Write([]byte{1})
		}
		b.Close()
		done <- err
	}()
	cl := tls.Client(a, client)
	cerr := cl.Handshake()
	if cerr == nil {
		// In TLS 1.3 the server's verdict on the client certificate
		// arrives after the client's handshake: read it.
		_ = a.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, cerr = cl.Read(make([]byte, 1))
	}
	a.Close()
	serr := <-done
	if wantErr == "" {
		if cerr != nil || serr != nil {
			t.Errorf("handshake failed: client %v, server %v", cerr, serr)
		}
		return
	}
	if cerr == nil && serr == nil {
		t.Errorf("handshake succeeded, want a failure about %q", wantErr)
		return
	}
	msg := ""
	if cerr != nil {
		msg += cerr.Error()
	}
	if serr != nil {
		msg += " " + serr.Error()
	}
	if !strings.Contains(msg, wantErr) {
		t.Errorf("handshake failed with %q, want %q", msg, wantErr)
	}
}
