package control

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"duplex/internal/testenv"
)

// TestWhatAnswersAtTheAddressIsSaid: a status asked where no duplex control
// address answers says what answered, in words that point at the address:
// a plain HTTP site asked over HTTPS (an https:// URL, or --ca), an HTTP
// server that serves no status (404, nothing in its body), an address
// that takes the connection and resets it, as the link's listen address
// does. Before: "http: server gave HTTP response to HTTPS client", "404
// Not Found:" with nothing after the colon, "connection reset by peer".
func TestWhatAnswersAtTheAddressIsSaid(t *testing.T) {
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"role":"primary"}`)
	}))
	defer plain.Close()
	notFound := httptest.NewServer(http.NotFoundHandler())
	defer notFound.Close()
	empty404 := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNotFound) }))
	defer empty404.Close()
	resets := testenv.ServeConns(t, func(c net.Conn) {
		// Read what is sent, as the link reads a frame it then refuses,
		// and close with it unread: a reset.
		c.Read(make([]byte, 4))
		c.(*net.TCPConn).SetLinger(0)
	})
	host := func(s *httptest.Server) string { return strings.TrimPrefix(s.URL, "http://") }
	for _, tc := range []struct {
		name   string
		at     Endpoint
		want   []string
		scheme bool // errors.Is ErrWrongScheme
	}{
		{"plain HTTP asked over HTTPS", Endpoint{Addr: host(plain), TLS: &tls.Config{}}, []string{"serves plain HTTP", "http://" + host(plain)}, true},
		{"a 404 with a body", Endpoint{Addr: host(notFound)}, []string{"404 Not Found", "serves no duplex status", "not a control address"}, false},
		{"a 404 with none", Endpoint{Addr: host(empty404)}, []string{"404 Not Found", "serves no duplex status"}, false},
		{"a reset", Endpoint{Addr: resets}, []string{"reset", "without an HTTP answer", "secondary.listen"}, false},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := Fetch(ctx, tc.at)
		cancel()
		if err == nil {
			t.Errorf("%s: no error", tc.name)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: %v; want it to say %q", tc.name, err, w)
			}
		}
		if strings.HasSuffix(err.Error(), ":") || strings.Contains(err.Error(), "gave HTTP response to HTTPS client") {
			t.Errorf("%s: %v; want it said in words of its own, nothing left dangling", tc.name, err)
		}
		if errors.Is(err, ErrWrongScheme) != tc.scheme {
			t.Errorf("%s: %v; errors.Is ErrWrongScheme %v, want %v", tc.name, err, !tc.scheme, tc.scheme)
		}
	}
}

// TestAnAddressNothingListensOnIsNamedOnce: a call to an address where
// nothing listens says what it called and why it failed, the URL once.
// Before: status from http://ADDR: Get "http://ADDR/v1/status": dial tcp
// ADDR: connect: connection refused.
func TestAnAddressNothingListensOnIsNamedOnce(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = Fetch(ctx, Endpoint{Addr: addr})
	if err == nil || !strings.Contains(err.Error(), "connection refused") || strings.Contains(err.Error(), "/v1/status") || strings.Count(err.Error(), addr) > 2 {
		t.Errorf("a status from %s, where nothing listens: %v; want the refusal, the URL once", addr, err)
	}
	_, err = Drill(ctx, Endpoint{Addr: addr}, "t", DrillRequest{})
	if err == nil || !strings.HasPrefix(err.Error(), "drill: ") || strings.Contains(err.Error(), "/v1/drill") {
		t.Errorf("a drill at %s, where nothing listens: %v; want \"drill: \" and the refusal, no URL", addr, err)
	}
}
