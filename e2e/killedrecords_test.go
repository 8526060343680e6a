package e2e

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"duplex/config"
	"duplex/nbd"
)

// TestKilledWhileWritingItsRecordsStartsAgain kills each site -9, again
// and again, at random moments while it writes its records (the
// secondary's state file with every group applied and its identity when a
// new primary process links; the primary's timer lease and pair state
// during the initial copies and under writes), and starts it again: each
// start must succeed, and at the end the secondary holds what the primary
// does. A record refused as damaged after a kill -9 would be one that its
// writer leaves half written.
func TestKilledWhileWritingItsRecordsStartsAgain(t *testing.T) {
	rounds, err := strconv.Atoi(os.Getenv("DUPLEX_KILL_ROUNDS"))
	if err != nil || rounds <= 0 {
		t.Skip("kills and starts each site many times (about 4 s a round): set DUPLEX_KILL_ROUNDS=N to run N rounds")
	}
	s := newSession(t, sessionOpts{volSize: 16 * config.MiB})
	s.startSecondary()
	s.startPrimary()

	stop := make(chan struct{})
	var wg sync.WaitGroup
	names := s.cfg.VolumeNames()
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf := make([]byte, 4096)
		var c *nbd.Client
		for n := 0; ; n++ {
			select {
			case <-stop:
				if c != nil {
					c.Close()
				}
				return
			default:
			}
			if c == nil {
				var err error
				if c, err = nbd.Dial(s.cfg.Primary.NBD, names[n%len(names)]); err != nil {
					time.Sleep(20 * time.Millisecond)
					continue
				}
			}
			buf[0] = byte(n)
			if err := c.WriteAt(buf, int64(rand.IntN(int(c.Size()/4096)))*4096); err != nil {
				c.Close()
				c = nil
			}
		}
	}()
	stopWriter := sync.OnceFunc(func() {
		close(stop)
		wg.Wait()
	})
	defer stopWriter()

	for i := range rounds {
		time.Sleep(time.Duration(rand.IntN(400)) * time.Millisecond)
		s.sec.kill()
		s.startSecondary()
		time.Sleep(time.Duration(rand.IntN(400)) * time.Millisecond)
		s.prim.kill()
		s.startPrimary()
		t.Logf("round %d: both sites killed -9 and started again", i)
	}
	stopWriter()
	s.waitLinked()
	s.drainPrimary()
	s.stopSecondary()
	s.assertImagesEqual()
	filepath.WalkDir(s.dir, func(path string, e os.DirEntry, err error) error {
		if err == nil && strings.Contains(e.Name(), ".tmp") {
			t.Logf("a temporary file a kill left: %s", path)
		}
		return nil
	})
	for _, l := range []string{s.prim.log(), s.sec.log()} {
		if strings.Contains(l, "damaged") {
			t.Errorf("a log says damaged:\n%s", logTail(l, 4000))
		}
	}
}
