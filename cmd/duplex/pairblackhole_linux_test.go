package main

import (
	"context"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"duplex/config"
	"duplex/control"
)

// blackholeAddr returns a loopback address whose SYNs are dropped, as a
// host gone behind a firewall that drops packets: a listener with an
// accept queue of one, filled and never accepted. Linux drops a SYN to a
// listener whose accept queue is full.
func blackholeAddr(t *testing.T) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(sa.(*syscall.SockaddrInet4).Port))
	for i := 0; ; i++ {
		c, err := net.DialTimeout("tcp", addr, 300*time.Millisecond)
		if err != nil {
			break // the queue is full: this SYN was dropped
		}
		t.Cleanup(func() { c.Close() })
		if i == 8 {
			t.Skipf("%s takes connections past its accept queue: no address that drops packets here", addr)
		}
	}
	return addr
}

// TestPairOperationIsNotHeldUpByASecondaryThatDropsPackets: the config's
// primary answers as the primary at once, and the config's secondary
// control address drops packets (its host gone behind a firewall). The
// operation goes to the primary once the secondary has not connected
// within secondaryConnectWait, not after the whole status wait. Before,
// every operation waited the status wait (5 s) for that silence. A
// secondary that takes the connection is still waited for, up to the
// status wait: slow, it may answer as the promoted primary, and both
// answering as primary is refused.
func TestPairOperationIsNotHeldUpByASecondaryThatDropsPackets(t *testing.T) {
	fp, path := pairSession(t, map[string]string{"vol1": "duplex"})
	// Its secondary acknowledges its record sets: a promoted site does
	// not (see TestPairOperationPastASilentSecondarySaysSo).
	fresh := 0.05
	fp.lag = &fresh
	c, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	c.Secondary.Control = blackholeAddr(t)
	text, err := c.Encode()
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, path, text, 0o644)
	start := time.Now()
	code, out, errs := runCmd("pair", "suspend", "vol1", "--config", path)
	took := time.Since(start)
	if code != exitOK || fp.state["vol1"] != "suspended" {
		t.Errorf("pair suspend vol1: exit %d, stdout %q, stderr %q, state %v; want vol1 suspended", code, out, errs, fp.state)
	}
	if took > secondaryConnectWait+time.Second {
		t.Errorf("pair suspend vol1 took %s with the secondary's address dropping packets; want at most about %s", took, secondaryConnectWait)
	}
	t.Logf("pair suspend vol1 took %s", took.Round(time.Millisecond))

	// A promoted site that connects at once and answers after
	// secondaryConnectWait, within the status wait.
	old, prim := oldPrimaryWithPairs(t, c.Session, false)
	slow := &control.Server{Status: func() control.Status {
		return control.Status{Session: c.Session, Role: "primary", PromotedAt: "2026-12-06T01:00:00Z", Link: "disconnected"}
	}, Token: "secret"}
	h := slow.Handler()
	hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(secondaryConnectWait + 500*time.Millisecond)
		h.ServeHTTP(w, r)
	}), ReadHeaderTimeout: 5 * time.Second}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hs.Shutdown(context.Background()) })
	go hs.Serve(ln)
	c.Primary.Control, c.Secondary.Control = prim, ln.Addr().String()
	if text, err = c.Encode(); err != nil {
		t.Fatal(err)
	}
	writeFile(t, path, text, 0o644)
	code, out, errs = runCmd("pair", "delete", "vol2", "--config", path)
	if code == exitOK || !strings.Contains(errs, "both sites answer as the primary") {
		t.Errorf("pair delete vol2, the promoted site slow to answer: exit %d, stdout %q, stderr %q; want it refused, both answering as primary", code, out, errs)
	}
	if len(old.calls) != 0 {
		t.Errorf("at the old primary: %v", old.calls)
	}
}
