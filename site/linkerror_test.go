package site

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"duplex/config"
	"duplex/internal/testenv"
	"duplex/internal/testpki"
	"duplex/tlsconf"
	"duplex/transport"
)

// These tests hold what an operator sees when the link does not come up:
// status (the JSON's last_error, which `duplex status` prints) and the log
// say why in words, keeping Go's own error text, and the log says it once
// however often the primary dials again.

// logBuffer collects a site's log lines.
type logBuffer struct{ testenv.LogBuffer }

// lines returns the log lines holding every one of words.
func (b *logBuffer) lines(words ...string) []string {
	var out []string
	for _, l := range strings.Split(b.String(), "\n") {
		all := l != ""
		for _, w := range words {
			all = all && strings.Contains(l, w)
		}
		if all {
			out = append(out, l)
		}
	}
	return out
}

// countingDialer counts the primary's attempts to reach the secondary.
type countingDialer struct {
	transport.Dialer
	n atomic.Int64
}

func (d *countingDialer) Dial(ctx context.Context) (transport.Conn, error) {
	d.n.Add(1)
	return d.Dialer.Dial(ctx)
}

// linkConfig is a small session on loopback with no NBD or control
// addresses: the sites' Status is read directly.
func linkConfig(t *testing.T) *config.Config {
	t.Helper()
	cfg := config.Demo(t.TempDir())
	cfg.ControlTokenFile = ""
	cfg.Primary.NBD, cfg.Primary.Control = "", ""
	cfg.Secondary.NBD, cfg.Secondary.Control = "", ""
	cfg.Secondary.Listen = testenv.FreeAddr(t) // a restarted secondary binds it again
	cfg.Primary.SidefileLimit = 4 * config.MiB
	for i := range cfg.Primary.Subsystems {
		for j := range cfg.Primary.Subsystems[i].Volumes {
			cfg.Primary.Subsystems[i].Volumes[j].Size = config.Size(1 << 20)
		}
	}
	return cfg
}

// runSecondary runs a secondary of cfg until the test ends, and returns it
// with its log.
func runSecondary(t *testing.T, cfg *config.Config) (*Secondary, *logBuffer) {
	t.Helper()
	logs := &logBuffer{}
	s, err := OpenSecondary(cfg, slog.New(slog.NewTextHandler(logs, nil)), SecondaryOptions{})
	if err != nil {
		t.Fatal(err)
	}
	runUntil(t, func(ctx context.Context) { s.Run(ctx) })
	return s, logs
}

// linkedSecondary runs a secondary of a link configuration until the
// test ends, and returns the configuration, its primary's link pointed at
// that secondary, the secondary, and the dialer of the link.
func linkedSecondary(t *testing.T) (*config.Config, *Secondary, transport.Dialer) {
	t.Helper()
	cfg := linkConfig(t)
	s, _ := runSecondary(t, cfg)
	cfg.Primary.Secondary = s.ListenAddr()
	return cfg, s, linkDialer(t, cfg)
}

// linkDialer is the dialer of the link of cfg's primary to its secondary.
func linkDialer(t *testing.T, cfg *config.Config) transport.Dialer {
	t.Helper()
	tlsConf, err := tlsconf.PrimaryLink(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &transport.TCPDialer{Addr: cfg.Primary.Secondary, TLS: tlsConf}
}

// runUntil calls run in a goroutine of its own, with a context that ends
// when the test does or when stop is called; stop waits for run to return.
func runUntil(t *testing.T, run func(ctx context.Context)) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		run(ctx)
	}()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return stop
}

// runPrimary runs a primary of cfg, dialling cfg.Primary.Secondary, until
// the test ends; it returns the primary, its log and its dial counter.
func runPrimary(t *testing.T, cfg *config.Config) (*Primary, *logBuffer, *countingDialer) {
	t.Helper()
	dialer := &countingDialer{Dialer: linkDialer(t, cfg)}
	logs := &logBuffer{}
	p, err := OpenPrimary(cfg, slog.New(slog.NewTextHandler(logs, nil)), PrimaryOptions{Dialer: dialer})
	if err != nil {
		t.Fatal(err)
	}
	runUntil(t, func(ctx context.Context) { p.Run(ctx, 0) })
	return p, logs, dialer
}

// sites are a secondary and a primary dialling it, run until the test
// ends, with their logs and the primary's dial counter.
type sites struct {
	s            *Secondary
	p            *Primary
	slogs, plogs *logBuffer
	dials        *countingDialer
}

// runSites runs a secondary of scfg and a primary of pcfg dialling it.
func runSites(t *testing.T, scfg, pcfg *config.Config) sites {
	t.Helper()
	var x sites
	x.s, x.slogs = runSecondary(t, scfg)
	pcfg.Primary.Secondary = x.s.ListenAddr()
	x.p, x.plogs, x.dials = runPrimary(t, pcfg)
	return x
}

// failingLink runs sites as runSites does whose link does not come up, and
// returns them once the primary's status says why (and the secondary's,
// atBoth) and the primary has dialled five times: the retries, which the
// logs must not say the error again for, have happened.
func failingLink(t *testing.T, scfg, pcfg *config.Config, atBoth bool) sites {
	t.Helper()
	x := runSites(t, scfg, pcfg)
	what := "a last error at the primary"
	if atBoth {
		what = "last errors at both sites"
	}
	waitFor(t, 30*time.Second, what, func() bool {
		return x.p.Status().LastError != "" && (!atBoth || x.s.Status().LastError != "")
	})
	dialedAgain(t, x.dials, 5)
	return x
}

// waitFor polls cond until it holds, or fails the test after d, with
// every goroutine's stack.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(d); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("after %s: %s; goroutines:\n%s", d, what, goroutines())
		}
	}
}

// wantWords fails unless got holds every one of words.
func wantWords(t *testing.T, where, got string, words ...string) {
	t.Helper()
	for _, w := range words {
		if !strings.Contains(got, w) {
			t.Errorf("%s lacks %q: %q", where, w, got)
		}
	}
}

// wantOnce fails unless the log holds exactly one line with all of words.
func wantOnce(t *testing.T, where string, logs *logBuffer, words ...string) {
	t.Helper()
	if got := logs.lines(words...); len(got) != 1 {
		t.Errorf("%s: %d lines with %q, want the error said once:\n%s", where, len(got), words, strings.Join(got, "\n"))
	}
}

// secured gives both sites of cfg mutual TLS: the primary's certificate
// signed by primaryCA, the secondary's by secondaryCA, each trusting ca.
func secured(t *testing.T, cfg *config.Config, ca, primaryCA, secondaryCA *testpki.CA, cnOnly bool) {
	t.Helper()
	dir := t.TempDir()
	use := testpki.Server
	if cnOnly {
		use = testpki.ServerCNOnly
	}
	pc, pk := primaryCA.Issue(t, dir, "primary", testpki.Client)
	sc, sk := secondaryCA.Issue(t, dir, "secondary", use)
	cfg.Primary.TLSCert, cfg.Primary.TLSKey, cfg.Primary.TLSCA = pc, pk, ca.Path
	cfg.Secondary.TLSCert, cfg.Secondary.TLSKey, cfg.Secondary.TLSCA = sc, sk, ca.Path
}

// dialedAgain waits until the primary has dialled at least n times: the
// retries the log must not repeat the error for have happened.
func dialedAgain(t *testing.T, d *countingDialer, n int64) {
	t.Helper()
	waitFor(t, 30*time.Second, "the primary to dial again", func() bool { return d.n.Load() >= n })
}

func TestLinkDownSaysWhyNothingListening(t *testing.T) {
	cfg := linkConfig(t)
	cfg.Primary.Secondary = testenv.FreeAddr(t) // reserved: nothing listens there
	p, logs, dials := runPrimary(t, cfg)
	waitFor(t, 30*time.Second, "a last error at the primary", func() bool { return p.Status().LastError != "" })
	dialedAgain(t, dials, 5)
	st := p.Status()
	if st.Link != "disconnected" {
		t.Errorf("link %q, want disconnected", st.Link)
	}
	wantWords(t, "primary's last_error", st.LastError, "connection refused", "nothing is listening at "+cfg.Primary.Secondary,
		"is the secondary running")
	wantOnce(t, "primary's log", logs, "cannot reach secondary", "connection refused")
	wantWords(t, "primary's log", strings.Join(logs.lines("cannot reach secondary"), "\n"), "nothing is listening")
}

func TestLinkDownSaysWhyCommonNameOnly(t *testing.T) {
	cfg := linkConfig(t)
	ca := testpki.NewCA(t, t.TempDir(), "duplex-ca")
	secured(t, cfg, ca, ca, ca, true)
	x := failingLink(t, cfg, cfg, false)
	st := x.p.Status()
	if st.Link != "disconnected" {
		t.Errorf("link %q, want disconnected", st.Link)
	}
	// Go's own words, then what to do about them.
	wantWords(t, "primary's last_error", st.LastError, "x509: certificate relies on legacy Common Name field",
		"subject alternative name", `"127.0.0.1"`, "tls_server_name")
	wantOnce(t, "primary's log", x.plogs, "cannot reach secondary", "legacy Common Name")
}

func TestLinkDownSaysWhySecondaryCertificateFromAnotherCA(t *testing.T) {
	cfg := linkConfig(t)
	dir := t.TempDir()
	ca, other := testpki.NewCA(t, dir, "duplex-ca"), testpki.NewCA(t, dir, "other-ca")
	secured(t, cfg, ca, ca, other, false)
	x := failingLink(t, cfg, cfg, false)
	wantWords(t, "primary's last_error", x.p.Status().LastError, "certificate signed by unknown authority",
		"the secondary's certificate is not signed by the CA in [primary] tls_ca")
	wantOnce(t, "primary's log", x.plogs, "cannot reach secondary", "unknown authority")
}

func TestLinkDownSaysWhyPrimaryCertificateFromAnotherCA(t *testing.T) {
	cfg := linkConfig(t)
	dir := t.TempDir()
	ca, other := testpki.NewCA(t, dir, "duplex-ca"), testpki.NewCA(t, dir, "other-ca")
	secured(t, cfg, ca, other, ca, false)
	x := failingLink(t, cfg, cfg, true)
	s, p, slogs, plogs := x.s, x.p, x.slogs, x.plogs
	waitFor(t, 10*time.Second, "the secondary to refuse the retries", func() bool { return s.Replica().Stats().Refused >= 4 })
	wantWords(t, "secondary's last_error", s.Status().LastError, "certificate signed by unknown authority",
		"the primary's certificate is not signed by the CA in [secondary] tls_ca")
	wantWords(t, "primary's last_error", p.Status().LastError, "the secondary refused this primary's certificate")
	wantOnce(t, "secondary's log", slogs, "refused connection", "unknown authority")
	// The refusal may come as the alert the first read returns or as a
	// failed send of the Hello: the alert is said, once.
	wantOnce(t, "primary's log", plogs, "link to secondary lost", "unknown certificate authority")
	if got := plogs.lines("level=WARN"); len(got) != 1 {
		t.Errorf("primary's log: %d warnings, want the refusal said once:\n%s", len(got), strings.Join(got, "\n"))
	}
}

func TestLinkDownSaysWhyAnotherSession(t *testing.T) {
	pcfg := linkConfig(t)
	pcfg.Session = "payroll"
	x := failingLink(t, linkConfig(t), pcfg, true)
	s, p, slogs, plogs := x.s, x.p, x.slogs, x.plogs
	waitFor(t, 10*time.Second, "the secondary to refuse the retries", func() bool { return s.Replica().Stats().Refused >= 4 })
	wantWords(t, "secondary's last_error", s.Status().LastError, `session "payroll" is not this secondary's session "demo"`)
	wantWords(t, "primary's last_error", p.Status().LastError, "refused the session", `session "payroll" is not this secondary's session "demo"`)
	wantOnce(t, "secondary's log", slogs, "refusing primary", "payroll")
	wantOnce(t, "primary's log", plogs, "refused the session")
}

// TestLinkDownSaysWhyTLSAtOneSiteOnly: one site has the link's TLS set and
// the other not. Both say so, in words, and once in the log: the
// connections come from a new port each time, which the log does not take
// for a new error.
func TestLinkDownSaysWhyTLSAtOneSiteOnly(t *testing.T) {
	for _, tc := range []struct {
		tlsAt                    string
		primaryWhy, secondaryWhy []string
	}{
		{"primary", []string{"the secondary closed the connection in the TLS handshake"},
			[]string{"the primary speaks TLS", "set tls_cert, tls_key and tls_ca in [secondary]"}},
		{"secondary", []string{"the secondary closed the connection before welcoming this primary"},
			[]string{"the primary does not speak TLS", "set tls_cert, tls_key and tls_ca in [primary]"}},
	} {
		t.Run("TLS only at the "+tc.tlsAt, func(t *testing.T) {
			cfg := linkConfig(t)
			ca := testpki.NewCA(t, t.TempDir(), "duplex-ca")
			secured(t, cfg, ca, ca, ca, false)
			if tc.tlsAt == "primary" {
				cfg.Secondary.TLSCert, cfg.Secondary.TLSKey, cfg.Secondary.TLSCA = "", "", ""
			} else {
				cfg.Primary.TLSCert, cfg.Primary.TLSKey, cfg.Primary.TLSCA = "", "", ""
			}
			x := failingLink(t, cfg, cfg, true)
			wantWords(t, "primary's last_error", x.p.Status().LastError, tc.primaryWhy...)
			wantWords(t, "secondary's last_error", x.s.Status().LastError, tc.secondaryWhy...)
			if got := x.plogs.lines("level=WARN"); len(got) != 1 {
				t.Errorf("primary's log: %d warnings, want the error said once:\n%s", len(got), strings.Join(got, "\n"))
			}
			if got := x.slogs.lines("level=WARN"); len(got) != 1 {
				t.Errorf("secondary's log: %d warnings, want the error said once:\n%s", len(got), strings.Join(got, "\n"))
			}
		})
	}
}
