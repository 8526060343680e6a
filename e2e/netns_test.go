package e2e

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"duplex/internal/testenv"
)

// netHosts are network namespaces that stand for hosts: each has its own
// network stack, loopback included, and one interface on a switch (a
// bridge in a namespace of its own), and the test's namespace has one on
// the switch too. A daemon run in a host reaches the others, and the test
// reaches it, over veth pairs and the bridge, a real network path: what
// one host binds on its loopback no other host sees.
type netHosts struct {
	t      *testing.T
	prefix string            // of the namespaces' names: dx<pid>-
	local  string            // the test's own address on the switch
	ip     map[string]string // host → its address on the switch
}

// netnsName is the namespace of host for the test process pid.
func netnsName(pid int, host string) string { return fmt.Sprintf("dx%d-%s", pid, host) }

// newNetHosts creates the hosts named, each with an address on one /24 of
// 10.213.0.0/16 that no interface here uses yet. They are removed when the
// test ends, also when it fails; namespaces left by test processes that
// are gone (killed before their cleanup) are removed first.
func newNetHosts(t *testing.T, hosts ...string) *netHosts {
	t.Helper()
	if os.Geteuid() != 0 {
		testenv.Missing(t, "hosts in network namespaces need root (ip netns): run the tests as root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		testenv.Missing(t, "ip not found: apt-get install iproute2")
	}
	removeStaleNetHosts()
	pid := os.Getpid()
	h := &netHosts{t: t, prefix: fmt.Sprintf("dx%d-", pid), ip: map[string]string{}}
	sw := netnsName(pid, "sw")
	if out, err := exec.Command("ip", "netns", "add", sw).CombinedOutput(); err != nil {
		testenv.Missing(t, "cannot create a network namespace here (ip netns add: %v: %s)", err, strings.TrimSpace(string(out)))
	}
	t.Cleanup(h.remove)
	subnet := freeSubnet(t)
	h.local = subnet + "1"
	hostLink := fmt.Sprintf("dx%d", pid)
	h.run("ip", "-n", sw, "link", "add", "br0", "type", "bridge")
	h.run("ip", "-n", sw, "link", "set", "br0", "up")
	h.run("ip", "link", "add", hostLink, "type", "veth", "peer", "name", "uplink", "netns", sw)
	h.run("ip", "addr", "add", h.local+"/24", "dev", hostLink)
	h.run("ip", "link", "set", "dev", hostLink, "up")
	h.run("ip", "-n", sw, "link", "set", "dev", "uplink", "master", "br0", "up")
	for i, host := range hosts {
		ns := netnsName(pid, host)
		h.ip[host] = subnet + strconv.Itoa(10+i)
		port := fmt.Sprintf("p%d", i)
		h.run("ip", "netns", "add", ns)
		h.run("ip", "-n", sw, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns)
		h.run("ip", "-n", sw, "link", "set", "dev", port, "master", "br0", "up")
		h.run("ip", "-n", ns, "addr", "add", h.ip[host]+"/24", "dev", "eth0")
		h.run("ip", "-n", ns, "link", "set", "dev", "eth0", "up")
		h.run("ip", "-n", ns, "link", "set", "dev", "lo", "up")
	}
	return h
}

// freeSubnet returns "10.213.N." for an N that no address here is on.
func freeSubnet(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("ip", "-o", "-4", "addr", "show").Output()
	if err != nil {
		t.Fatalf("ip addr show: %v", err)
	}
	for i := range 256 {
		s := fmt.Sprintf("10.213.%d.", (os.Getpid()+i)%256)
		if !strings.Contains(string(out), " "+s) {
			return s
		}
	}
	t.Fatal("no free /24 in 10.213.0.0/16")
	return ""
}

func (h *netHosts) run(args ...string) {
	h.t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		h.t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// remove deletes the namespaces, and with them the interfaces in them and
// their veth peers. A namespace outlives its deletion while a process runs
// in it: the daemons started in it are killed by their own cleanups, which
// run before this one.
func (h *netHosts) remove() {
	out, _ := exec.Command("ip", "netns", "list").Output()
	for _, ns := range netnsNames(string(out)) {
		if strings.HasPrefix(ns, h.prefix) {
			if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil {
				h.t.Errorf("ip netns del %s: %v\n%s", ns, err, out)
			}
		}
	}
}

// netnsNames reads the names of ip netns list's output ("NAME (id: N)").
func netnsNames(list string) []string {
	var names []string
	for _, l := range strings.Split(list, "\n") {
		if f := strings.Fields(l); len(f) > 0 {
			names = append(names, f[0])
		}
	}
	return names
}

// removeStaleNetHosts deletes the namespaces of test processes that are
// gone.
func removeStaleNetHosts() {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return
	}
	for _, ns := range netnsNames(string(out)) {
		rest, ok := strings.CutPrefix(ns, "dx")
		digits, _, ok2 := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(digits)
		if !ok || !ok2 || err != nil || pid == os.Getpid() {
			continue
		}
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			exec.Command("ip", "netns", "del", ns).Run()
		}
	}
}

// addr returns an address to listen on in host, on a port the system
// picks.
func (h *netHosts) addr(host string) string {
	h.t.Helper()
	ip, ok := h.ip[host]
	if !ok {
		h.t.Fatalf("no host %q", host)
	}
	return ip + ":0"
}

// ns returns the namespace of host ("" for none: the test's own).
func (h *netHosts) ns(host string) string {
	if h == nil || host == "" {
		return ""
	}
	return h.prefix + host
}

// TestCoupledSessionsOnSeparateHosts is TestCoupledSessionsRecoverToOnePrefix
// across hosts: each primary and each secondary of the two sessions runs in
// a network namespace of its own, so that every link, the client's NBD
// connections, the control calls and etcd (in the test's namespace) go
// over veth pairs and a bridge. A client whose every write depends on the
// one before alternates between the sessions. The host of session c1's
// secondary is then cut off the network, which loopback cannot do: it
// reaches neither its primary nor etcd, and the other member's status
// names it as the laggard holding the master time, silent and its lease of
// life expired; then it is killed -9,
// and the host comes back.
// The two secondaries recovered with duplex recover --coupled hold exactly
// a prefix of the acknowledged writes.
func TestCoupledSessionsOnSeparateHosts(t *testing.T) {
	t.Parallel()
	hosts := newNetHosts(t, "p1", "s1", "p2", "s2")
	e, group := coupledGroup(t, groupOpts{hosts: hosts})
	s := [2]*procSession(group)
	for i := range s {
		// Each secondary's link comes from its primary's host.
		p := hosts.ip[fmt.Sprintf("p%d", i+1)]
		if peer := s[i].secondaryStatus().Peer; !strings.HasPrefix(peer, p+":") {
			t.Fatalf("session %s: the secondary's peer is %q, want its primary's host %s", s[i].cfg.Session, peer, p)
		}
	}
	chainThroughKill(t, e, s, true, func(t *testing.T, e *etcdProcess, s [2]*procSession) {
		hosts.run("ip", "-n", hosts.ns("s1"), "link", "set", "dev", "eth0", "down")
		// Gone, not only silent: c1's lease of life expired, which only
		// its secondary's losing etcd does while it runs.
		eventually(t, time.Minute, "c2's secondary naming c1 as the laggard, silent and gone", func() bool {
			c := s[1].secondaryStatus().Coupling
			return c != nil && c.Laggard == "c1" && c.LaggardGone && c.LaggardSilentSeconds > 1
		})
		s[0].sec.kill()
		// The host comes back, its secondary crashed: recover finds it
		// stopped there.
		hosts.run("ip", "-n", hosts.ns("s1"), "link", "set", "dev", "eth0", "up")
	})
}
