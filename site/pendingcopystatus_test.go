package site

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"testing"
	"time"
)

// TestAPendingResyncSaysWhatIsLeftOfItsPlannedCopy: a pair suspended and
// written 1 MiB since resumes with a resync of that 1 MiB on an 8 MiB
// volume. Its status said only copied_bytes, the volume's size less what is
// left of the copy: 7 MiB at the start, 8 MiB once the copy read every
// planned region, while the pair stays pending until the secondary has the
// copy's end. Neither the plan nor the stage could be read from it. The
// status now says the planned copy and what is left of it while it reads
// (held by a copy rate limit), and that its end awaits the secondary once
// it read all (the link held down), copied_bytes as before.
func TestAPendingResyncSaysWhatIsLeftOfItsPlannedCopy(t *testing.T) {
	const mib = 1 << 20
	cfg := rejoinConfig(t)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	fwd, _, prim, _, _ := linkSites(t, cfg, quiet, SecondaryOptions{})
	waitFor(t, time.Minute, "every pair duplex", func() bool { return allPairsDuplex(prim.Status()) })
	if err := prim.Pairs().Suspend("vol1"); err != nil {
		t.Fatal(err)
	}
	if err := prim.Write(context.Background(), "vol1", bytes.Repeat([]byte{7}, mib), 2*mib); err != nil {
		t.Fatal(err)
	}
	fwd.SetDown(true)
	slow := int64(64 << 10)
	if _, err := prim.SetRates(&slow, nil); err != nil {
		t.Fatal(err)
	}
	if err := prim.Pairs().Resume("vol1"); err != nil {
		t.Fatal(err)
	}
	// vol1 is the volume's status as the control API sends it.
	vol1 := func() map[string]any {
		for _, v := range prim.Status().Volumes {
			if v.Name != "vol1" {
				continue
			}
			b, err := json.Marshal(v)
			if err != nil {
				t.Fatal(err)
			}
			var m map[string]any
			if err := json.Unmarshal(b, &m); err != nil {
				t.Fatal(err)
			}
			return m
		}
		t.Fatal("the primary's status has no vol1")
		return nil
	}
	num := func(m map[string]any, k string) float64 {
		f, _ := m[k].(float64)
		return f
	}
	var v map[string]any
	waitFor(t, time.Minute, "vol1 pending", func() bool { v = vol1(); return v["state"] == "pending" })
	// 64 KiB a second: the 1 MiB copy takes some 15 s, the first read of
	// it after the resume has most of it left.
	if num(v, "copy_bytes") != mib || num(v, "copy_left_bytes") <= 0 || num(v, "copy_left_bytes") > mib ||
		num(v, "copied_bytes") != 8*mib-num(v, "copy_left_bytes") || v["copy_end_awaits_secondary"] == true {
		t.Errorf("vol1 during its resync: %v; want copy_bytes 1 MiB, copy_left_bytes above 0 and at most 1 MiB, "+
			"copied_bytes 8 MiB less what is left, its end not yet awaited", v)
	}
	unlimited := int64(0)
	if _, err := prim.SetRates(&unlimited, nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Minute, "vol1's copy read whole", func() bool { v = vol1(); return v["copy_end_awaits_secondary"] == true })
	if _, ok := v["copy_left_bytes"]; v["state"] != "pending" || num(v, "copy_bytes") != mib || !ok || num(v, "copy_left_bytes") != 0 ||
		num(v, "copied_bytes") != 8*mib {
		t.Errorf("vol1 with its copy read whole and the link down: %v; want pending, copy_bytes 1 MiB, copy_left_bytes 0 (said, not left out), copied_bytes 8 MiB", v)
	}
	fwd.SetDown(false)
	waitFor(t, time.Minute, "vol1 duplex", func() bool { v = vol1(); return v["state"] == "duplex" })
	if _, ok := v["copy_end_awaits_secondary"]; ok {
		t.Errorf("duplex vol1: %v; want no copy_end_awaits_secondary", v)
	}
}
