package control

import (
	"strings"
	"testing"
)

// TestLagDistributionHelpSaysHowEachSiteObserves: the secondary observes
// the lag at each consistency group it applies, the primary once a second
// (as the secondary last acknowledged it); one name means one thing at both
// sites, so the one help text must say both, where it said "observed at
// each consistency group", false at the primary.
func TestLagDistributionHelpSaysHowEachSiteObserves(t *testing.T) {
	help := map[string]string{}
	for _, role := range []string{"primary", "secondary"} {
		m := NewMetrics("s", role, func() []Sample { return nil })
		m.ObserveLag(0.5)
		mfs, err := m.reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == "duplex_lag_distribution_seconds" {
				help[role] = mf.GetHelp()
			}
		}
	}
	if help["primary"] != help["secondary"] {
		t.Errorf("duplex_lag_distribution_seconds means one thing at the primary (%q) and another at the secondary (%q)", help["primary"], help["secondary"])
	}
	for _, want := range []string{"once a second", "each consistency group"} {
		if !strings.Contains(help["primary"], want) {
			t.Errorf("duplex_lag_distribution_seconds help %q does not say %q", help["primary"], want)
		}
	}
}
