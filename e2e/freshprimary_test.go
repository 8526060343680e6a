package e2e

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"duplex/config"
	"duplex/internal/testenv"
	"duplex/secondary"
	"duplex/site"
)

// TestAFreshPrimaryDoesNotOverwriteTheSecondarysCopies: the secondary
// holds consistent copies; the primary's disks are replaced, and a primary
// with an empty state directory (no pairs.json) and the same config starts.
// Its pairs start with first copies, which must not overwrite what may be
// the only good copies: the secondary refuses it, its images unchanged, and
// both sites' status name the refusal and the ways on (duplex promote at
// the secondary, or the primary's --overwrite-secondary naming the
// secondary's generation). So too once the secondary's identity.json is
// removed, as the advice for a damaged one allowed: before, that secondary
// followed the first primary that linked, whose first copies overwrote its
// copies. A consent naming another generation changes nothing; the right
// one has the primary copy every volume whole, the sites identical after.
func TestAFreshPrimaryDoesNotOverwriteTheSecondarysCopies(t *testing.T) {
	s := newSession(t, sessionOpts{volSize: 8 * config.MiB})
	s.start()
	for _, name := range []string{"vol1", "vol3"} {
		c := dialNBD(t, s.cfg.Primary.NBD, name)
		if err := c.WriteAt(bytes.Repeat([]byte{0x5a}, 64<<10), 1<<20); err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
	s.drainPrimary()
	images := func() map[string][32]byte {
		m := map[string][32]byte{}
		for _, name := range s.cfg.VolumeNames() {
			_, q := s.volumePaths(name)
			m[name] = testenv.SHA256File(t, q)
		}
		return m
	}
	held := images()
	_, q := s.volumePaths("vol1")
	if b, err := os.ReadFile(q); err != nil || b[1<<20] != 0x5a {
		t.Fatalf("the secondary's vol1 does not hold the write before the test (%v)", err)
	}

	// The primary's disks replaced: no state directory, zeroed images.
	if err := os.RemoveAll(site.PairStateDir(s.cfg)); err != nil {
		t.Fatal(err)
	}
	for _, name := range s.cfg.VolumeNames() {
		p, _ := s.volumePaths(name)
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
	}
	// refused waits until the secondary has refused a primary since the
	// step began, or the primary has linked, and checks that nothing
	// reached the copies and both sites say why, naming want.
	refused := func(what string, began time.Time, want ...string) string {
		t.Helper()
		eventually(t, 30*time.Second, what, func() bool {
			at, _ := time.Parse(time.RFC3339Nano, s.secondaryStatus().LastErrorAt)
			return at.After(began) || s.primaryStatus().Link == "connected"
		})
		// A few more tries of the link: still nothing reaches the copies.
		time.Sleep(2 * time.Second)
		last := s.primaryStatus().LastError
		for _, w := range append([]string{"duplex promote", "--overwrite-secondary"}, want...) {
			if !strings.Contains(last, w) {
				t.Errorf("the primary's last error does not say %q:\n%s", w, last)
			}
		}
		if got := s.secondaryStatus().LastError; !strings.Contains(last, got) || got == "" {
			t.Errorf("the secondary's last error %q is not the refusal the primary shows", got)
		}
		if st := s.primaryStatus(); st.Link == "connected" {
			t.Errorf("the fresh primary is linked")
		}
		for name, h := range images() {
			if h != held[name] {
				t.Errorf("%s: the secondary's image changed under a primary with no record of it", name)
			}
		}
		for _, v := range s.secondaryStatus().Volumes {
			if !strings.HasPrefix(v.Consistency, "consistent as of") {
				t.Errorf("the secondary reports %s %q, want its copy consistent as before", v.Name, v.Consistency)
			}
		}
		return last
	}
	began := time.Now()
	s.startPrimary()
	why := refused("the secondary to refuse the fresh primary", began, `"vol1", a copy consistent as of`, "has no record")
	if regexp.MustCompile(`--overwrite-secondary [0-9a-f]{16}`).FindString(why) == "" {
		t.Errorf("the refusal names no generation to overwrite: %s", why)
	}

	// The secondary's identity removed: it follows no generation, and
	// still refuses.
	s.stopSecondary()
	if err := os.Remove(secondary.IdentityPath(site.StatePath(s.cfg))); err != nil {
		t.Fatal(err)
	}
	began = time.Now()
	s.startSecondary()
	refused("the secondary without its identity to refuse the fresh primary", began, "follows no data generation", "--overwrite-secondary none")

	// A consent for other copies is none. The refused primary is killed
	// -9: it holds its first copies for a secondary that takes none.
	s.prim.kill()
	began = time.Now()
	s.prim = startDaemon(t, "primary", s.path, filepath.Join(s.dir, "primary.log"), "--overwrite-secondary", "0123456789abcdef")
	s.prim.waitStarted()
	s.prim.waitReady(s.cfg.Primary.Control)
	refused("the secondary to refuse a consent for another generation", began, "names generation 0123456789abcdef, not this secondary's")

	// The operator's consent: every volume copied whole.
	s.prim.kill()
	s.prim = startDaemon(t, "primary", s.path, filepath.Join(s.dir, "primary.log"), "--overwrite-secondary", "none")
	s.prim.waitStarted()
	s.prim.waitReady(s.cfg.Primary.Control)
	s.waitLinked()
	if !strings.Contains(s.sec.log(), "overwriting this secondary's copies") {
		t.Errorf("the secondary's log does not say it overwrites its copies:\n%s", logTail(s.sec.log(), 3000))
	}
	c := dialNBD(t, s.cfg.Primary.NBD, "vol2")
	if err := c.WriteAt(bytes.Repeat([]byte{3}, 4096), 2<<20); err != nil {
		t.Fatal(err)
	}
	c.Close()
	s.drainPrimary()
	for _, v := range s.secondaryStatus().Volumes {
		if !strings.HasPrefix(v.Consistency, "consistent as of") {
			t.Errorf("after the overwrite, the secondary reports %s %q, want consistent", v.Name, v.Consistency)
		}
	}
	s.stopSecondary()
	s.assertImagesEqual()
	if b, err := os.ReadFile(q); err != nil || b[1<<20] != 0 {
		t.Fatalf("the secondary's vol1 still holds the old write after the overwrite (%v)", err)
	}
}

// TestAPrimaryWithoutItsPairsRecordDoesNotOverwriteTheSecondarysCopies: a
// primary whose pairs.json is lost, generation.json kept (the disks
// replaced, the state directory put back from a copy without it), has no
// record of the secondary's copies as surely as one with an empty state
// directory, and is refused as it is. Before, it kept the generation the
// secondary follows, was taken, and its initial copies overwrote vol1's
// write with the zeroes of its new image.
func TestAPrimaryWithoutItsPairsRecordDoesNotOverwriteTheSecondarysCopies(t *testing.T) {
	s := newSession(t, sessionOpts{volSize: 8 * config.MiB})
	s.start()
	c := dialNBD(t, s.cfg.Primary.NBD, "vol1")
	if err := c.WriteAt(bytes.Repeat([]byte{0x5a}, 64<<10), 1<<20); err != nil {
		t.Fatal(err)
	}
	c.Close()
	s.drainPrimary()
	_, q := s.volumePaths("vol1")
	held := testenv.SHA256File(t, q)
	s.prim.kill()
	if err := os.Remove(filepath.Join(site.PairStateDir(s.cfg), "pairs.json")); err != nil {
		t.Fatal(err)
	}
	for _, name := range s.cfg.VolumeNames() {
		p, _ := s.volumePaths(name)
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
	}
	began := time.Now()
	s.prim = startDaemon(t, "primary", s.path, filepath.Join(s.dir, "primary-again.log"))
	s.prim.waitStarted()
	s.prim.waitReady(s.cfg.Primary.Control)
	eventually(t, 30*time.Second, "the secondary to refuse the primary", func() bool {
		at, _ := time.Parse(time.RFC3339Nano, s.secondaryStatus().LastErrorAt)
		return at.After(began) || s.primaryStatus().Link == "connected"
	})
	time.Sleep(2 * time.Second)
	if last := s.primaryStatus().LastError; !strings.Contains(last, "has no record") || !strings.Contains(last, "--overwrite-secondary") {
		t.Errorf("the primary's last error is not the refusal of a primary with no record of the copies: %q", last)
	}
	if got := testenv.SHA256File(t, q); got != held {
		t.Errorf("the secondary's vol1 changed under a primary with no record of its copy")
	}
}
