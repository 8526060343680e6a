package site

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"duplex/control"
)

func sampleMap(samples []control.Sample) map[string]control.Sample {
	m := map[string]control.Sample{}
	for _, s := range samples {
		m[s.Name] = s
	}
	return m
}

// linkedSitesWithAWrite runs a primary and a secondary linked until the
// test ends, waits until every pair is duplex, and writes n bytes to vol1.
func linkedSitesWithAWrite(t *testing.T, n int) (*Primary, *Secondary) {
	t.Helper()
	cfg := linkConfig(t)
	x := runSites(t, cfg, cfg)
	s, p := x.s, x.p
	waitFor(t, 30*time.Second, "the pairs to be duplex", func() bool {
		for _, v := range p.Status().Volumes {
			if v.State != "duplex" {
				return false
			}
		}
		return true
	})
	if err := p.Write(context.Background(), "vol1", bytes.Repeat([]byte{7}, n), 0); err != nil {
		t.Fatal(err)
	}
	return p, s
}

// TestMetricsMeanOneThingAtBothSites: a metric exported by both sites
// means the same at both (one help text), and bytes_replicated_total
// counts the same bytes at both: the data of the updates the secondary
// journaled, as the primary hears of it by acknowledgements and as the
// secondary journals it. What each site alone knows has a name of its own:
// the bytes the primary sent on the link, the bytes the secondary applied.
func TestMetricsMeanOneThingAtBothSites(t *testing.T) {
	const n = 64 << 10
	p, s := linkedSitesWithAWrite(t, n)
	var pm, sm map[string]control.Sample
	waitFor(t, 30*time.Second, "both sites to count the write alike", func() bool {
		pm, sm = sampleMap(p.Samples()), sampleMap(s.samples())
		return pm["sidefile_bytes"].Value == 0 && pm["bytes_replicated_total"].Value >= n &&
			pm["bytes_replicated_total"].Value == sm["bytes_replicated_total"].Value &&
			sm["bytes_applied_total"].Value == sm["bytes_replicated_total"].Value
	})
	if sent, repl := pm["link_bytes_sent_total"].Value, pm["bytes_replicated_total"].Value; sent < repl {
		t.Errorf("primary: link_bytes_sent_total %v < bytes_replicated_total %v: the link carried the data and more", sent, repl)
	}
	for name, ps := range pm {
		if ss, both := sm[name]; both && ps.Help != ss.Help {
			t.Errorf("%s means one thing at the primary (%q) and another at the secondary (%q)", name, ps.Help, ss.Help)
		}
	}
	for _, name := range []string{"bytes_applied_total", "record_sets_received_total"} {
		if _, ok := pm[name]; ok {
			t.Errorf("the primary exports %s, which only the secondary knows", name)
		}
	}
	if _, ok := sm["link_bytes_sent_total"]; ok {
		t.Error("the secondary exports link_bytes_sent_total, which only the primary knows")
	}
}

// TestRecordSetsHeldCountsUpdatesHeld: with the link down and nothing
// written, the sidefile is empty and record_sets_held says so: the record
// set formed for each idle subsystem, which only carries its horizon, holds
// nothing. It counted that record set, one per subsystem however empty
// the sidefile (and, to a secondary that takes no bundles, one per
// subsystem per interval until acknowledged).
func TestRecordSetsHeldCountsUpdatesHeld(t *testing.T) {
	cfg := linkConfig(t)
	s, err := OpenSecondary(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), SecondaryOptions{})
	if err != nil {
		t.Fatal(err)
	}
	stop := runUntil(t, func(ctx context.Context) { s.Run(ctx) })
	cfg.Primary.Secondary = s.ListenAddr()
	p, _, _ := runPrimary(t, cfg)
	waitFor(t, 30*time.Second, "the pairs to be duplex with nothing held", func() bool {
		st := p.Status()
		for _, v := range st.Volumes {
			if v.State != "duplex" {
				return false
			}
		}
		return *st.SidefileBytes == 0 && p.Mover().Stats().HeldSets == 0
	})
	stop()
	waitFor(t, 30*time.Second, "the link to go down", func() bool { return !p.Mover().Stats().Connected })
	// The mover forms its record sets every interval: give it many.
	time.Sleep(20 * time.Duration(cfg.Interval))
	pm := sampleMap(p.Samples())
	if pm["sidefile_bytes"].Value != 0 {
		t.Fatalf("sidefile_bytes %v with nothing written", pm["sidefile_bytes"].Value)
	}
	if got := pm["record_sets_held"].Value; got != 0 {
		t.Errorf("record_sets_held %v with an empty sidefile (mover holds %d record sets, %d bytes)", got,
			p.Mover().Stats().HeldSets, p.Mover().Stats().HeldBytes)
	}
	if err := p.Write(context.Background(), "vol1", bytes.Repeat([]byte{7}, 4096), 0); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the write to be held", func() bool {
		pm := sampleMap(p.Samples())
		return pm["record_sets_held"].Value >= 1 && pm["sidefile_bytes"].Value > 0
	})
}
