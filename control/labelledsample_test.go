package control

import "testing"

// TestALabelledSampleIsExportedWithItsLabels: a metric that has one
// series per volume (a copy failing for how long) is exported with the
// volume's label beside the site's session and role, one series each.
func TestALabelledSampleIsExportedWithItsLabels(t *testing.T) {
	m := NewMetrics("s", "primary", func() []Sample {
		return []Sample{
			Gauge("copy_failing_seconds", "h", 3).Labelled("volume", "a"),
			Gauge("copy_failing_seconds", "h", 5).Labelled("volume", "b"),
		}
	})
	mfs, err := m.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "duplex_copy_failing_seconds" {
			continue
		}
		for _, mt := range mf.GetMetric() {
			ls := map[string]string{}
			for _, l := range mt.GetLabel() {
				ls[l.GetName()] = l.GetValue()
			}
			if ls["session"] != "s" || ls["role"] != "primary" {
				t.Errorf("series %v lacks the site's labels", ls)
			}
			got[ls["volume"]] = mt.GetGauge().GetValue()
		}
	}
	if len(got) != 2 || got["a"] != 3 || got["b"] != 5 {
		t.Fatalf("duplex_copy_failing_seconds by volume: %v, want a 3, b 5", got)
	}
}
