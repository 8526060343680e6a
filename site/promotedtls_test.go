package site

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/pem"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"testing"

	"duplex/control"
	"duplex/internal/testpki"
	"duplex/tlsconf"
)

// TestPromotedControlServesHTTPS: a promoted secondary serves its control
// address over HTTPS with the secondary's control_tls_cert and
// control_tls_key, as the secondary did, so the clients that check it
// against control_tls_ca go on reading it after the promotion; plain HTTP
// and a client trusting another CA are refused.
func TestPromotedControlServesHTTPS(t *testing.T) {
	cfg := linkConfig(t)
	pki := t.TempDir()
	ca, other := testpki.NewCA(t, pki, "control-ca"), testpki.NewCA(t, pki, "other-ca")
	cfg.Secondary.NBD, cfg.Secondary.Control = "127.0.0.1:0", "127.0.0.1:0"
	cfg.Secondary.ControlTLSCert, cfg.Secondary.ControlTLSKey = ca.Issue(t, pki, "secondary-control", testpki.Server)
	cfg.Secondary.ControlTLSCA = ca.Path
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	firstStart(t, cfg)
	if _, _, _, err := Promote(context.Background(), cfg, quiet, nil); err != nil {
		t.Fatal(err)
	}
	p, err := OpenPromoted(cfg, quiet, PromotedOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("the promoted site stopped: %v", err)
		}
	}()
	addr := p.ControlAddr()

	clientTLS, err := tlsconf.ControlClient(cfg, "secondary")
	if err != nil {
		t.Fatal(err)
	}
	st, err := control.Fetch(ctx, control.Endpoint{Addr: addr, TLS: clientTLS})
	if err != nil {
		t.Fatalf("the promoted site's status over HTTPS: %v", err)
	}
	if st.Role != "primary" || st.PromotedAt == "" {
		t.Errorf("the promoted site's status: role %q, promoted_at %q; want primary, promoted", st.Role, st.PromotedAt)
	}

	// The certificate served is the one in control_tls_cert.
	conn, err := tls.Dial("tcp", addr, clientTLS)
	if err != nil {
		t.Fatal(err)
	}
	served := conn.ConnectionState().PeerCertificates[0].Raw
	conn.Close()
	pemBytes, err := os.ReadFile(cfg.Secondary.ControlTLSCert)
	if err != nil {
		t.Fatal(err)
	}
	if block, _ := pem.Decode(pemBytes); block == nil || !bytes.Equal(block.Bytes, served) {
		t.Error("the promoted site's control address serves another certificate than control_tls_cert")
	}

	if _, err := control.Fetch(ctx, control.Endpoint{Addr: addr}); err == nil || !strings.Contains(err.Error(), "serves HTTPS only") {
		t.Errorf("plain HTTP to the promoted site: %v, want a refusal saying it serves HTTPS only", err)
	}
	resp, err := http.Get("http://" + addr + "/v1/status")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || strings.Contains(string(body), "primary") {
		t.Errorf("plain GET /v1/status: %s %q, want 400 and no status", resp.Status, body)
	}
	wrongCA := &tls.Config{RootCAs: other.Pool(), ServerName: clientTLS.ServerName, MinVersion: tls.VersionTLS12}
	if _, err := control.Fetch(ctx, control.Endpoint{Addr: addr, TLS: wrongCA}); err == nil || !strings.Contains(err.Error(), "unknown authority") {
		t.Errorf("a client trusting another CA: %v, want the certificate refused", err)
	}
}
