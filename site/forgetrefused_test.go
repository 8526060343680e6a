package site

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"duplex/apply"
	"duplex/config"
	"duplex/pair"
	"duplex/transport"
)

// withoutVolume returns a copy of cfg without vol: out of [primary] only
// (a primary's config that dropped it, or the secondary's loaded copy of
// a config both sites share, edited since), or out of both sections.
func withoutVolume(cfg *config.Config, vol string, both bool) *config.Config {
	c := *cfg
	c.Primary.Subsystems = nil
	for _, sc := range cfg.Primary.Subsystems {
		sc.Volumes = slicesWithout(sc.Volumes, func(v config.Volume) bool { return v.Name == vol })
		c.Primary.Subsystems = append(c.Primary.Subsystems, sc)
	}
	if both {
		c.Secondary.Volumes = slicesWithout(cfg.Secondary.Volumes, func(v config.SecondaryVolume) bool { return v.Name == vol })
	}
	return &c
}

func slicesWithout[T any](s []T, drop func(T) bool) []T {
	var out []T
	for _, v := range s {
		if !drop(v) {
			out = append(out, v)
		}
	}
	return out
}

// pairsAtDial is a dialer that records, at its first dial, the volumes
// the primary's pair state on disk names then.
type pairsAtDial struct {
	transport.Dialer
	dir   string
	once  sync.Once
	mu    sync.Mutex
	named map[string]int64
	err   error
}

func (d *pairsAtDial) Dial(ctx context.Context) (transport.Conn, error) {
	d.once.Do(func() {
		named, err := pair.Sizes(nil, d.dir)
		d.mu.Lock()
		d.named, d.err = named, err
		d.mu.Unlock()
	})
	return d.Dialer.Dial(ctx)
}

// TestAPrimaryStartedWithoutAVolumeKeepsTheSecondarysCopy: a primary
// started without a volume (a replacement, or a slip in its config)
// while the secondary's config, as it read it, still has the volume is
// refused: the secondary keeps its copy consistent and says why, the
// primary's status saying it too. Its pair state on disk names no pair
// of the volume before it dials (a kill after a link leaves none behind
// to pair a copy the secondary forgot). Taken out of the secondary's
// config too, the volume is forgotten at the link; added back at both
// sites, it is a new pair, copied whole, and the sites end identical.
func TestAPrimaryStartedWithoutAVolumeKeepsTheSecondarysCopy(t *testing.T) {
	cfg := rejoinConfig(t)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx := context.Background()
	fwd, sec, prim, stopSec, stopPrim := linkSites(t, cfg, quiet, SecondaryOptions{})
	waitFor(t, time.Minute, "every pair duplex", func() bool { return allPairsDuplex(prim.Status()) })
	if err := prim.Write(ctx, "vol2", bytes.Repeat([]byte{2}, 4096), 1<<20); err != nil {
		t.Fatal(err)
	}
	quiesceMover(t, prim)
	stopPrim()
	waitFor(t, time.Minute, "vol2's write applied", func() bool {
		got := make([]byte, 1)
		return sec.ReadAt("vol2", got, 1<<20) == nil && got[0] == 2
	})
	before := sec.Replica().Volume("vol2")
	if !before.Consistent {
		t.Fatalf("vol2 at the secondary: %+v, want consistent", before)
	}

	// The primary alone without vol2.
	primCfg := withoutVolume(cfg, "vol2", false)
	dialer := &pairsAtDial{Dialer: fwd, dir: PairStateDir(cfg)}
	p2, err := OpenPrimary(primCfg, quiet, linkOptions(dialer))
	if err != nil {
		t.Fatal(err)
	}
	stopP2 := runLinked(t, p2)
	waitFor(t, time.Minute, "the primary refused", func() bool {
		return strings.Contains(p2.Mover().Stats().LastError, `"vol2"`)
	})
	reason := p2.Mover().Stats().LastError
	for _, w := range []string{"consistent as of", "add it back to the primary's config", "take it out of this secondary's config"} {
		if !strings.Contains(reason, w) {
			t.Errorf("the primary's last error %q does not say %s", reason, w)
		}
	}
	if v := sec.Replica().Volume("vol2"); v != before {
		t.Errorf("the primary refused, the secondary reports vol2 %+v, want as before %+v", v, before)
	}
	dialer.mu.Lock()
	if _, ok := dialer.named["vol2"]; ok || dialer.err != nil {
		t.Errorf("at the primary's first dial its pair state names %v (%v), want no vol2: saved before the link", dialer.named, dialer.err)
	}
	dialer.mu.Unlock()
	stopP2()
	stopSec()
	st, err := apply.ReadState(StatePath(cfg))
	if err != nil {
		t.Fatal(err)
	}
	if v := st.Volumes["vol2"]; v.Inconsistent || len(st.Forgotten) != 0 {
		t.Errorf("the secondary's state holds vol2 as %+v, forgotten %v; want its copy kept", v, st.Forgotten)
	}

	// Out of the secondary's config too: forgotten at the link.
	secCfg := withoutVolume(cfg, "vol2", true)
	fwd2 := transport.NewMemNetwork(3, transport.Faults{})
	s2, err := OpenSecondary(secCfg, quiet, SecondaryOptions{Listener: fwd2})
	if err != nil {
		t.Fatal(err)
	}
	stopS2 := runFor(t, s2.Run)
	p3, err := OpenPrimary(primCfg, quiet, linkOptions(fwd2))
	if err != nil {
		t.Fatal(err)
	}
	stopP3 := runLinked(t, p3)
	waitFor(t, time.Minute, "the primary linked", func() bool { return p3.Mover().Stats().Connected })
	stopP3()
	stopS2()
	if st, err := apply.ReadState(StatePath(cfg)); err != nil || st.Forgotten["vol2"] == 0 {
		t.Errorf("linked without vol2 at both sites, the secondary's state forgot %v (%v), want vol2", st.Forgotten, err)
	}

	// Added back at both: a new pair, copied whole.
	fwd3 := transport.NewMemNetwork(4, transport.Faults{})
	s3, err := OpenSecondary(cfg, quiet, SecondaryOptions{Listener: fwd3})
	if err != nil {
		t.Fatal(err)
	}
	runFor(t, s3.Run)
	p4, err := OpenPrimary(cfg, quiet, linkOptions(fwd3))
	if err != nil {
		t.Fatal(err)
	}
	runLinked(t, p4)
	waitFor(t, time.Minute, "every pair duplex again", func() bool { return allPairsDuplex(p4.Status()) })
	quiesceMover(t, p4)
	sameImages(t, cfg, "with vol2 added back", p4, s3)
	if v := s3.Replica().Volume("vol2"); !v.Consistent {
		t.Errorf("vol2 copied whole again: %+v, want consistent", v)
	}
}
