package e2e

import (
	"bytes"
	"slices"
	"testing"
	"time"

	"duplex/pair"
	"duplex/site"
)

// holdVol2 starts a session of 1 MiB volumes and leaves the secondary holding
// for a resync of vol2 that cannot end: the resync begins and is suspended
// with the link down. It returns the session and a writer of whole 4 KiB
// blocks from the start of a volume.
func holdVol2(t *testing.T) (*opsSession, func(vol string, fill byte, blocks int)) {
	t.Helper()
	const volSize = 1 << 20
	cfg := newOpsConfig(t, volSize, 256<<10, time.Minute)
	s := &opsSession{t: t, cfg: cfg, net: newMemNet()}
	s.startSecondaryWith(site.SecondaryOptions{})
	s.startPrimary()
	t.Cleanup(func() {
		s.stopPrimary()
		s.stopSecondary()
	})
	for _, name := range cfg.VolumeNames() {
		s.waitState(name, pair.Duplex, time.Minute)
	}
	pm := s.prim.Pairs()
	write := func(vol string, fill byte, blocks int) {
		buf := bytes.Repeat([]byte{fill}, 4096)
		for i := range blocks {
			if err := s.prim.Write(t.Context(), vol, buf, int64(i)*4096); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := pm.Suspend("vol2"); err != nil {
		t.Fatal(err)
	}
	write("vol2", 0x22, volSize/4096)
	s.net.SetDown(true)
	if err := pm.Resume("vol2"); err != nil {
		t.Fatal(err)
	}
	if err := pm.Suspend("vol2"); err != nil {
		t.Fatal(err)
	}
	s.net.SetDown(false)
	waitFor(t, 30*time.Second, "the secondary holding for vol2's resync", func() bool {
		return slices.Equal(s.sec.Replica().Stats().Resyncing, []string{"vol2"})
	})
	return s, write
}
