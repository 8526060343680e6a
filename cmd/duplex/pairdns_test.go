package main

import (
	"bytes"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"duplex/internal/testenv"
)

// dnsServer answers every query on 127.0.0.1:53 (UDP) with no address:
// SERVFAIL (a resolver's temporary failure: the zone's servers cut off)
// for the names in servfail, NXDOMAIN (no such name) for the others.
func dnsServer(t *testing.T, servfail ...string) {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:53")
	if err != nil {
		testenv.Missing(t, "cannot serve DNS at 127.0.0.1:53 in the test's network namespace: %v", err)
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

// resolverSetupFailed is the exit status of the namespace's setup when the
// host does not let it stand in its own resolver's files: a test binary
// exits 0, 1 or 2.
const resolverSetupFailed = 125

// inResolverNamespace runs the test named run again in a mount and network
// namespace of its own, where /etc/resolv.conf (search domain
// dc1.duplex.test, the resolver at 127.0.0.1) and /etc/nsswitch.conf
// (files, then DNS) are this test's, and returns false; the run there
// returns true. A host without /etc/nsswitch.conf needs none: Go's
// resolver then looks in files, then DNS. Where the namespace cannot be
// made as the test needs, or the run there cannot do what it needs, the
// test is skipped saying why (testenv.Missing: CI runs it).
func inResolverNamespace(t *testing.T, run string) bool {
	t.Helper()
	if os.Getenv("DUPLEX_TEST_RESOLVER_NS") == run {
		return true
	}
	for _, tool := range []string{"unshare", "ip", "mount"} {
		if _, err := exec.LookPath(tool); err != nil {
			testenv.Missing(t, "%s needs %s to run in a resolver namespace of its own: %v", run, tool, err)
		}
	}
	if out, err := exec.Command("unshare", "-rmn", "true").CombinedOutput(); err != nil {
		testenv.Missing(t, "%s cannot make a user, mount and network namespace here (unshare -rmn: %v: %s)", run, err, bytes.TrimSpace(out))
	}
	if _, err := os.Stat("/etc/resolv.conf"); err != nil {
		testenv.Missing(t, "%s binds its own resolver's file over /etc/resolv.conf, which this host lacks: %v", run, err)
	}
	dir := t.TempDir()
	resolv := filepath.Join(dir, "resolv.conf")
	if err := os.WriteFile(resolv, []byte("search dc1.duplex.test\nnameserver 127.0.0.1\noptions ndots:1 timeout:1 attempts:1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	nss := ""
	if _, err := os.Stat("/etc/nsswitch.conf"); err == nil {
		nss = filepath.Join(dir, "nsswitch.conf")
		if err := os.WriteFile(nss, []byte("hosts: files dns\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command("unshare", "-rmn", "sh", "-c", `
fail() { echo "resolver namespace: $*" >&2; exit `+strconv.Itoa(resolverSetupFailed)+`; }
ip link set lo up || fail "cannot bring up its loopback interface"
mount --bind "$1" /etc/resolv.conf || fail "cannot bind its own file over /etc/resolv.conf"
if [ -n "$2" ]; then mount --bind "$2" /etc/nsswitch.conf || fail "cannot bind its own file over /etc/nsswitch.conf"; fi
shift 2
exec "$@"`,
		"sh", resolv, nss, os.Args[0], "-test.run", "^"+run+"$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), "DUPLEX_TEST_RESOLVER_NS="+run)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit) && exit.ExitCode() == resolverSetupFailed:
		testenv.Missing(t, "%s cannot run in a resolver namespace of its own here: %s", run, bytes.TrimSpace(out))
	case err != nil:
		t.Errorf("%s in its resolver's namespace: %v\n%s", run, err, out)
	case bytes.Contains(out, []byte("--- SKIP: "+run+" ")):
		// Skipped there, the test did not run: passing here would say
		// it did.
		testenv.Missing(t, "%s skipped in its resolver's namespace:\n%s", run, out)
	case testing.Verbose():
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

// TestResolverNamespaceNeedsNoNsswitch: on a host without
// /etc/nsswitch.conf (Go's resolver then looks in files, then DNS) the
// resolver's test runs and passes. Before, its namespace's setup bound a
// file over the missing /etc/nsswitch.conf, and the test failed ("mount
// point does not exist"). The host here is a mount namespace whose /etc
// is a copy of this one's without the file.
func TestResolverNamespaceNeedsNoNsswitch(t *testing.T) {
	const dnsTest = "TestPairOperationIsNotSentPastAPrimaryWhoseNameMayStillResolve"
	if os.Getenv("DUPLEX_TEST_NO_NSSWITCH") != "" {
		t.Skip("run by itself on the host without /etc/nsswitch.conf")
	}
	if _, err := exec.LookPath("unshare"); err != nil {
		testenv.Missing(t, "no unshare to make a host without /etc/nsswitch.conf: %v", err)
	}
	etc := filepath.Join(t.TempDir(), "etc")
	if err := os.Mkdir(etc, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("unshare", "-rm", "sh", "-c", `
cp -a /etc/. "$1"/ 2>/dev/null; chmod -R u+w "$1"; rm -f "$1"/nsswitch.conf
mount --bind "$1" /etc || exit `+strconv.Itoa(resolverSetupFailed)+`
test ! -e /etc/nsswitch.conf || exit `+strconv.Itoa(resolverSetupFailed)+`
shift
exec "$@"`, "sh", etc, os.Args[0], "-test.run", "^"+dnsTest+"$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), "DUPLEX_TEST_NO_NSSWITCH=1")
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit) && exit.ExitCode() == resolverSetupFailed:
		testenv.Missing(t, "cannot make a mount namespace whose /etc has no nsswitch.conf: %s", bytes.TrimSpace(out))
	case err != nil:
		t.Fatalf("%s without /etc/nsswitch.conf: %v\n%s", dnsTest, err, out)
	case bytes.Contains(out, []byte("--- SKIP: "+dnsTest+" ")):
		testenv.Missing(t, "%s skipped without /etc/nsswitch.conf:\n%s", dnsTest, out)
	case !bytes.Contains(out, []byte("--- PASS: "+dnsTest+" ")):
		t.Fatalf("%s without /etc/nsswitch.conf did not pass:\n%s", dnsTest, out)
	}
}
