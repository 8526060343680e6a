package site

import (
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"

	"duplex/apply"
	"duplex/secondary"
)

// TestADeletedPairsGoneImageIsAccepted: after `pair delete`, the
// secondary's image of the volume is no longer a copy it keeps for the
// session: removed (or emptied), the secondary starts, made anew, and its
// status claims no consistency over the zeros; refused, the only way on
// was to re-create the whole secondary.
func TestADeletedPairsGoneImageIsAccepted(t *testing.T) {
	cfg := copiedSites(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	sv := cfg.Secondary.Volumes[0]
	st, err := apply.ReadState(StatePath(cfg))
	if err != nil {
		t.Fatal(err)
	}
	// As a deletion's marker leaves it: the copy the primary's as of then.
	st.Volumes[sv.Name] = apply.VolumeState{State: secondary.StateDeleted, Since: st.Time}
	if err := apply.WriteState(StatePath(cfg), st); err != nil {
		t.Fatal(err)
	}
	// Emptied after deleted: each on the image the run before made anew.
	for _, g := range []struct {
		name string
		do   func(path string) error
	}{
		{"deleted", os.Remove},
		{"emptied", func(path string) error { return os.WriteFile(path, nil, 0o600) }},
	} {
		t.Run(g.name, func(t *testing.T) {
			if err := g.do(sv.Path); err != nil {
				t.Fatal(err)
			}
			s, err := OpenSecondary(cfg, log, SecondaryOptions{})
			if err != nil {
				t.Fatalf("the secondary refused a deleted pair's %s image: %v", g.name, err)
			}
			defer s.Close()
			for _, v := range s.Status().Volumes {
				if v.Name != sv.Name {
					continue
				}
				if v.ConsistencyTime != "" || strings.HasPrefix(v.Consistency, "consistent") || strings.Contains(v.Consistency, "pair delete") {
					t.Errorf("the deleted pair's image made anew is reported %q, consistent as of %q", v.Consistency, v.ConsistencyTime)
				}
			}
		})
	}
}
