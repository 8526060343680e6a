package e2e

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"
	"time"

	"duplex/apply"
	"duplex/config"
	"duplex/consistency"
	"duplex/journal"
	"duplex/recordset"
	"duplex/site"
)

// without returns c with volume name taken out of both sites.
func without(c *config.Config, name string) *config.Config {
	out := *c
	out.Primary.Subsystems = nil
	for _, sc := range c.Primary.Subsystems {
		var vols []config.Volume
		for _, v := range sc.Volumes {
			if v.Name != name {
				vols = append(vols, v)
			}
		}
		sc.Volumes = vols
		out.Primary.Subsystems = append(out.Primary.Subsystems, sc)
	}
	out.Secondary.Volumes = nil
	for _, v := range c.Secondary.Volumes {
		if v.Name != name {
			out.Secondary.Volumes = append(out.Secondary.Volumes, v)
		}
	}
	return &out
}

// unappliedNaming returns the groups the stopped secondary of cfg journaled
// after the group its state file names, and the last of them that names
// vol (0 if none).
func unappliedNaming(t *testing.T, cfg *config.Config, vol string) (groups int, last uint64) {
	t.Helper()
	st, err := apply.ReadState(site.StatePath(cfg))
	if err != nil {
		t.Fatal(err)
	}
	j, err := journal.Open(cfg.Secondary.Journal, journal.Options{MaxRecord: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	err = j.Replay(st.Group, func(index uint64, data []byte) error {
		g, _, err := consistency.DecodeGroup(data, recordset.Limits{MaxHeader: 1 << 30, MaxPayload: 1 << 30, MaxRecords: 1 << 26})
		if err != nil {
			return err
		}
		groups++
		for _, u := range g.Updates {
			if u.Volume == vol && u.Kind != recordset.KindMarker {
				last = index
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return groups, last
}

// TestForgetAVolumeAfterAKillWithItsGroupsUnapplied: a client writes vol2,
// waits for the ack, then writes vol1, over and over, and the secondary is
// killed -9 in the middle, with groups that name vol2 journaled and not
// applied; the primary is killed -9 too. vol2 is taken out of both sites'
// configs, as the forget path says, and both started again. The
// secondary starts (before: it exited, a journaled group naming a volume
// it no longer has), has those groups wait, and once the primary links
// without vol2 forgets it and applies them to the other volumes; the
// sites end identical.
func TestForgetAVolumeAfterAKillWithItsGroupsUnapplied(t *testing.T) {
	s := newSession(t, sessionOpts{volSize: 8 * config.MiB})
	s.start()
	full := s.cfg
	c1, c2 := dialNBD(t, full.Primary.NBD, "vol1"), dialNBD(t, full.Primary.NBD, "vol2")
	block := func(i uint32) []byte {
		b := bytes.Repeat([]byte{byte(i)}, 4096)
		binary.LittleEndian.PutUint32(b, i)
		return b
	}
	var groups int
	var named uint64
	for attempt := 1; ; attempt++ {
		stop, done := make(chan struct{}), make(chan error, 1)
		go func() {
			for i := uint32(1); ; i++ {
				select {
				case <-stop:
					done <- nil
					return
				default:
				}
				off := int64(i%1024) * 4096
				if err := c2.WriteAt(block(i), off); err != nil {
					done <- err
					return
				}
				if err := c1.WriteAt(block(i), off); err != nil {
					done <- err
					return
				}
			}
		}()
		time.Sleep(400 * time.Millisecond)
		s.sec.kill()
		close(stop)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if groups, named = unappliedNaming(t, full, "vol2"); named != 0 {
			break
		}
		if attempt == 8 {
			t.Fatalf("in %d kills, the secondary's state file never lagged a journaled group naming vol2", attempt)
		}
		s.startSecondary()
		s.waitLinked()
	}
	t.Logf("killed with %d groups unapplied, the last naming vol2 group %d", groups, named)
	s.prim.kill()

	s.cfg = writeConfig(t, s.path, without(full, "vol2"))
	s.startSecondary()
	if !strings.Contains(s.sec.log(), "journaled groups name volumes this secondary's config no longer has") {
		t.Errorf("the secondary's log does not say the groups wait:\n%s", logTail(s.sec.log(), 3000))
	}
	for _, v := range s.secondaryStatus().Volumes {
		if strings.HasPrefix(v.Consistency, "consistent as of") {
			t.Errorf("while the groups wait, the secondary reports %s %q: its image may hold part of them", v.Name, v.Consistency)
		}
	}
	s.restartPrimary()
	s.waitLinked()
	for _, w := range []string{"the primary linked without these volumes", "applied them to the others"} {
		if !strings.Contains(s.sec.log(), w) {
			t.Errorf("the secondary's log does not say %q:\n%s", w, logTail(s.sec.log(), 3000))
		}
	}
	if st := s.secondaryStatus(); st.Group == nil || *st.Group < named {
		t.Errorf("linked, the secondary applied through group %v, want %d at least", st.Group, named)
	}
	s.drainPrimary()
	s.stopSecondary()
	if st, err := apply.ReadState(site.StatePath(full)); err != nil || st.Forgotten["vol2"] < named {
		t.Errorf("the secondary's state forgot %v (%v), want vol2 through group %d at least", st.Forgotten, err, named)
	}
	s.cfg = without(full, "vol2")
	s.assertImagesEqual()
}
