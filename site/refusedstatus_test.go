package site

import (
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"
)

// TestARefusedPrimarysPairsSayTheyAreRefused: a primary with a new pair
// state (its disks replaced) is refused by the secondary, whose copies it
// has no record of. Its pairs' first copies read the volumes into the
// sidefile all the same, and its status showed them pending, copied
// whole, with no word of the refusal beside them, as if the copies went
// on. Each pair now says the secondary refuses this primary and why, and
// that nothing of it reaches the secondary.
func TestARefusedPrimarysPairsSayTheyAreRefused(t *testing.T) {
	p := refusedFreshPrimary(t)
	st := p.Status()
	if st.RefusalPasses {
		t.Errorf("the status of a primary refused for want of consent says the refusal passes: %q", st.LastError)
	}
	if len(st.Volumes) != 4 {
		t.Fatalf("the refused primary reports %d volumes, want 4", len(st.Volumes))
	}
	for _, v := range st.Volumes {
		if !strings.Contains(v.Note, "the secondary refuses this primary") || !strings.Contains(v.Note, "data generation") ||
			!strings.Contains(v.Note, "nothing of this pair reaches it") {
			t.Errorf("volume %s, %s, copied %d of %d: note %q; want it to say the secondary refuses this primary, why, "+
				"and that nothing of the pair reaches it", v.Name, v.State, v.CopiedBytes, v.SizeBytes, v.Note)
		}
		if v.Refused == nil || !*v.Refused {
			t.Errorf("volume %s: refused %v; want true", v.Name, v.Refused)
		}
	}
}

// refusedFreshPrimary links a session's sites until every pair is duplex,
// then starts its primary again with its pair state removed (its disks
// replaced, as it were), which the secondary refuses until an operator
// acts: it has no record of that primary's copies. It returns the primary
// once its status says so.
func refusedFreshPrimary(t *testing.T) *Primary {
	t.Helper()
	cfg := rejoinConfig(t)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	fwd, _, prim, _, stopPrim := linkSites(t, cfg, quiet, SecondaryOptions{})
	waitFor(t, time.Minute, "every pair duplex", func() bool { return allPairsDuplex(prim.Status()) })
	stopPrim()
	if err := os.RemoveAll(PairStateDir(cfg)); err != nil {
		t.Fatal(err)
	}
	p, err := OpenPrimary(cfg, quiet, linkOptions(fwd))
	if err != nil {
		t.Fatal(err)
	}
	runLinked(t, p)
	waitFor(t, time.Minute, "the secondary to refuse the fresh primary", func() bool {
		return strings.Contains(p.Status().LastError, "has no record")
	})
	return p
}
