package main

import (
	"strings"
	"testing"

	"duplex/bitmap"
	"duplex/site"
)

// TestARejoinPlanSaysAGoneImageWasGone: a volume copied whole because its
// image here was gone discards nothing here: its line says the image was
// gone, not "0 bytes here ... (discarded)", which reads as a volume that
// lost nothing.
func TestARejoinPlanSaysAGoneImageWasGone(t *testing.T) {
	all := bitmap.New(1<<20, bitmap.DefaultRegion)
	all.SetAll()
	v := site.RejoinVolume{Name: "vol1", Size: 1 << 20, Copy: 1 << 20, Union: all, Gone: true,
		Whole: "the volume's image is gone: /srv/vol1.img is missing: made anew, it takes the whole volume"}
	line := rejoinPlanLine(v, "the promoted site", "written there since")
	if strings.Contains(line, "discarded") || !strings.Contains(line, "image here was gone") {
		t.Errorf("the plan's line for a volume whose image here was gone: %q; want it to say the image was gone, nothing discarded", line)
	}
	v.Gone, v.Whole, v.Here = false, "", 4096
	if line := rejoinPlanLine(v, "the promoted site", "written there since"); !strings.Contains(line, "4096 bytes here may hold writes the promoted site never had (discarded)") {
		t.Errorf("the plan's line for a volume whose image is here: %q", line)
	}
}
