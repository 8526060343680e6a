package main

import (
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"duplex/config"
	"duplex/control"
	"duplex/internal/testenv"
)

// withPrimaryAt points the config at path's primary control address to
// addr, the promoted site's address left as it is.
func withPrimaryAt(t *testing.T, path, addr string) {
	t.Helper()
	c, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	c.Primary.Control = addr
	text, err := c.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, text, 0o644); err != nil {
		t.Fatal(err)
	}
}

// silentListener takes connections and never answers them: a host that
// is up but slow, or partitioned from this one past its handshake.
func silentListener(t *testing.T) string {
	t.Helper()
	return testenv.ServeConns(t, func(net.Conn) { <-t.Context().Done() })
}

// closingListener takes connections and closes them at once: a proxy
// in front of the site whose backend it cannot reach, or a port taken by
// something else.
func closingListener(t *testing.T) string {
	t.Helper()
	return testenv.ServeConns(t, func(net.Conn) {})
}

// answering serves h at a new address: a site that answers, but not with
// a status this client reads.
func answering(t *testing.T, h http.Handler, tls bool) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, ErrorLog: log.New(io.Discard, "", 0)}
	t.Cleanup(func() { srv.Close() })
	if tls {
		_, path, _ := promotedSessionOf(t, nil, promotedSite{tls: true})
		c, err := config.Load(path)
		if err != nil {
			t.Fatal(err)
		}
		go srv.ServeTLS(ln, c.Secondary.ControlTLSCert, c.Secondary.ControlTLSKey)
	} else {
		go srv.Serve(ln)
	}
	return ln.Addr().String()
}

// TestPairOperationIsNotSentPastAPrimaryThatDidNotSayItIsGone: the
// config's secondary answers as the session's promoted primary, and the
// config's primary neither answers as a primary nor is gone: it takes the
// connection and does not answer within the status wait (a split brain:
// the old primary still runs, slow or cut off from this host), or it
// answers, but not with a status (HTTPS where the config says plain, a
// 401 from what stands in front of it, a proxy that takes the connection
// and closes it). The operation is refused, naming
// that address and --addr, and nothing is done at the promoted site.
// Before, each was taken as gone and pair delete vol2 ended vol2 at the
// promoted site, exit 0.
func TestPairOperationIsNotSentPastAPrimaryThatDidNotSayItIsGone(t *testing.T) {
	defer func(w time.Duration) { pairStatusWait = w }(pairStatusWait)
	pairStatusWait = 300 * time.Millisecond
	status := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "who are you", http.StatusUnauthorized)
	})
	for _, tc := range []struct {
		name string
		addr func(t *testing.T) string
		says string
	}{
		{"silent", silentListener, "did not answer within"},
		{"https", func(t *testing.T) string { return answering(t, status, true) }, "answered"},
		{"401", func(t *testing.T) string { return answering(t, status, false) }, "answered"},
		{"accepts and closes", closingListener, "answered"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fp, path, promoted := promotedSessionOf(t, nil, promotedSite{})
			prim := tc.addr(t)
			withPrimaryAt(t, path, prim)
			start := time.Now()
			code, out, errs := runCmd("pair", "delete", "vol2", "--config", path)
			if code == exitOK || strings.Contains(out, "promoted site at "+promoted) || !strings.Contains(errs, prim) ||
				!strings.Contains(errs, tc.says) || !strings.Contains(errs, "--addr") {
				t.Errorf("pair delete vol2: exit %d, stdout %q, stderr %q; want it refused: the config's primary %s %s, name the site with --addr",
					code, out, errs, prim, tc.says)
			}
			if len(fp.calls) != 0 || fp.state["vol2"] == "" {
				t.Errorf("at the promoted site: calls %v, state %v; want nothing done", fp.calls, fp.state)
			}
			if took := time.Since(start); took > pairStatusWait+5*time.Second {
				t.Errorf("refused after %v", took)
			}
		})
	}
}

// TestPairOperationIsNotSentWhereThePrimaryAddressIsAnotherSessions: the
// config's primary control address answers for another session (a stale
// config, another session's site on that address now). It is neither this
// session's primary nor gone: the operation is refused, naming that
// session, and nothing changes at either site. Before, its primary took
// pair delete vol2 (the token may be the same) and the other session's
// vol2 ended, or, with this session's promoted site answering, the site
// there as a secondary was taken as rejoined and the operation went to
// the promoted site.
func TestPairOperationIsNotSentWhereThePrimaryAddressIsAnotherSessions(t *testing.T) {
	for _, tc := range []struct {
		name string
		role string
		ps   promotedSite
	}{
		{"its primary, the promoted site gone", "primary", promotedSite{gone: true}},
		{"its primary, the promoted site answering", "primary", promotedSite{}},
		{"its rejoined secondary, the promoted site answering", "secondary", promotedSite{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fp, path, _ := promotedSessionOf(t, nil, tc.ps)
			theirs := &fakePairs{state: map[string]string{"vol2": "duplex"}}
			srv := &control.Server{Status: func() control.Status {
				st := theirs.status()
				st.Session, st.Role = "other", tc.role
				if tc.role == "secondary" {
					st.PromotedAt = "2026-12-06T01:00:00Z"
				}
				return st
			}, Pairs: theirs, Token: "secret"}
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			t.Cleanup(cancel)
			go srv.Serve(ctx, ln)
			withPrimaryAt(t, path, ln.Addr().String())
			for _, args := range [][]string{
				{"pair", "delete", "vol2", "--config", path},
				{"pair", "suspend", "--all", "--config", path},
			} {
				code, out, errs := runCmd(args...)
				if code == exitOK || !strings.Contains(errs, `"other"`) || !strings.Contains(errs, ln.Addr().String()) {
					t.Errorf("%s: exit %d, stdout %q, stderr %q; want it refused, naming session \"other\" at %s",
						strings.Join(args[:3], " "), code, out, errs, ln.Addr())
				}
			}
			if len(theirs.calls) != 0 || len(fp.calls) != 0 {
				t.Errorf("calls at the other session's site %v, at the promoted site %v; want none", theirs.calls, fp.calls)
			}
		})
	}
}

// TestAPrimaryThatCouldNotBeReachedIsNotSaidToHaveAnswered: a dial that
// fails other than by a refusal or a missing route (no address of the
// kind to dial from: IPv6 off on this host, say) says nothing of a site
// there, and the refusal says that it could not be reached, not that it
// answered.
func TestAPrimaryThatCouldNotBeReachedIsNotSaidToHaveAnswered(t *testing.T) {
	err := fmt.Errorf("status from http://[fd00::1]:7401: %w", &url.Error{Op: "Get", URL: "http://[fd00::1]:7401/v1/status",
		Err: &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.EADDRNOTAVAIL)}})
	got := notGone(context.Background(), err)
	if got == "" || strings.Contains(got, "answered") || !strings.Contains(got, "could not be reached") {
		t.Errorf("notGone(%v) = %q; want not gone, could not be reached", err, got)
	}
	if got := notGone(context.Background(), fmt.Errorf("x: %w", &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)})); got != "" {
		t.Errorf("a refused connection: notGone = %q, want gone", got)
	}
}
