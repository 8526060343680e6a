package site

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync"
	"testing"
	"time"
)

// heldPromotion is a control address in front of a secondary's that passes
// every request on, except the first promotion: it reads that one whole,
// keeps it, and drops the connection without an answer, as a link that
// loses the answer (or a secondary slow to start the handler) does; deliver
// hands the kept request to the secondary afterwards.
type heldPromotion struct {
	addr   string
	target string
	mu     sync.Mutex
	header http.Header
	body   []byte
	held   chan struct{}
}

func holdPromotion(t *testing.T, target string) *heldPromotion {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := &heldPromotion{addr: ln.Addr().String(), target: target, held: make(chan struct{})}
	rp := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: target})
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/v1/promote" {
			rp.ServeHTTP(w, r)
			return
		}
		body, _ := io.ReadAll(r.Body)
		h.mu.Lock()
		if h.body == nil {
			h.header, h.body = r.Header.Clone(), body
			close(h.held)
		}
		h.mu.Unlock()
		// The request was delivered whole; its answer is lost.
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close()
		}
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return h
}

func (h *heldPromotion) deliver(t *testing.T) (int, string) {
	t.Helper()
	h.mu.Lock()
	header, body := h.header, h.body
	h.mu.Unlock()
	req, err := http.NewRequest(http.MethodPost, "http://"+h.target+"/v1/promote", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header = header
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("delivering the kept promotion: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// A switchover whose promotion request reached the secondary but whose
// answer was lost must not leave two primaries. The primary asks the
// secondary's status whether it took over; a secondary that has the
// request but has not fenced yet (its handler not past its checks, the
// fence waiting for the applier) says neither promoted_at nor fenced, and
// the primary takes that for "never promoted": it removes its record and
// resumes the writes. The promotion then goes through at the secondary,
// which serves read-write, while the old primary acknowledges writes the
// new one never gets.
func TestSwitchoverWithALostAnswerLeavesOnePrimary(t *testing.T) {
	cfg := switchoverConfig(t)
	s := startSecondaryForSwitchover(t, cfg)
	h := holdPromotion(t, cfg.Secondary.Control)
	// The primary reaches the secondary's control address through it; a
	// config of its own, the secondary's Run reading its own.
	pcfg := *cfg
	pcfg.Secondary.Control = h.addr
	p, _ := startPrimaryForSwitchover(t, &pcfg)
	waitDuplex(t, p)
	vols := cfg.VolumeNames()
	if err := p.Write(context.Background(), vols[0], bytes.Repeat([]byte{1}, 4096), 0); err != nil {
		t.Fatal(err)
	}

	done := make(chan error, 1)
	const timeout = time.Minute
	go func() {
		_, err := p.Switchover(context.Background(), timeout)
		done <- err
	}()
	select {
	case <-h.held:
	case err := <-done:
		t.Fatalf("the switchover ended (%v) without asking for the promotion", err)
	case <-time.After(2 * time.Minute):
		t.Fatal("no promotion asked for within 2 minutes")
	}
	// The switchover waits out its timeout for the answer, then asks the
	// other site for promotedWait whether it took over: the bound is
	// theirs, with a minute to spare on a loaded machine, and matters only
	// if the switchover never ends.
	bound := timeout + promotedWait + time.Minute
	var swErr error
	select {
	case swErr = <-done:
	case <-time.After(bound):
		t.Fatalf("the switchover did not end within %v of its lost answer (timeout %v, promotedWait %v)", bound, timeout, promotedWait)
	}
	t.Logf("the switchover with its answer lost: %v", swErr)
	// The request the secondary had all along is handled now.
	code, body := h.deliver(t)
	t.Logf("the secondary's answer to the promotion: %d %s", code, body)

	promoted := false
	select {
	case <-s.promotedUp:
		promoted = true
	case <-s.done:
		var pe *PromotedError
		promoted = errors.As(s.err, &pe)
	case <-time.After(10 * time.Second):
	}
	werr := p.Write(context.Background(), vols[0], bytes.Repeat([]byte{2}, 4096), 4096)
	if promoted && werr == nil {
		t.Fatalf("two primaries: the switchover ended with %q (writes resume at the old primary), "+
			"then the secondary promoted itself on the request it held (%d), and the old primary still acknowledges writes "+
			"the new primary never gets", swErr, code)
	}
}
