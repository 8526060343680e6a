package e2e

import (
	"bytes"
	"slices"
	"testing"
	"time"

	"duplex/pair"
	"duplex/site"
)

// duplexOpsVolSize is the size of startDuplexOps's volumes.
const duplexOpsVolSize = 1 << 20

// startDuplexOps starts an ops session of 1 MiB volumes, with a 256 KiB
// sidefile and opts at the secondary, and waits for every pair duplex.
func startDuplexOps(t *testing.T, opts site.SecondaryOptions) *opsSession {
	t.Helper()
	cfg := newOpsConfig(t, duplexOpsVolSize, 256<<10, time.Minute)
	s := &opsSession{t: t, cfg: cfg, net: newMemNet()}
	s.startSecondaryWith(opts)
	s.startPrimary()
	t.Cleanup(func() {
		s.stopPrimary()
		s.stopSecondary()
	})
	for _, name := range cfg.VolumeNames() {
		s.waitState(name, pair.Duplex, time.Minute)
	}
	return s
}

// writeBlocks writes blocks whole 4 KiB blocks of fill from the start of
// vol at the primary.
func (s *opsSession) writeBlocks(vol string, fill byte, blocks int) {
	s.t.Helper()
	buf := bytes.Repeat([]byte{fill}, 4096)
	for i := range blocks {
		if err := s.prim.Write(s.t.Context(), vol, buf, int64(i)*4096); err != nil {
			s.t.Fatal(err)
		}
	}
}

// holdVol2 starts a session of 1 MiB volumes (startDuplexOps) and leaves
// the secondary holding for a resync of vol2 that cannot end.
func holdVol2(t *testing.T, opts site.SecondaryOptions) *opsSession {
	t.Helper()
	s := startDuplexOps(t, opts)
	s.holdVol2Resync()
	return s
}

// holdVol2Resync leaves the secondary of a session of 1 MiB volumes
// holding for a resync of vol2 that cannot end: the resync (1 MiB through
// a 256 KiB sidefile) begins and is suspended with the link down.
func (s *opsSession) holdVol2Resync() {
	s.t.Helper()
	pm := s.prim.Pairs()
	if err := pm.Suspend("vol2"); err != nil {
		s.t.Fatal(err)
	}
	s.writeBlocks("vol2", 0x22, duplexOpsVolSize/4096)
	s.net.SetDown(true)
	if err := pm.Resume("vol2"); err != nil {
		s.t.Fatal(err)
	}
	if err := pm.Suspend("vol2"); err != nil {
		s.t.Fatal(err)
	}
	s.net.SetDown(false)
	waitFor(s.t, 30*time.Second, "the secondary holding for vol2's resync", func() bool {
		return slices.Equal(s.sec.Replica().Stats().Resyncing, []string{"vol2"})
	})
}
