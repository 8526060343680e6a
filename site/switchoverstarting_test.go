package site

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"
	"time"

	"duplex/internal/testenv"
)

// A switchover whose promotion request reaches a secondary that has just
// started again (its status read a moment before showed it running and
// linked) is refused there "not yet: starting" before any promotion could
// begin: the switchover is abandoned and the writes go on, as for a
// stopping secondary, rather than held in doubt for as long as that
// secondary's start takes (on a disk that stopped answering, until it
// answers again).
func TestASwitchoverToAStartingSecondaryIsAbandoned(t *testing.T) {
	cfg := switchoverConfig(t)
	s := startSecondaryForSwitchover(t, cfg)
	p, _ := startPrimaryForSwitchover(t, cfg)
	waitDuplex(t, p)

	// A site that starts, on an address of its own.
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	c := *cfg
	c.Secondary.Control = testenv.FreeAddr(t)
	var l listeners
	w := watchStart(quiet, 0)
	defer w.end()
	early, err := l.serveStarting(&c, "secondary", "secondary", "secondary", c.Secondary.Control, nil, w, quiet)
	if err != nil {
		t.Fatal(err)
	}
	defer early.Close()
	starting := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: l.ctlLn.Addr().String()})
	// The secondary's control address: its status is the running
	// secondary's, every command reaches the one that starts.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	front := &http.Server{Handler: http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && r.URL.Path == "/v1/status" {
			rw.Header().Set("Content-Type", "application/json")
			json.NewEncoder(rw).Encode(s.Status())
			return
		}
		starting.ServeHTTP(rw, r)
	})}
	go front.Serve(ln)
	defer front.Close()
	cfg.Secondary.Control = ln.Addr().String()

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err = p.Switchover(ctx, 20*time.Second)
	if err == nil || !strings.Contains(err.Error(), "abandoned") || !strings.Contains(err.Error(), "starting") {
		t.Errorf("a switchover whose promotion reached a starting secondary: %v, want it abandoned, saying the secondary is starting", err)
	}
	switchoverAbandoned(t, p, cfg)
}
