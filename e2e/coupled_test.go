package e2e

import (
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"duplex/bench/harness"
	"duplex/config"
	"duplex/internal/freeport"
	"duplex/nbd"
)

// etcdProcess is a single-node etcd run by duplex etcd, so that a test can
// kill -9 it.
type etcdProcess struct {
	t         *testing.T
	dir, url  string
	peer, log string
	cmd       *exec.Cmd
	done      chan struct{}
	// front, if set (groupOpts.frontEtcd), is what the sessions reach
	// etcd through.
	front *harness.Proxy
}

func freeLoopbackURL(t *testing.T) string {
	t.Helper()
	addrs, err := freeport.Addrs(1)
	if err != nil {
		t.Fatal(err)
	}
	return "http://" + addrs[0]
}

// freeURL is http://ip:port on a port free now. On loopback the port is
// reserved for the test binary's life (freeport): a port the kernel hands
// out for port 0 and that is closed again may be handed out once more at
// the next call, so etcd's client and peer URLs got the same port and its
// second listener failed with "address already in use".
func freeURL(t *testing.T, ip string) string {
	t.Helper()
	if ip == "127.0.0.1" {
		return freeLoopbackURL(t)
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return "http://" + ln.Addr().String()
}

func startEtcd(t *testing.T) *etcdProcess {
	t.Helper()
	return startEtcdOn(t, "127.0.0.1")
}

// startEtcdOn is startEtcd serving clients on the address ip.
func startEtcdOn(t *testing.T, ip string) *etcdProcess {
	t.Helper()
	dir := t.TempDir()
	e := &etcdProcess{t: t, dir: filepath.Join(dir, "data"), url: freeURL(t, ip), peer: freeLoopbackURL(t), log: filepath.Join(dir, "etcd.log")}
	e.start()
	t.Cleanup(func() { e.kill() })
	return e
}

func (e *etcdProcess) start() {
	e.t.Helper()
	lf, err := os.OpenFile(e.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		e.t.Fatal(err)
	}
	e.cmd = exec.Command(duplexBinary(e.t), "etcd", "--dir", e.dir, "--listen", e.url, "--peer", e.peer)
	e.cmd.Stdout, e.cmd.Stderr = lf, lf
	harness.DieWithParent(e.cmd)
	if err := e.cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	e.done = make(chan struct{})
	go func() { e.cmd.Wait(); lf.Close(); close(e.done) }()
	eventually(e.t, 2*time.Minute, "etcd serving", func() bool {
		select {
		case <-e.done:
			e.t.Fatalf("duplex etcd exited:\n%s", readLog(e.log))
		default:
		}
		return strings.Contains(readLog(e.log), "etcd serving clients")
	})
}

func (e *etcdProcess) kill() {
	if e.cmd == nil {
		return
	}
	select {
	case <-e.done:
	default:
		e.cmd.Process.Signal(syscall.SIGKILL)
		<-e.done
	}
}

// chainClient issues dependent writes, one at a time, alternating between
// vol1 of the two sessions: write i goes to session i%2, at block i/2, and
// holds i+1 in its first 8 bytes. Each is issued only once the one before
// was acknowledged. It issues no write from hold on until hold is raised.
type chainClient struct {
	conns [2]*nbd.Client
	acked atomic.Int64
	hold  atomic.Int64
	stop  atomic.Bool
	done  chan error

	mu      sync.Mutex
	mark    int64         // reached is closed once mark writes are acknowledged
	reached chan struct{} // (see at)
}

// at returns a channel closed as soon as n writes are acknowledged, from
// the writer's own progress: a test acts on it while the writes go on. One
// at a time, set while the writer holds below n.
func (c *chainClient) at(n int64) <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.mark, c.reached = n, make(chan struct{})
	return c.reached
}

// acknowledged records that n writes are acknowledged.
func (c *chainClient) acknowledged(n int64) {
	c.acked.Store(n)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.reached != nil && n >= c.mark {
		close(c.reached)
		c.reached = nil
	}
}

const chainBlocks = 3500 // per session: 14 MiB of a 16 MiB volume

func startChain(t *testing.T, s [2]*procSession, hold int64) *chainClient {
	t.Helper()
	c := &chainClient{done: make(chan error, 1)}
	c.hold.Store(hold)
	for i := range s {
		conn, err := nbd.Dial(s[i].cfg.Primary.NBD, "vol1")
		if err != nil {
			t.Fatal(err)
		}
		c.conns[i] = conn
	}
	go func() {
		b := make([]byte, 4096)
		for i := int64(0); i < 2*chainBlocks && !c.stop.Load(); i++ {
			for i >= c.hold.Load() && !c.stop.Load() {
				time.Sleep(time.Millisecond)
			}
			if c.stop.Load() {
				break
			}
			binary.LittleEndian.PutUint64(b, uint64(i+1))
			if err := c.conns[i%2].WriteAt(b, (i/2)*4096); err != nil {
				c.done <- err
				return
			}
			c.acknowledged(i + 1)
		}
		c.done <- nil
	}()
	return c
}

func (c *chainClient) finish() error {
	c.stop.Store(true)
	err := <-c.done
	for _, conn := range c.conns {
		conn.Close()
	}
	return err
}

// chainPrefix reads vol1 of both secondaries and says how many writes of
// the chain they hold as a prefix, and which writes break it: present
// after one absent (a dependent write held without the write it depended
// on), or one beyond the last issued.
func chainPrefix(t *testing.T, s [2]*procSession, issued int64) (prefix int64, violations []string) {
	t.Helper()
	var img [2][]byte
	for i := range s {
		_, sec := s[i].volumePaths("vol1")
		b, err := os.ReadFile(sec)
		if err != nil {
			t.Fatal(err)
		}
		img[i] = b
	}
	holds := func(i int64) bool {
		b := img[i%2][(i/2)*4096:]
		return binary.LittleEndian.Uint64(b) == uint64(i+1)
	}
	prefix = -1
	for i := int64(0); i < 2*chainBlocks; i++ {
		switch h := holds(i); {
		case h && prefix >= 0:
			violations = append(violations, fmt.Sprintf("write %d (session %d) is held, but write %d (session %d), acknowledged before it was issued, is not",
				i, i%2+1, prefix, prefix%2+1))
		case h && i > issued:
			violations = append(violations, fmt.Sprintf("write %d is held but was never issued", i))
		case !h && prefix < 0:
			prefix = i
		}
	}
	if prefix < 0 {
		prefix = 2 * chainBlocks
	}
	return prefix, violations
}

// groupOpts shapes the sessions coupledGroup starts.
type groupOpts struct {
	sessions  int  // default 2
	uncoupled bool // sessions that stand alone, and no etcd
	volSize   config.Size
	// hosts, if set, runs session i's primary in host "p<i+1>" and its
	// secondary in host "s<i+1>", every listener on the host's address,
	// etcd on the test's.
	hosts *netHosts
	// sidefile, if set, is each primary's sidefile_limit: a secondary
	// starts only with room for two of the largest groups it bounds.
	sidefile config.Size
	// token, if set, is each session's control token (a switchover needs
	// one).
	token string
	// frontEtcd: the sessions reach etcd through a proxy (etcdProcess.front)
	// the test can hang.
	frontEtcd bool
}

// coupledPair starts etcd and two sessions of one coupled group (or, with
// coupled false, two sessions that stand alone), each with both sites.
func coupledPair(t *testing.T, coupled bool) (*etcdProcess, [2]*procSession) {
	t.Helper()
	e, s := coupledGroup(t, groupOpts{uncoupled: !coupled})
	return e, [2]*procSession(s)
}

// coupledGroup starts etcd and the sessions of one coupled group, named
// c1, c2, ..., each with both sites, and waits until every member's
// secondary knows a master time.
func coupledGroup(t *testing.T, o groupOpts) (*etcdProcess, []*procSession) {
	t.Helper()
	coupled := !o.uncoupled
	if o.sessions == 0 {
		o.sessions = 2
	}
	if o.volSize == 0 {
		o.volSize = 16 << 20
	}
	var e *etcdProcess
	if coupled {
		if o.hosts != nil {
			e = startEtcdOn(t, o.hosts.local)
		} else {
			e = startEtcd(t)
		}
	}
	var etcdURL string
	if e != nil {
		etcdURL = e.url
	}
	if o.frontEtcd {
		front, err := harness.NewProxy("127.0.0.1:0", strings.TrimPrefix(e.url, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { front.Close() })
		e.front, etcdURL = front, "http://"+front.Addr()
	}
	s := make([]*procSession, o.sessions)
	for i := range s {
		prim, sec := fmt.Sprintf("p%d", i+1), fmt.Sprintf("s%d", i+1)
		s[i] = newSession(t, sessionOpts{name: fmt.Sprintf("c%d", i+1), volSize: o.volSize, token: o.token, edit: func(c *config.Config) {
			if coupled {
				c.Coupling = config.Coupling{Group: "payments", Etcd: []string{etcdURL}, Lease: config.Duration(2 * time.Second),
					Publish: config.Duration(20 * time.Millisecond)}
			}
			if o.sidefile != 0 {
				c.Primary.SidefileLimit = o.sidefile
			}
			if o.hosts != nil {
				// Plaintext: the hosts are this test's, and TLS is
				// tested on its own (tls_test.go).
				c.Primary.Insecure, c.Secondary.Insecure = true, true
				c.Primary.NBD, c.Primary.Control = o.hosts.addr(prim), o.hosts.addr(prim)
				c.Secondary.Listen, c.Secondary.Control, c.Secondary.NBD = o.hosts.addr(sec), o.hosts.addr(sec), o.hosts.addr(sec)
			}
		}})
		s[i].primNS, s[i].secNS = o.hosts.ns(prim), o.hosts.ns(sec)
		if coupled {
			if code, out, errs := runDuplex(t, "couple", "add", "--config", s[i].path); code != 0 {
				t.Fatalf("duplex couple add: exit %d\n%s%s", code, out, errs)
			}
		}
	}
	// Each member is started alone, and its initial copy taken, before the
	// next starts: until each has published a time the group has no master
	// time, and the first member's secondary journals and acknowledges its
	// initial copy without applying any of it.
	for i := range s {
		s[i].start()
	}
	if coupled {
		eventually(t, 2*time.Minute, "a master time at every secondary", func() bool {
			for i := range s {
				st := s[i].secondaryStatus()
				if st.Coupling == nil || st.Coupling.MasterTime == "" || st.Coupling.Held != "" || len(st.Coupling.Members) != len(s) {
					return false
				}
			}
			return true
		})
	}
	return e, s
}

// recoverAll stops what still runs and recovers both secondaries, coupled
// or not, returning what recover printed.
func recoverAll(t *testing.T, s [2]*procSession, coupled bool) string {
	t.Helper()
	for i := range s {
		s[i].prim.kill()
	}
	for i := range s {
		if !s[i].sec.exited() {
			s[i].stopSecondary()
		}
	}
	var printed strings.Builder
	for i := range s {
		args := []string{"recover", "--config", s[i].path}
		if coupled {
			args = append(args, "--coupled")
		}
		code, out, errs := runDuplex(t, args...)
		if code != 0 {
			t.Fatalf("duplex %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errs)
		}
		printed.WriteString(out)
	}
	return printed.String()
}

// TestCoupledSessionsRecoverToOnePrefix is the coupled group's done-when
// test: two sessions (two primaries, two secondaries) in one group through
// one etcd, and a client whose every write depends on the one before,
// alternating between a volume of each session. After a kill -9 of a
// secondary, of a primary, or of etcd, the secondaries recovered together
// (duplex recover --coupled) hold exactly a prefix of the acknowledged
// writes across both sessions. The same without coupling holds writes of
// one session past a write of the other that they depended on.
func TestCoupledSessionsRecoverToOnePrefix(t *testing.T) {
	for _, tc := range []struct {
		name    string
		coupled bool
		kill    func(t *testing.T, e *etcdProcess, s [2]*procSession)
	}{
		{"kill -9 of a secondary", true, func(t *testing.T, e *etcdProcess, s [2]*procSession) { s[0].sec.kill() }},
		{"kill -9 of a primary", true, func(t *testing.T, e *etcdProcess, s [2]*procSession) { s[1].prim.kill() }},
		{"kill -9 of etcd", true, func(t *testing.T, e *etcdProcess, s [2]*procSession) {
			e.kill()
			// The master time holds, and status says why.
			eventually(t, time.Minute, "status saying etcd is unreachable", func() bool {
				st := s[0].secondaryStatus()
				return st.Coupling != nil && strings.Contains(st.Coupling.Held, "etcd unreachable")
			})
			time.Sleep(500 * time.Millisecond)
			e.start()
			back := time.Now()
			eventually(t, 2*time.Minute, "the master time advancing again past etcd's return", func() bool {
				for i := range s {
					st := s[i].secondaryStatus()
					if st.Coupling == nil || st.Coupling.Held != "" {
						return false
					}
					mt, err := time.Parse(time.RFC3339Nano, st.Coupling.AppliedThrough)
					if err != nil || !mt.After(back) {
						return false
					}
				}
				return true
			})
		}},
		{"kill -9 of a secondary, uncoupled", false, func(t *testing.T, e *etcdProcess, s [2]*procSession) { s[0].sec.kill() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, s := coupledPair(t, tc.coupled)
			chainThroughKill(t, e, s, tc.coupled, tc.kill)
		})
	}
}

// chainThroughKill runs the chain client on the pair, kills what kill
// kills once the group's time passed its first writes (and writes went on
// past them), lets the client go on for a while, recovers both
// secondaries (coupled: with --coupled) and checks what they hold: coupled,
// exactly a prefix of the acknowledged writes, at least the first ones;
// uncoupled, writes held past one they depended on (the test's teeth).
func chainThroughKill(t *testing.T, e *etcdProcess, s [2]*procSession, coupled bool, kill func(t *testing.T, e *etcdProcess, s [2]*procSession)) {
	t.Helper()
	// The first held writes are made part of the group's time
	// before the kill: a recovery time is the least time the
	// members published, which under load can lag the client by
	// more than it takes to acknowledge hundreds of writes, so
	// without the wait a kill may leave none of the chain below
	// it (and an empty prefix is then the right recovery).
	const held = 300
	c := startChain(t, s, held)
	eventually(t, time.Minute, "writes acknowledged", func() bool { return c.acked.Load() == held })
	if coupled {
		// Write held-1 was acknowledged, so stamped, before now.
		passed := time.Now()
		eventually(t, time.Minute, "the master time past the held writes at both secondaries", func() bool {
			for i := range s {
				st := s[i].secondaryStatus()
				if st.Coupling == nil {
					return false
				}
				mt, err := time.Parse(time.RFC3339Nano, st.Coupling.MasterTime)
				if err != nil || !mt.After(passed) {
					return false
				}
			}
			return true
		})
	}
	// The kill lands while the writes go on: it starts as soon as the
	// writer's count passes the held ones by 200, and the writer stops at
	// half the chain until it is done (etcd back, the host back), so that
	// writes are issued after it however long it takes: without the
	// stop, a kill that takes seconds (etcd's, the host's) saw every
	// write of the chain done before it ended.
	killAt := c.at(held + 200)
	c.hold.Store(chainBlocks)
	select {
	case <-killAt:
	case err := <-c.done:
		t.Fatalf("the client ended before the kill: %v", err)
	case <-time.After(time.Minute):
		t.Fatalf("timed out after 1m waiting for writes acknowledged past the held ones (%d acknowledged)", c.acked.Load())
	}
	began := c.acked.Load()
	kill(t, e, s)
	before := c.acked.Load()
	c.hold.Store(2 * chainBlocks)
	// The writes go on for a while after the kill (or fail, once
	// a primary is gone).
	eventually(t, time.Minute, "writes after the kill", func() bool {
		select {
		case err := <-c.done:
			c.done <- err
			return true
		default:
		}
		return c.acked.Load() > before+400
	})
	err := c.finish()
	acked := c.acked.Load()
	out := recoverAll(t, s, coupled)
	prefix, violations := chainPrefix(t, s, acked)
	t.Logf("%d writes acknowledged (%d as the kill began, %d as it ended; the client ended with %v); recovered a prefix of %d; %d violations\n%s",
		acked, began, before, err, prefix, len(violations), out)
	if !coupled {
		if len(violations) == 0 {
			t.Fatal("without coupling the recovered secondaries held a prefix of the writes: the test has no teeth")
		}
		return
	}
	for _, v := range violations[:min(len(violations), 10)] {
		t.Error(v)
	}
	if len(violations) > 0 {
		t.Fatalf("%d writes held past the prefix of %d", len(violations), prefix)
	}
	if prefix < held {
		t.Fatalf("the recovered secondaries hold a prefix of %d writes, fewer than the %d the group's time had passed before the kill", prefix, held)
	}
	if got := strings.Count(out, "coupled group payments: recovered to the group's time"); got != 2 {
		t.Errorf("recover --coupled printed the group's time %d times, want once per member:\n%s", got, out)
	}
}
