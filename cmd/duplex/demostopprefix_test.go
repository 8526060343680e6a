package main

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"

	"duplex/config"
	"duplex/site"
)

// demoSecondaryGone starts both sites of a demo, stops the secondary,
// whose run then ends with secErr (nil: as it did), and writes to the
// primary: what it holds has nowhere to go, and its stop's drain gives up.
func demoSecondaryGone(t *testing.T, secErr error) *demoSession {
	t.Helper()
	if testing.Short() {
		t.Skip("runs both sites of the demo, and waits out the primary's patience with an unreachable secondary")
	}
	session := config.Demo(t.TempDir())
	portBase{set: true}.apply(session)
	cfg, err := writeDemoConfig(session)
	if err != nil {
		t.Fatal(err)
	}
	d, err := startDemoSession(context.Background(), cfg, session, slog.New(slog.DiscardHandler), site.SecondaryOptions{}, site.DiskRetry{})
	if err != nil {
		if d != nil {
			d.stop(false)
		}
		t.Fatal(err)
	}
	d.stopSec()
	if err := <-d.secDone; secErr == nil {
		secErr = err
	}
	d.secDone <- secErr
	if err := d.prim.Write(context.Background(), "vol1", bytes.Repeat([]byte{0x5a}, 4096), 0); err != nil {
		t.Fatal(err)
	}
	return d
}

// TestTheDemosFailedStopNamesThePrimaryOnce: a demo whose primary cannot
// ship what it holds (the secondary gone before the stop) fails its stop
// with the primary's error, which names the primary itself: the demo's
// error says "primary: " once, not "primary: primary: ".
func TestTheDemosFailedStopNamesThePrimaryOnce(t *testing.T) {
	d := demoSecondaryGone(t, nil)
	_, err := d.stop(false)
	if err == nil {
		t.Fatal("the demo's stop with its secondary gone and a write held: no error")
	}
	msg := err.Error()
	if !strings.HasPrefix(msg, "primary: ") || strings.Contains(msg, "primary: primary: ") {
		t.Errorf("the demo's failed stop says %q; want it to begin \"primary: \" once", msg)
	}
	t.Logf("the stop: %s", msg)
}
