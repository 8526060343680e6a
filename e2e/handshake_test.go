package e2e

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"duplex/config"
	"duplex/internal/testenv"
	"duplex/pair"
	"duplex/site"
	"duplex/transport"
	"duplex/volume"
)

// logBuffer collects a site's log lines for a test to search.
type logBuffer struct{ testenv.LogBuffer }

func (l *logBuffer) logger() *slog.Logger { return slog.New(slog.NewTextHandler(l, nil)) }

// withVolumeSize returns a copy of cfg in which volume vol has the given size.
func withVolumeSize(cfg *config.Config, vol string, size config.Size) *config.Config {
	c := *cfg
	c.Primary.Subsystems = append([]config.Subsystem(nil), cfg.Primary.Subsystems...)
	for i := range c.Primary.Subsystems {
		vs := append([]config.Volume(nil), c.Primary.Subsystems[i].Volumes...)
		for j := range vs {
			if vs[j].Name == vol {
				vs[j].Size = size
			}
		}
		c.Primary.Subsystems[i].Volumes = vs
	}
	return &c
}

// runSite runs a site until the test ends.
func runSite(t *testing.T, run func(ctx context.Context) error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Error("site did not stop within 30s")
		}
	})
}

// TestVolumeMismatchRefusedAtConnect: a primary whose volume is larger than
// the secondary's is refused at connect, before any update; the refusal, with
// both sides' sizes, is in the primary's log and in both sites' status as
// last_error, and the link never comes up.
func TestVolumeMismatchRefusedAtConnect(t *testing.T) {
	t.Parallel()
	scfg := newOpsConfig(t, 4<<20, 16<<20, time.Minute)
	pcfg := withVolumeSize(scfg, "vol4", 8<<20)
	net := transport.NewMemNetwork(1, transport.Faults{})
	var plog, slogs logBuffer
	sec, err := site.OpenSecondary(scfg, slogs.logger(), site.SecondaryOptions{Listener: net})
	if err != nil {
		t.Fatal(err)
	}
	runSite(t, sec.Run)
	prim, err := site.OpenPrimary(pcfg, plog.logger(), site.PrimaryOptions{Dialer: net})
	if err != nil {
		t.Fatal(err)
	}
	// The drain on stop cannot succeed: the secondary never takes a record set.
	runSite(t, func(ctx context.Context) error { return prim.Run(ctx, 100*time.Millisecond) })

	want := []string{`"vol4"`, "8388608", "4194304"}
	has := func(s string) bool {
		for _, w := range want {
			if !strings.Contains(s, w) {
				return false
			}
		}
		return true
	}
	deadline := time.Now().Add(20 * time.Second)
	for !has(prim.Status().LastError) {
		if st := prim.Status(); st.Link == "connected" {
			t.Fatalf("the primary linked to a secondary whose vol4 is half its size (status %+v)", st)
		}
		if time.Now().After(deadline) {
			t.Fatalf("primary last_error %q does not name %v within 20s\nprimary log:\n%s", prim.Status().LastError, want, plog.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("primary last_error: %s", prim.Status().LastError)
	if !has(sec.Status().LastError) {
		t.Errorf("secondary last_error %q does not name %v", sec.Status().LastError, want)
	}
	var logged bool
	for _, line := range strings.Split(plog.String(), "\n") {
		// The text handler escapes the quotes around the name.
		logged = logged || (strings.Contains(line, "refused") && has(strings.ReplaceAll(line, `\"`, `"`)))
	}
	if !logged {
		t.Errorf("no primary log line says the secondary refused, with %v:\n%s", want, plog.String())
	}
	if st := prim.Status(); st.Link == "connected" {
		t.Errorf("primary link %q after the refusal", st.Link)
	}
}

// TestPrimaryRestartedWithClockBehindLosesNothing: a primary restarts on a
// clock an hour behind the secondary's consistency time and takes a write
// before the link is up. The write must reach the secondary: its stamp may
// not sort before what the secondary already holds.
func TestPrimaryRestartedWithClockBehindLosesNothing(t *testing.T) {
	t.Parallel()
	cfg := newOpsConfig(t, 4<<20, 16<<20, time.Minute)
	s := startOps(t, cfg)
	for _, name := range cfg.VolumeNames() {
		s.waitState(name, pair.Duplex, 60*time.Second)
	}
	ctx := context.Background()
	if err := s.prim.Write(ctx, "vol1", bytes.Repeat([]byte{0xa1}, 4096), 0); err != nil {
		t.Fatal(err)
	}
	s.stopPrimary()

	s.net.SetDown(true)
	behind := func() int64 { return time.Now().Add(-time.Hour).UnixNano() }
	p, err := site.OpenPrimary(cfg, quietLogger(), site.PrimaryOptions{Dialer: s.net, Clock: behind})
	if err != nil {
		t.Fatal(err)
	}
	pctx, cancel := context.WithCancel(context.Background())
	s.prim, s.primRun, s.primErr = p, cancel, make(chan error, 1)
	go func() { s.primErr <- p.Run(pctx, time.Minute) }()
	if err := p.Write(ctx, "vol1", bytes.Repeat([]byte{0xb2}, 4096), 4096); err != nil {
		t.Fatal(err)
	}
	s.net.SetDown(false)
	s.assertImagesEqual()
}

// TestSizeLeftOutRefusedAtConnect: with the volumes' sizes left out of the
// config, each site takes its existing images' sizes. A secondary whose image
// is missing cannot start (there is no size to create it with) and says how
// to fix that; one whose vol4 image is smaller than the primary's is refused
// at connect, with both sizes, as with configured sizes.
func TestSizeLeftOutRefusedAtConnect(t *testing.T) {
	t.Parallel()
	cfg := newOpsConfig(t, 4<<20, 16<<20, time.Minute)
	for _, name := range cfg.VolumeNames() {
		cfg = withVolumeSize(cfg, name, 0)
		pv, _, _ := cfg.PrimaryVolume(name)
		if err := os.MkdirAll(filepath.Dir(pv.Path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(pv.Path, make([]byte, 4<<20), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	net := transport.NewMemNetwork(1, transport.Faults{})
	_, err := site.OpenSecondary(cfg, quietLogger(), site.SecondaryOptions{Listener: net})
	if !errors.Is(err, volume.ErrNoSize) || !strings.Contains(err.Error(), "give the size") {
		t.Fatalf("a secondary without its images and without sizes: %v, want ErrNoSize saying how to fix it", err)
	}
	t.Logf("secondary without images: %v", err)
	for _, name := range cfg.VolumeNames() {
		size := 4 << 20
		if name == "vol4" {
			size = 2 << 20
		}
		sv, _ := cfg.SecondaryVolume(name)
		if err := os.MkdirAll(filepath.Dir(sv.Path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(sv.Path, make([]byte, size), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	sec, err := site.OpenSecondary(cfg, quietLogger(), site.SecondaryOptions{Listener: net})
	if err != nil {
		t.Fatal(err)
	}
	runSite(t, sec.Run)
	prim, err := site.OpenPrimary(cfg, quietLogger(), site.PrimaryOptions{Dialer: net})
	if err != nil {
		t.Fatal(err)
	}
	runSite(t, func(ctx context.Context) error { return prim.Run(ctx, 100*time.Millisecond) })
	want := []string{`"vol4"`, "4194304", "2097152"}
	deadline := time.Now().Add(20 * time.Second)
	for {
		last := prim.Status().LastError
		ok := true
		for _, w := range want {
			ok = ok && strings.Contains(last, w)
		}
		if ok {
			break
		}
		if st := prim.Status(); st.Link == "connected" {
			t.Fatalf("the primary linked to a secondary whose vol4 is half its size (status %+v)", st)
		}
		if time.Now().After(deadline) {
			t.Fatalf("primary last_error %q does not name %v within 20s", last, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
