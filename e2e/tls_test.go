package e2e

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"duplex/config"
	"duplex/internal/testenv"
	"duplex/internal/testpki"
)

// primaryOnly writes a config describing only the primary of s's session
// (its own files and ports), edited by edit, and returns its path.
func primaryOnly(t *testing.T, s *procSession, edit func(p *config.Primary)) (string, *config.Config) {
	t.Helper()
	dir := t.TempDir()
	c := config.Demo(dir)
	c.Session = s.cfg.Session
	c.ControlTokenFile = ""
	c.Secondary = config.Secondary{}
	c.Primary.NBD, c.Primary.Control = testenv.FreeAddr(t), testenv.FreeAddr(t)
	c.Primary.Secondary = s.cfg.Primary.Secondary
	c.Primary.SidefileLimit = 8 * config.MiB
	for i := range c.Primary.Subsystems {
		for j := range c.Primary.Subsystems[i].Volumes {
			c.Primary.Subsystems[i].Volumes[j].Size = 4 * config.MiB
		}
	}
	if edit != nil {
		edit(&c.Primary)
	}
	path := filepath.Join(dir, "primary.toml")
	return path, writeConfig(t, path, c)
}

// assertNeverLinked watches both ends for a while: a refused primary must
// never be reported connected.
func assertNeverLinked(t *testing.T, s *procSession, primaryCtl string, d time.Duration) {
	t.Helper()
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		if st := s.secondaryStatus(); st.Link == "connected" {
			t.Fatalf("secondary reports a connected primary (%s)", st.Peer)
		}
		if st, err := fetchStatus(primaryCtl); err == nil && st.Link == "connected" {
			t.Fatal("refused primary reports link connected")
		}
	}
}

func TestTLSMutual(t *testing.T) {
	t.Parallel()
	pkiDir := t.TempDir()
	ca := testpki.NewCA(t, pkiDir, "duplex-ca")
	wrongCA := testpki.NewCA(t, pkiDir, "other-ca")
	pCert, pKey := ca.Issue(t, pkiDir, "primary", testpki.Client)
	sCert, sKey := ca.Issue(t, pkiDir, "secondary", testpki.Server)
	badCert, badKey := wrongCA.Issue(t, pkiDir, "impostor", testpki.Client)

	s := newSession(t, sessionOpts{edit: func(c *config.Config) {
		c.Primary.TLSCert, c.Primary.TLSKey, c.Primary.TLSCA = pCert, pKey, ca.Path
		c.Secondary.TLSCert, c.Secondary.TLSKey, c.Secondary.TLSCA = sCert, sKey, ca.Path
	}})

	s.startSecondary() // for all three subtests
	t.Run("connects", func(t *testing.T) {
		s.t = t
		s.startPrimary()
		s.waitLinked()
		w := dialNBD(t, s.cfg.Primary.NBD, "vol2")
		data := bytes.Repeat([]byte("mutual TLS "), 4096/11+1)[:4096]
		if err := w.WriteAt(data, 8192); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, len(data))
		eventually(t, 30*time.Second, "the write to replicate over TLS", func() bool {
			// Each connection reads the group current when it opened.
			r := dialNBD(t, s.cfg.Secondary.NBD, "vol2")
			defer r.Close()
			if err := r.ReadAt(got, 8192); err != nil {
				t.Fatal(err)
			}
			return bytes.Equal(got, data)
		})
		if code := s.prim.stop(); code != 0 {
			t.Fatalf("primary exited %d after SIGTERM", code)
		}
	})
	if t.Failed() {
		return
	}

	t.Run("wrong CA refused", func(t *testing.T) {
		s.t = t
		path, pc := primaryOnly(t, s, func(p *config.Primary) {
			p.TLSCert, p.TLSKey, p.TLSCA = badCert, badKey, ca.Path
		})
		bad := startDaemon(t, "primary", path, filepath.Join(filepath.Dir(path), "primary.log"))
		pc = bad.ready(path, pc)
		line := waitLogLine(t, s.sec, 30*time.Second, "refused connection", "certificate")
		t.Logf("secondary: %s", line)
		assertNeverLinked(t, s, pc.Primary.Control, time.Second)
		t.Logf("refused primary: %s", waitLogLine(t, bad, 10*time.Second, "link to secondary lost"))
		bad.kill() // it could never ship its initial copy: SIGTERM would wait for the drain timeout
	})

	t.Run("plain TCP refused", func(t *testing.T) {
		s.t = t
		before := strings.Count(s.sec.log(), "refused connection")
		path, pc := primaryOnly(t, s, nil)
		plain := startDaemon(t, "primary", path, filepath.Join(filepath.Dir(path), "primary.log"))
		pc = plain.ready(path, pc)
		eventually(t, 30*time.Second, "the secondary to refuse the plaintext primary", func() bool {
			return strings.Count(s.sec.log(), "refused connection") > before
		})
		lines := strings.Split(s.sec.log(), "\n")
		var refusals []string
		for _, l := range lines {
			if strings.Contains(l, "refused connection") {
				refusals = append(refusals, l)
			}
		}
		line := refusals[len(refusals)-1]
		t.Logf("secondary: %s", line)
		if !strings.Contains(line, "TLS handshake") {
			t.Errorf("the refusal does not say it was the TLS handshake: %s", line)
		}
		assertNeverLinked(t, s, pc.Primary.Control, time.Second)
		t.Logf("refused primary: %s", waitLogLine(t, plain, 10*time.Second, "link to secondary lost"))
		plain.kill() // it could never ship its initial copy: SIGTERM would wait for the drain timeout
	})
	s.t = t
	s.stopSecondary()
}

// TestTLSRequiredOffLoopback: a primary whose secondary is not on loopback,
// without TLS and without insecure = true, refuses to start.
func TestTLSRequiredOffLoopback(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	c := config.Demo(dir)
	c.Session = "offbox"
	c.ControlTokenFile = ""
	c.Secondary = config.Secondary{}
	c.Primary.NBD, c.Primary.Control = testenv.FreeAddr(t), testenv.FreeAddr(t)
	c.Primary.Secondary = "192.0.2.10:7402" // TEST-NET-1: not loopback
	for i := range c.Primary.Subsystems {
		for j := range c.Primary.Subsystems[i].Volumes {
			c.Primary.Subsystems[i].Volumes[j].Size = 1 * config.MiB
		}
	}
	path := filepath.Join(dir, "duplex.toml")
	text, err := c.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, text, 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runDuplex(t, "primary", "--config", path)
	if code != 1 {
		t.Fatalf("duplex primary with a plaintext link off loopback exited %d, want 1\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	if !strings.Contains(out+errOut, "insecure") {
		t.Errorf("the refusal does not mention insecure:\n%s%s", out, errOut)
	}
	t.Logf("duplex primary: %s", strings.TrimSpace(errOut))
}
