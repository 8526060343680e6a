package e2e

import (
	"io"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"duplex/config"
	"duplex/internal/testenv"
)

// partitionProxy forwards the link until partition is called; from then on
// it forwards nothing and closes nothing, in either direction, as a
// network that drops every packet between the sites: neither end is told
// that the other closed its side.
type partitionProxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	cut    bool
	conns  []net.Conn
}

func newPartitionProxy(t *testing.T, target string) *partitionProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &partitionProxy{ln: ln, target: target}
	t.Cleanup(func() {
		ln.Close()
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, c := range p.conns {
			c.Close()
		}
	})
	go func() {
		for {
			a, err := ln.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			p.conns = append(p.conns, a)
			cut := p.cut
			p.mu.Unlock()
			if cut {
				continue // held open, never answered
			}
			b, err := net.Dial("tcp", target)
			if err != nil {
				a.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, b)
			p.mu.Unlock()
			go p.pipe(a, b)
			go p.pipe(b, a)
		}
	}()
	return p
}

// pipe copies src to dst until the partition, and closes both ends when
// src ends before it.
func (p *partitionProxy) pipe(src, dst net.Conn) {
	buf := make([]byte, 64<<10)
	for {
		n, err := src.Read(buf)
		p.mu.Lock()
		cut := p.cut
		p.mu.Unlock()
		if cut {
			return // neither end hears of the other again
		}
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				err = werr
			}
		}
		if err != nil {
			src.Close()
			dst.Close()
			return
		}
	}
}

func (p *partitionProxy) addr() string { return p.ln.Addr().String() }

func (p *partitionProxy) partition() {
	p.mu.Lock()
	p.cut = true
	p.mu.Unlock()
}

// slowControl is an address that the config's secondary control names on
// this host: it takes no connection until open is called (its SYNs lost,
// see testenv.SlowToConnect), and then forwards every connection to target.
func slowControl(t *testing.T, target string) (addr string, open func()) {
	t.Helper()
	ln, openQueue := testenv.SlowToConnect(t)
	opened := make(chan struct{})
	var once sync.Once
	go func() {
		<-opened
		for {
			a, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer a.Close()
				b, err := net.Dial("tcp", target)
				if err != nil {
					return
				}
				defer b.Close()
				go io.Copy(b, a)
				io.Copy(a, b)
			}()
		}
	}()
	return ln.Addr().String(), func() {
		once.Do(func() {
			openQueue()
			close(opened)
		})
	}
}

// TestDaemonsPairOperationPastAStaleOldPrimary: the sites are cut apart by
// a partition that drops every packet, and the secondary is promoted
// (stopped, recovered, promoted, as the runbook says for a lost primary).
// The old primary, idle, still runs and still reports its link connected:
// nothing tells it the link is gone. A pair operation run with the
// session's config from a host that reaches the old primary at once and
// the promoted site only slowly (its SYNs lost: connected after 3 s)
// must not change the old primary silently. Before: the promoted site,
// not connected within 1.5 s, was taken as not promoted, and the link's
// "connected" took the old primary for one its secondary still follows:
// vol1 was suspended there, exit 0, with not a word (the split brain the
// routing exists to prevent). After: the old primary's secondary has
// acknowledged nothing for seconds, so its link says nothing of the
// secondary; the promoted site has the status wait (5 s) to answer, and
// answers as the promoted primary: the operation is refused, both sites
// answering as the primary, and nothing changes. A promoted site that
// never answers from this host leaves the operation at the old primary
// (as during any outage), with the first line saying so.
func TestDaemonsPairOperationPastAStaleOldPrimary(t *testing.T) {
	t.Parallel()
	const token = "e2e-stale-token"
	link := testenv.FreeAddr(t)
	proxy := newPartitionProxy(t, link)
	s := newSession(t, sessionOpts{name: "e2e-stale", volSize: 4 * config.MiB, token: token, edit: func(c *config.Config) {
		c.Secondary.Listen, c.Primary.Secondary = link, proxy.addr()
		c.Primary.Listen, c.Primary.Journal = testenv.FreeAddr(t), filepath.Join(c.Dir, "primary", "journal")
	}})
	s.start()
	proxy.partition()
	s.stopSecondary()
	prom := s.recoverAndPromote()
	defer prom.stop()

	// The premise: the old primary runs, as the primary, and its status
	// still says connected, its secondary silent since the partition.
	var lag float64
	eventually(t, 30*time.Second, "the old primary's consistency time 3 s old", func() bool {
		ps := s.primaryStatus()
		if ps.LagSeconds != nil {
			lag = *ps.LagSeconds
		}
		return ps.Role == "primary" && lag >= 3
	})
	ps := s.primaryStatus()
	t.Logf("the old primary after the promotion: role %s, link %s, lag %.1fs", ps.Role, ps.Link, lag)
	if ps.Link != "connected" {
		t.Logf("the old primary's link is %q, not the stale \"connected\" this test is about", ps.Link)
	}
	state := func(vol string) string {
		for _, v := range s.primaryStatus().Volumes {
			if v.Name == vol {
				return v.State
			}
		}
		return ""
	}
	client := func(secondaryControl string) string {
		c := *s.cfg
		c.Secondary.Control = secondaryControl
		path := filepath.Join(s.dir, "client-"+strings.ReplaceAll(secondaryControl, ":", "-")+".toml")
		writeConfig(t, path, &c)
		return path
	}

	// First the operation that goes to the old primary: its record sets
	// outstanding, the old primary gives the link up 5 s later, and its
	// status says so.
	t.Run("the promoted site unreachable", func(t *testing.T) {
		addr, _ := slowControl(t, s.cfg.Secondary.Control)
		path := client(addr)
		code, out, errs := runDuplex(t, "pair", "suspend", "vol2", "--config", path)
		first, _, _ := strings.Cut(out, "\n")
		if code != 0 || state("vol2") != "suspended" {
			t.Fatalf("pair suspend vol2: exit %d, stdout %q, stderr %q; want vol2 suspended at the config's primary, as in any outage", code, out, errs)
		}
		if !strings.Contains(first, "the config's primary "+s.cfg.Primary.Control+" takes the operation") || !strings.Contains(first, "duplex status --addr "+addr) {
			t.Errorf("pair suspend vol2: first line %q; want it to say that the config's primary took it, the secondary %s unheard, and how to check it", first, addr)
		}
	})

	t.Run("the promoted site slow to connect", func(t *testing.T) {
		addr, open := slowControl(t, s.cfg.Secondary.Control)
		path := client(addr)
		time.AfterFunc(2*time.Second, open)
		start := time.Now()
		code, out, errs := runDuplex(t, "pair", "suspend", "vol1", "--config", path)
		t.Logf("pair suspend vol1: exit %d after %s, stdout %q, stderr %q", code, time.Since(start).Round(time.Millisecond), out, errs)
		if got := state("vol1"); got != "duplex" {
			t.Errorf("vol1 at the old primary: %s, want duplex: the operation changed the old primary beside the promoted site", got)
		}
		if code == 0 || !strings.Contains(errs, "both sites answer as the primary") || !strings.Contains(errs, s.cfg.Primary.Control) {
			t.Errorf("pair suspend vol1: exit %d, stdout %q, stderr %q; want it refused, both sites answering as the primary", code, out, errs)
		}
	})
}
