package site

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"duplex/disk"
)

// TestAStopThatGivesUpTheLogsLastWriteAfterACleanSaveSaysClean: the
// primary's stop ships everything and saves the pair state clean; then
// the activity log's disk stops answering, and the stop gives the log's
// last write up. Nothing is at risk: the next start finds the pair state
// clean and needs none of the log's marks (it discards them). So Run
// returns nil (exit 0), and its log must say the stop is clean too, as a
// warning naming the disk, not an error that an operator's scripts would
// take for a stop that lost something. Once the disk answers, the restart
// makes the secondary's volumes the primary's.
func TestAStopThatGivesUpTheLogsLastWriteAfterACleanSaveSaysClean(t *testing.T) {
	held := make(chan struct{})
	release := func() {
		select {
		case <-held:
		default:
			close(held)
		}
	}
	var p *Primary
	p, s, _, logs, stop := stateDiskHangingOf(t, time.Second, 0, func(o *PrimaryOptions) {
		fs := o.FS.(*disk.Injector)
		o.afterStopSave = func() {
			for _, op := range []disk.Op{disk.OpWrite, disk.OpSync} {
				fs.Inject(disk.Fault{Op: op, Under: filepath.Join(p.stateDir, "activity.log"), Hang: held})
			}
		}
	}, func(*stateDiskHang, string) {})
	// Before the wait of stateDiskHangingOf's cleanup for the log's last
	// write to end, which comes before the test's directory is removed.
	t.Cleanup(release)
	cfg := p.cfg
	var err error
	within(t, 20*time.Second, "the stop", func() { err = stop() })
	if err != nil {
		t.Errorf("the stop, clean but for the log's last write: %v, want nil", err)
	}
	// The lines that say it gave the write up: the stop's lines on the
	// lock it keeps for it, and lets go, say nothing of its cleanness.
	gaveUp := logs.lines("activity log's last write has not ended")
	if len(gaveUp) == 0 {
		t.Fatalf("the stop's log does not say it gave the activity log's last write up:\n%s", logs.String())
	}
	for _, l := range gaveUp {
		if strings.Contains(l, "level=ERROR") || !strings.Contains(l, "clean") {
			t.Errorf("the stop returned nil, and its log says of the log's last write %q: want a warning that the stop is clean all the same", l)
		}
	}
	if n := len(logs.lines("level=ERROR")); n > 0 {
		t.Errorf("a stop that returned nil logged %d errors:\n%s", n, logs.String())
	}
	b, rerr := os.ReadFile(filepath.Join(PairStateDir(cfg), "pairs.json"))
	var st struct {
		Clean bool `json:"clean"`
	}
	if rerr != nil || json.Unmarshal(b, &st) != nil || !st.Clean {
		t.Errorf("the pair state the stop saved: %v, clean %v; want clean", rerr, st.Clean)
	}
	release()
	restartMakesTheSecondarysVolumesThePrimarys(t, cfg, s)
}
