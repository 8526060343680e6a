package e2e

import (
	"bytes"
	"os"
	"strings"
	"testing"
	"time"

	"duplex/apply"
	"duplex/config"
	"duplex/site"
)

// TestForgetAVolumeTakenOutOfASharedConfig: the daemons of a session
// share one config file, as duplex demo writes it. vol2 is taken out of
// it and the primary restarted: the secondary, running on the config it
// read at its start, refuses it (vol2's copy is consistent, and may be
// the only good one), both sites saying why. Killed -9 then, before any
// link, and started again on the edited file, the secondary forgets vol2
// at the link. Added back, its images removed, vol2 is a new pair at both
// sites: copied whole, the sites end identical.
func TestForgetAVolumeTakenOutOfASharedConfig(t *testing.T) {
	s := newSession(t, sessionOpts{volSize: 8 * config.MiB})
	s.startSecondary()
	s.startPrimary()
	s.waitLinked()
	full := s.cfg

	// vol2 out of the shared file, the primary restarted on it.
	without := *full
	without.Primary.Subsystems = nil
	for _, sc := range full.Primary.Subsystems {
		var vols []config.Volume
		for _, v := range sc.Volumes {
			if v.Name != "vol2" {
				vols = append(vols, v)
			}
		}
		sc.Volumes = vols
		without.Primary.Subsystems = append(without.Primary.Subsystems, sc)
	}
	without.Secondary.Volumes = nil
	for _, v := range full.Secondary.Volumes {
		if v.Name != "vol2" {
			without.Secondary.Volumes = append(without.Secondary.Volumes, v)
		}
	}
	if code := s.prim.stop(); code != 0 {
		t.Fatalf("the primary stopped with status %d", code)
	}
	s.cfg = writeConfig(t, s.path, &without)
	s.restartPrimary()
	eventually(t, 30*time.Second, "the secondary to refuse the primary without vol2", func() bool {
		return strings.Contains(s.primaryStatus().LastError, `volume "vol2"`)
	})
	for _, w := range []string{"consistent as of", "add it back to the primary's config", "take it out of this secondary's config"} {
		if got := s.primaryStatus().LastError; !strings.Contains(got, w) {
			t.Errorf("the primary's last error %q does not say %s", got, w)
		}
	}
	if got := s.secondaryStatus().LastError; !strings.Contains(got, `volume "vol2"`) {
		t.Errorf("the secondary's last error %q does not name vol2", got)
	}

	// Killed -9 before any link and started again on the config it
	// had: vol2's copy is still consistent, and the primary refused.
	s.sec.kill()
	s.cfg = writeConfig(t, s.path, full)
	s.startSecondary()
	eventually(t, 30*time.Second, "the secondary on its old config to refuse the primary without vol2 again", func() bool {
		return strings.Contains(s.secondaryStatus().LastError, `volume "vol2"`)
	})
	for _, v := range s.secondaryStatus().Volumes {
		if v.Name == "vol2" && !strings.HasPrefix(v.Consistency, "consistent as of") {
			t.Errorf("killed and started again on its old config, the secondary reports vol2 %q, want its copy consistent", v.Consistency)
		}
	}
	// Killed -9 again, and started on the edited file.
	s.sec.kill()
	s.cfg = writeConfig(t, s.path, &without)
	s.startSecondary()
	eventually(t, 30*time.Second, "the primary without vol2 linked", func() bool {
		return s.primaryStatus().Link == "connected"
	})
	if !strings.Contains(s.sec.log(), "the primary linked without these volumes") {
		t.Errorf("the secondary's log does not say it forgot vol2:\n%s", logTail(s.sec.log(), 3000))
	}
	if code := s.prim.stop(); code != 0 {
		t.Fatalf("the primary stopped with status %d", code)
	}
	if code := s.sec.stop(); code != 0 {
		t.Fatalf("the secondary stopped with status %d", code)
	}
	if st, err := apply.ReadState(site.StatePath(full)); err != nil || st.Forgotten["vol2"] == 0 {
		t.Fatalf("linked without vol2 at both sites, the secondary's state forgot %v (%v), want vol2", st.Forgotten, err)
	}

	// Added back, its images removed: a new pair, copied whole.
	for _, p := range []string{full.Secondary.Volumes[1].Path, full.Primary.Subsystems[0].Volumes[1].Path} {
		if !strings.HasSuffix(p, "vol2.img") {
			t.Fatalf("%s is not vol2's image", p)
		}
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
	}
	s.cfg = writeConfig(t, s.path, full)
	s.startSecondary()
	s.startPrimary()
	s.waitLinked()
	c := dialNBD(t, s.cfg.Primary.NBD, "vol2")
	if err := c.WriteAt(bytes.Repeat([]byte{3}, 4096), 2<<20); err != nil {
		t.Fatal(err)
	}
	c.Close()
	if code := s.prim.stop(); code != 0 {
		t.Fatalf("the primary stopped with status %d", code)
	}
	if code := s.sec.stop(); code != 0 {
		t.Fatalf("the secondary stopped with status %d", code)
	}
	for _, name := range []string{"vol1", "vol2", "vol3", "vol4"} {
		pv, _, _ := full.PrimaryVolume(name)
		sv, _ := full.SecondaryVolume(name)
		a, err := os.ReadFile(pv.Path)
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(sv.Path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a, b) {
			t.Errorf("%s differs between the sites after vol2 was added back", name)
		}
	}
}
