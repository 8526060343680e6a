package main

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// dnsServer answers every query on 127.0.0.1:53 (UDP) with no address:
// SERVFAIL (a resolver's temporary failure: the zone's servers cut off)
// for the names in servfail, NXDOMAIN (no such name) for the others.
func dnsServer(t *testing.T, servfail ...string) {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:53")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	fail := map[string]bool{}
	for _, n := range servfail {
		fail[strings.ToLower(n)] = true
	}
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			q := buf[:n]
			name, end, ok := question(q)
			if !ok {
				continue
			}
			rcode := byte(3) // NXDOMAIN
			if fail[name] {
				rcode = 2 // SERVFAIL
			}
			// The query's ID and question, the flags of a recursive
			// server's answer, no record.
			resp := append([]byte{q[0], q[1], 0x80 | q[2]&0x01, 0x80 | rcode, 0, 1, 0, 0, 0, 0, 0, 0}, q[12:end]...)
			pc.WriteTo(resp, from)
		}
	}()
}

// question returns the name a DNS query asks for ("a.b." lower case) and
// where its question section ends.
func question(q []byte) (string, int, bool) {
	i := 12
	var labels []string
	for i < len(q) && q[i] != 0 {
		l := int(q[i])
		if l > 63 || i+1+l > len(q) {
			return "", 0, false
		}
		labels = append(labels, strings.ToLower(string(q[i+1:i+1+l])))
		i += 1 + l
	}
	if i+5 > len(q) {
		return "", 0, false
	}
	return strings.Join(labels, ".") + ".", i + 5, true
}

// inResolverNamespace runs the test named run again in a mount and network
// namespace of its own, where /etc/resolv.conf (search domain
// dc1.duplex.test, the resolver at 127.0.0.1) and /etc/nsswitch.conf
// (files, then DNS) are this test's, and returns false; the run there
// returns true. Where namespaces cannot be made, the test is skipped.
func inResolverNamespace(t *testing.T, run string) bool {
	t.Helper()
	if os.Getenv("DUPLEX_TEST_RESOLVER_NS") == run {
		return true
	}
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Skip("no unshare:", err)
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("no ip:", err)
	}
	if out, err := exec.Command("unshare", "-rmn", "true").CombinedOutput(); err != nil {
		t.Skipf("cannot make a namespace: %v: %s", err, out)
	}
	dir := t.TempDir()
	resolv, nss := filepath.Join(dir, "resolv.conf"), filepath.Join(dir, "nsswitch.conf")
	if err := os.WriteFile(resolv, []byte("search dc1.duplex.test\nnameserver 127.0.0.1\noptions ndots:1 timeout:1 attempts:1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(nss, []byte("hosts: files dns\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("unshare", "-rmn", "sh", "-c",
		`ip link set lo up && mount --bind "$1" /etc/resolv.conf && mount --bind "$2" /etc/nsswitch.conf && shift 2 && exec "$@"`,
		"sh", resolv, nss, os.Args[0], "-test.run", "^"+run+"$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), "DUPLEX_TEST_RESOLVER_NS="+run)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Errorf("%s in its resolver's namespace: %v\n%s", run, err, out)
	} else if testing.Verbose() {
		t.Logf("%s", out)
	}
	return false
}

// TestPairOperationIsNotSentPastAPrimaryWhoseNameMayStillResolve: the
// config names its primary by a host name, which does not resolve now.
// Only a name that no lookup finds is gone: one whose lookup under the
// search domain fails for now (SERVFAIL: that zone's servers cut off) may
// name the primary that still runs, and the operation is refused naming
// it and --addr, nothing done at the promoted site. The resolver tries a
// short name under the search domain first and then as it is: the last
// one's NXDOMAIN must not hide the first one's SERVFAIL. Before, Go's
// resolver reported "no such host" for it, which was taken as gone, and
// pair delete vol2 went to the promoted site, exit 0. A name every lookup
// finds missing is gone, and the promoted site takes the operation.
func TestPairOperationIsNotSentPastAPrimaryWhoseNameMayStillResolve(t *testing.T) {
	if !inResolverNamespace(t, "TestPairOperationIsNotSentPastAPrimaryWhoseNameMayStillResolve") {
		return
	}
	defer func(w time.Duration) { pairStatusWait = w }(pairStatusWait)
	pairStatusWait = 5 * time.Second
	dnsServer(t, "primary.dc1.duplex.test.", "old.example.dc1.duplex.test.")
	for _, tc := range []struct {
		name, host string
		gone       bool
	}{
		{"short name, its search domain failing", "primary", false},
		{"long name, its search domain failing", "old.example", false},
		{"full name failing", "primary.dc1.duplex.test", false},
		{"no such name anywhere", "gone.example", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fp, path, promoted := promotedSessionOf(t, nil, promotedSite{})
			prim := net.JoinHostPort(tc.host, "7401")
			withPrimaryAt(t, path, prim)
			code, out, errs := runCmd("pair", "delete", "vol2", "--config", path)
			if tc.gone {
				if code != exitOK || !strings.Contains(out, "promoted site at "+promoted) || fp.state["vol2"] != "" {
					t.Errorf("pair delete vol2, %s not found anywhere: exit %d, stdout %q, stderr %q, state %v; want vol2 deleted at the promoted site",
						prim, code, out, errs, fp.state)
				}
				return
			}
			if code == exitOK || strings.Contains(out, "promoted site at "+promoted) || !strings.Contains(errs, prim) || !strings.Contains(errs, "--addr") {
				t.Errorf("pair delete vol2, %s's lookup failing for now: exit %d, stdout %q, stderr %q; want it refused, naming %s and --addr",
					prim, code, out, errs, prim)
			}
			if !strings.Contains(errs, "lookup") || strings.Contains(errs, "answered") {
				t.Errorf("the refusal %q: want it to say the name's lookup failed, not that the primary answered", errs)
			} else {
				t.Log(errs)
			}
			if len(fp.calls) != 0 || fp.state["vol2"] == "" {
				t.Errorf("at the promoted site: calls %v, state %v; want nothing done", fp.calls, fp.state)
			}
		})
	}
}
