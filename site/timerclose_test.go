package site

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestACleanStopRecordsTheTimersLastStamp: a clean stop writes the last
// stamp handed out as the timer's mark, so that the next run stamps right
// after it rather than up to a lease ahead of the clock (which the
// secondary's consistency time would then run ahead of).
func TestACleanStopRecordsTheTimersLastStamp(t *testing.T) {
	cfg := linkConfig(t)
	s, _ := runSecondary(t, cfg)
	cfg.Primary.Secondary = s.ListenAddr()
	p, stop := startPrimaryDraining(t, cfg, healthyReadWait, 10*time.Second)
	waitFor(t, 30*time.Second, "every pair duplex", func() bool { return allPairsDuplex(p.Status()) })
	if err := p.Write(context.Background(), "vol1", bytes.Repeat([]byte{0x31}, 4096), 0); err != nil {
		t.Fatal(err)
	}
	if err := stop(); err != nil {
		t.Fatalf("the stop: %v", err)
	}
	b, err := os.ReadFile(filepath.Join(p.stateDir, "timer.json"))
	if err != nil {
		t.Fatal(err)
	}
	var mark struct {
		StampsBelow int64 `json:"stamps_below_ns"`
	}
	if err := json.Unmarshal(b, &mark); err != nil {
		t.Fatalf("timer.json %q: %v", b, err)
	}
	if last := p.timer.Last(); mark.StampsBelow != last+1 {
		t.Errorf("after a clean stop, the timer's mark is %s past its last stamp, want just past it (the last stamp recorded)",
			time.Duration(mark.StampsBelow-last))
	}
}
