package e2e

import (
	"bytes"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"duplex/config"
)

// TestPrimaryKilledWithMoreLoggedRegionsThanARecordSetCarries: a primary
// killed with 80 hot 1 MiB regions in its activity log, in a subsystem with
// the default sidefile, copies all 80 when it restarts: more than the
// secondary's payload limit (64 MiB) takes in one record set, less than half
// a sidefile, so the copies go as record sets, not as a resync of bitmaps.
// They must be split to what the secondary accepts: one record set of them
// all is refused as too large and sent again for ever, the link never looks
// down, and a SIGTERM waits for it. Here every region reaches the secondary
// and the primary stops on SIGTERM, having shipped everything.
func TestPrimaryKilledWithMoreLoggedRegionsThanARecordSetCarries(t *testing.T) {
	t.Parallel()
	const (
		regions = 80
		mib     = 1 << 20
	)
	s := newSession(t, sessionOpts{name: "e2e-crash-regions", volSize: 128 * config.MiB, edit: func(c *config.Config) {
		c.Primary.SidefileLimit = config.DefaultSidefileLimit
		// The writes wait in the sidefile while the secondary is away;
		// the session must not suspend itself into bitmaps meanwhile.
		c.Primary.SuspendAfter = config.Duration(10 * time.Minute)
	}})
	s.start()
	s.waitLinked()
	s.sec.kill()

	c := dialNBD(t, s.cfg.Primary.NBD, "vol1")
	buf := make([]byte, mib)
	for i := range regions {
		for j := range buf {
			buf[j] = byte(i + 1)
		}
		copy(buf, []byte("region"))
		buf[6] = byte(i)
		if err := c.WriteAt(buf, int64(i)*mib); err != nil {
			t.Fatalf("write to region %d: %v", i, err)
		}
	}
	s.prim.kill()

	s.startSecondary()
	s.startPrimary()
	if !strings.Contains(s.prim.log(), "recovered the regions of its activity log") {
		t.Fatalf("restarted primary did not copy its activity log's regions as record sets:\n%s", logTail(s.prim.log(), 2000))
	}
	m := regexp.MustCompile(`recovered the regions of its activity log.* bytes=(\d+)`).FindStringSubmatch(s.prim.log())
	if m == nil {
		t.Fatalf("no byte count in the recovery's log line:\n%s", logTail(s.prim.log(), 2000))
	}
	if n, _ := strconv.ParseInt(m[1], 10, 64); n < regions*mib {
		t.Fatalf("the recovery copies %d bytes, want the %d regions written (%d bytes)", n, regions, regions*mib)
	}
	deadline := time.Now().Add(3 * time.Minute)
	for {
		st := s.primaryStatus()
		if st.Link == "connected" && st.SidefileBytes != nil && *st.SidefileBytes == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the recovery copies did not all reach the secondary in 3 minutes (link %s, last_error %q)\n%s",
				st.Link, st.LastError, logTail(s.prim.log(), 3000))
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.waitLinked()
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.drainPrimary()
	}()
	select {
	case <-done:
	case <-time.After(3 * time.Minute):
		t.Fatal("the primary did not stop within 3 minutes of SIGTERM")
	}
	s.stopSecondary()
	s.assertImagesEqual()

	// The images being equal could also mean neither site kept the writes.
	p, _ := s.volumePaths("vol1")
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img := make([]byte, regions*mib)
	if _, err := f.ReadAt(img, 0); err != nil {
		t.Fatal(err)
	}
	for i := range regions {
		r := img[i*mib : (i+1)*mib]
		if !bytes.HasPrefix(r, []byte("region")) || r[6] != byte(i) || r[mib-1] != byte(i+1) {
			t.Fatalf("region %d of the primary's vol1 does not hold its write", i)
		}
	}
}
