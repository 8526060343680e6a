package e2e

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"duplex/site"
)

// TestPrimaryRunWithoutActivityLogKilledLosesNothing: a primary whose
// activity log cannot be opened (here a directory stands where the file
// was) runs without one. With the secondary down, a write is acknowledged
// and held in the sidefile only; the primary is killed. The log is back for
// the next start, as the clean stop of the run before left it, without
// marks: the restart still copies every pair in full, and the secondary
// ends with the write.
func TestPrimaryRunWithoutActivityLogKilledLosesNothing(t *testing.T) {
	t.Parallel()
	s := newSession(t, sessionOpts{name: "e2e-nolog", volSize: 16 << 20})
	s.start()
	s.waitLinked()
	// Stopped cleanly, the first run leaves its log without marks.
	s.drainPrimary()

	logPath := filepath.Join(site.PairStateDir(s.cfg), "activity.log")
	saved := logPath + ".saved"
	if err := os.Rename(logPath, saved); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(logPath, 0o755); err != nil {
		t.Fatal(err)
	}
	s.startPrimary()
	if !strings.Contains(s.prim.log(), "activity log unusable") {
		t.Fatalf("the primary does not say it runs without its activity log:\n%s", logTail(s.prim.log(), 2000))
	}
	s.waitLinked()
	// The state on disk says duplex too: the next start would otherwise
	// copy the pairs still pending in full, log or not.
	statePath := filepath.Join(site.PairStateDir(s.cfg), "pairs.json")
	eventually(t, 30*time.Second, "the pair state on disk to say every pair is duplex", func() bool {
		b, err := os.ReadFile(statePath)
		if err != nil {
			return false
		}
		var st struct {
			Pairs []struct {
				State string `json:"state"`
			} `json:"pairs"`
		}
		if json.Unmarshal(b, &st) != nil || len(st.Pairs) == 0 {
			return false
		}
		for _, p := range st.Pairs {
			if p.State != "duplex" {
				return false
			}
		}
		return true
	})

	s.stopSecondary()
	name := s.cfg.VolumeNames()[0]
	const off = 2 << 20
	want := bytes.Repeat([]byte("acknowledged without a log "), 4096/27+1)[:4096]
	c := dialNBD(t, s.cfg.Primary.NBD, name)
	if err := c.WriteAt(want, off); err != nil {
		t.Fatalf("write with the secondary down: %v", err)
	}
	c.Close()
	s.prim.kill()

	if err := os.Remove(logPath); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(saved, logPath); err != nil {
		t.Fatal(err)
	}
	s.startSecondary()
	s.startPrimary()
	if !strings.Contains(s.prim.log(), "the last run had no activity log") {
		t.Errorf("the restart does not say why it copies every pair in full:\n%s", logTail(s.prim.log(), 2000))
	}
	s.waitLinked()
	s.drainPrimary()
	s.stopSecondary()
	_, sec := s.volumePaths(name)
	f, err := os.Open(sec)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got := make([]byte, len(want))
	if _, err := f.ReadAt(got, off); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("the write acknowledged at %s offset %d by the run without activity log, killed with it in the sidefile, "+
			"is not at the secondary after the restart with the log back (primary log:\n%s)", name, off, logTail(s.prim.log(), 2000))
	}
	s.assertImagesEqual()
}
