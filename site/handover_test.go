package site

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"duplex/control"
	"duplex/internal/testenv"
	"duplex/nbd"
)

// A secondary promoted in place by a switchover keeps its NBD and control
// addresses bound until the promoted site serves on them. Where the config
// asks for port 0, the ports the system picked are ones any bind of port 0
// on the machine may be given once they are free: released between the
// secondary's stop and the promoted site's start, one was taken, and the
// promoted site could not serve ("bind: address already in use"). The test
// binds the addresses, as another process would, at the moment the
// secondary's Run has returned.
func TestPromotedInPlaceKeepsTheAddresses(t *testing.T) {
	cfg := switchoverConfig(t)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	s, err := OpenSecondary(cfg, quiet, SecondaryOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Primary.Secondary, cfg.Secondary.Control = s.ListenAddr(), s.ControlAddr()
	nbdAddr, ctlAddr := s.NBDAddr(), s.ControlAddr()

	type served struct {
		run   error
		taken []string // the addresses another process could bind
		prom  *Promoted
		err   error
	}
	up := make(chan served, 1)
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		var r served
		r.run = s.Run(ctx)
		for _, a := range []string{nbdAddr, ctlAddr} {
			if ln, err := net.Listen("tcp", a); err == nil {
				r.taken = append(r.taken, a)
				defer ln.Close()
			}
		}
		r.prom, r.err = OpenPromoted(s.PromotedConfig(), quiet, PromotedOptions{Listeners: s.HandOver()})
		up <- r
		if r.err == nil {
			r.prom.Run(ctx)
		}
	}()
	t.Cleanup(func() { cancel(); <-stopped })

	p, _ := startPrimaryForSwitchover(t, cfg)
	waitDuplex(t, p)
	switched := make(chan error, 1)
	go func() {
		_, err := p.Switchover(context.Background(), time.Minute)
		switched <- err
	}()
	r := <-up
	var pe *PromotedError
	if !errors.As(r.run, &pe) {
		t.Fatalf("the secondary's Run ended with %v, want a PromotedError", r.run)
	}
	if len(r.taken) > 0 {
		t.Errorf("another process bound %v once the secondary's Run returned, before the promoted site served", r.taken)
	}
	if r.err != nil {
		t.Fatalf("the promoted site: %v", r.err)
	}
	if err := <-switched; err != nil {
		t.Fatalf("switchover: %v", err)
	}
	if r.prom.NBDAddr() != nbdAddr || r.prom.ControlAddr() != ctlAddr {
		t.Errorf("the promoted site serves NBD %s and control %s, want the secondary's %s and %s", r.prom.NBDAddr(), r.prom.ControlAddr(), nbdAddr, ctlAddr)
	}
	c, err := nbd.Dial(nbdAddr, cfg.VolumeNames()[0])
	if err != nil {
		t.Fatalf("NBD at %s: %v", nbdAddr, err)
	}
	defer c.Close()
	want := bytes.Repeat([]byte{0x5a}, 4096)
	if err := c.WriteAt(want, 0); err != nil {
		t.Fatalf("a write on NBD at %s: %v", nbdAddr, err)
	}
	got := make([]byte, len(want))
	if err := c.ReadAt(got, 0); err != nil || !bytes.Equal(got, want) {
		t.Errorf("reading the write back on NBD at %s: %v, same data %v", nbdAddr, err, bytes.Equal(got, want))
	}
	st, err := control.Fetch(context.Background(), control.Endpoint{Addr: ctlAddr})
	if err != nil || st.PromotedAt == "" {
		t.Errorf("status at %s: promoted_at %q, %v; want the promoted site's", ctlAddr, st.PromotedAt, err)
	}
}

// handedListeners are listeners as a secondary hands them over, and their
// addresses: reserved ones, which freeNow binds again once they are closed.
func handedListeners(t *testing.T) (Listeners, string, string) {
	t.Helper()
	var h Listeners
	var err error
	if h.NBD, err = net.Listen("tcp", testenv.FreeAddr(t)); err != nil {
		t.Fatal(err)
	}
	if h.Control, err = net.Listen("tcp", testenv.FreeAddr(t)); err != nil {
		t.Fatal(err)
	}
	return h, h.NBD.Addr().String(), h.Control.Addr().String()
}

// freeNow fails unless each of addrs can be bound: nothing holds it.
func freeNow(t *testing.T, what string, addrs ...string) {
	t.Helper()
	for _, a := range addrs {
		ln, err := net.Listen("tcp", a)
		if err != nil {
			t.Errorf("%s: %s is still held: %v", what, a, err)
			continue
		}
		ln.Close()
	}
}

// A site opened with listeners handed over serves on them, and closes them
// when it stops; one that fails to open closes them too, so that a failed
// hand-over holds no address.
func TestOpenWithHandedListeners(t *testing.T) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg := linkConfig(t)
	h, nbdAddr, ctlAddr := handedListeners(t)
	if _, err := OpenPromoted(cfg, quiet, PromotedOptions{Listeners: h}); err == nil {
		t.Fatal("a secondary never promoted opened as the promoted site")
	}
	freeNow(t, "after OpenPromoted failed", nbdAddr, ctlAddr)

	h, nbdAddr, ctlAddr = handedListeners(t)
	cfg.Primary.NBD, cfg.Primary.Control = nbdAddr, ctlAddr
	p, err := OpenPrimary(cfg, quiet, PrimaryOptions{Listeners: h})
	if err != nil {
		t.Fatal(err)
	}
	if p.NBDAddr() != nbdAddr || p.ControlAddr() != ctlAddr {
		t.Errorf("the primary serves NBD %s and control %s, want the listeners handed over, %s and %s", p.NBDAddr(), p.ControlAddr(), nbdAddr, ctlAddr)
	}
	stop := runFor(t, func(ctx context.Context) error { return p.Run(ctx, 0) })
	c, err := nbd.Dial(nbdAddr, cfg.VolumeNames()[0])
	if err != nil {
		t.Fatalf("NBD at %s: %v", nbdAddr, err)
	}
	c.Close()
	if _, err := control.Fetch(context.Background(), control.Endpoint{Addr: ctlAddr}); err != nil {
		t.Errorf("status at %s: %v", ctlAddr, err)
	}
	stop()
	freeNow(t, "after the primary stopped", nbdAddr, ctlAddr)

	// The control address in use: the start fails, and closes the NBD
	// listener it was handed.
	h, nbdAddr, _ = handedListeners(t)
	busy := h.Control
	defer busy.Close()
	cfg.Primary.NBD, cfg.Primary.Control = nbdAddr, busy.Addr().String()
	if _, err := OpenPrimary(cfg, quiet, PrimaryOptions{Listeners: Listeners{NBD: h.NBD}}); err == nil {
		t.Fatal("a primary started on a control address in use")
	}
	freeNow(t, "after OpenPrimary failed", nbdAddr)
}

// A listener handed over is served on only where the config of the site
// opened names its address: one for an address the config does not name
// any more (none, or another) is closed, and the named address is bound.
// Served instead, the site would listen where its config, its status's
// peers and the operator do not look, and keep an address nobody asked for.
func TestHandedListenersTheConfigDoesNotNameAreClosed(t *testing.T) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg := linkConfig(t)
	h, nbdAddr, ctlAddr := handedListeners(t)
	named := testenv.FreeAddr(t)
	cfg.Primary.NBD, cfg.Primary.Control = named, ""
	p, err := OpenPrimary(cfg, quiet, PrimaryOptions{Listeners: h})
	if err != nil {
		t.Fatal(err)
	}
	stop := runFor(t, func(ctx context.Context) error { return p.Run(ctx, 0) })
	defer stop()
	if p.NBDAddr() != named || p.ControlAddr() != "" {
		t.Errorf("the primary serves NBD %s and control %q, want its config's %s and none", p.NBDAddr(), p.ControlAddr(), named)
	}
	freeNow(t, "listeners handed over for addresses the config does not name", nbdAddr, ctlAddr)
	c, err := nbd.Dial(named, cfg.VolumeNames()[0])
	if err != nil {
		t.Fatalf("NBD at the config's %s: %v", named, err)
	}
	c.Close()
}

// handedFor keeps a listener for the names a bind of it would have taken:
// its own address, a host name of its IP, port 0, and any wildcard for a
// wildcard listener (Go reports 0.0.0.0 bound for tcp as [::]).
func TestHandedForTheAddressesNamed(t *testing.T) {
	for _, tc := range []struct {
		bind string
		name func(port string) string
		keep bool
	}{
		{"127.0.0.1:0", func(p string) string { return "127.0.0.1:" + p }, true},
		{"127.0.0.1:0", func(p string) string { return "localhost:" + p }, true},
		{"127.0.0.1:0", func(string) string { return "127.0.0.1:0" }, true},
		{"127.0.0.1:0", func(string) string { return testenv.FreeAddr(t) }, false},
		{"127.0.0.1:0", func(p string) string { return "127.0.0.2:" + p }, false},
		{"127.0.0.1:0", func(p string) string { return "0.0.0.0:" + p }, false},
		{"127.0.0.1:0", func(string) string { return "" }, false},
		{"0.0.0.0:0", func(p string) string { return "0.0.0.0:" + p }, true},
		{"0.0.0.0:0", func(p string) string { return ":" + p }, true},
		{":0", func(p string) string { return "[::]:" + p }, true},
		{":0", func(p string) string { return "127.0.0.1:" + p }, false},
	} {
		ln, err := net.Listen("tcp", tc.bind)
		if err != nil {
			t.Fatal(err)
		}
		_, port, _ := net.SplitHostPort(ln.Addr().String())
		name := tc.name(port)
		got := handedFor(ln, name)
		if (got != nil) != tc.keep {
			t.Errorf("a listener bound at %s (%s), named %q: kept %v, want %v", tc.bind, ln.Addr(), name, got != nil, tc.keep)
		}
		if got == nil {
			ln.(*net.TCPListener).SetDeadline(time.Now())
			if _, err := ln.Accept(); !errors.Is(err, net.ErrClosed) {
				t.Errorf("a listener bound at %s, named %q: not kept, but not closed either (accept: %v)", tc.bind, name, err)
			}
		}
		ln.Close()
	}
}
