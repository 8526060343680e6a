package site

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"duplex/config"
	"duplex/control"
	"duplex/mover"
	"duplex/transport"
)

// TestAHungCopyReadSuspendsItsPairAndTheOthersGoOn: the read of a primary
// volume made by one pair's copy (here the first copy of vol1, added again)
// hangs, as on a stuck disk. The data mover waits for it only so long: the
// other volumes' writes keep reaching the secondary, whose consistency time
// moves on, and vol1 is reported suspended, with the reason. The writes to
// the other volumes, made one after the other, each once the one before was
// acknowledged, are all at the secondary once shipped; a resume once the
// volume reads again copies vol1 whole.
func TestAHungCopyReadSuspendsItsPairAndTheOthersGoOn(t *testing.T) {
	h := hungCopyRead(t, hungReadWait, "vol1")
	p, s, reading, release := h.p, h.s, h.reading, h.release
	ctx := context.Background()
	if _, err := p.Pairs().Delete("vol1"); err != nil {
		t.Fatal(err)
	}
	if err := p.Pairs().Add("vol1"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-reading:
	case <-time.After(30 * time.Second):
		t.Fatalf("the copy of vol1 never read the volume; goroutines:\n%s", goroutines())
	}

	// Writes one after the other, each issued once the one before is
	// acknowledged, to a volume of each subsystem.
	stop, stopped := make(chan struct{}), make(chan error, 1)
	go func() {
		b := make([]byte, 4096)
		for i := uint64(0); ; i++ {
			select {
			case <-stop:
				stopped <- nil
				return
			default:
			}
			binary.BigEndian.PutUint64(b, i)
			vol := []string{"vol2", "vol3"}[i%2]
			if err := p.Write(ctx, vol, b, int64(i/2%64)*4096); err != nil {
				stopped <- err
				return
			}
		}
	}()
	hungAt := time.Now()
	waitFor(t, 30*time.Second, "the secondary's consistency time to move past the hung read", func() bool {
		at, err := time.Parse(time.RFC3339Nano, s.Status().ConsistencyTime)
		return err == nil && at.After(hungAt)
	})
	waitFor(t, 30*time.Second, "vol1 reported suspended, with the reason", func() bool {
		v := volumeStatus(p.Status(), "vol1")
		return v.State == "suspended" && strings.Contains(v.Reason, "read of the primary volume")
	})
	if v := volumeStatus(p.Status(), "vol1"); v.ConsistencyTime != "" || v.Auto {
		t.Errorf("vol1 in its first copy, suspended: %+v, want no consistency time, and not to resume by itself", v)
	}
	close(stop)
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
	qctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := p.Mover().Quiesce(qctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the secondary to apply everything shipped", func() bool {
		return sameVolume(t, p, s, "vol2") && sameVolume(t, p, s, "vol3")
	})

	release()
	if err := p.Pairs().Resume("vol1"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "every pair duplex once vol1 is resumed", func() bool { return allPairsDuplex(p.Status()) })
	if err := p.Mover().Quiesce(qctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the secondary's vol1 to be the primary's", func() bool { return sameVolume(t, p, s, "vol1") })
}

// TestAStopDuringAHungCopyReadEnds: the primary is stopped while vol1's
// copy read hangs. The stop ends, the read still hung (the data mover's
// last cut gives the copy up), and the primary, restarted on a volume that
// reads again, copies vol1 whole and every pair becomes duplex, the
// secondary's vol1 the primary's.
func TestAStopDuringAHungCopyReadEnds(t *testing.T) {
	h := hungCopyRead(t, hungReadWait, "vol1")
	if _, err := h.p.Pairs().Delete("vol1"); err != nil {
		t.Fatal(err)
	}
	if err := h.p.Pairs().Add("vol1"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-h.reading:
	case <-time.After(30 * time.Second):
		t.Fatalf("the copy of vol1 never read the volume; goroutines:\n%s", goroutines())
	}
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		h.stop()
	}()
	select {
	case <-stopped:
	case <-time.After(30 * time.Second):
		t.Fatalf("the primary's stop still waits for vol1's hung copy read after 30s; goroutines:\n%s", goroutines())
	}
	h.release()
	p, _ := startPrimary(t, h.cfg, healthyReadWait)
	waitFor(t, 30*time.Second, "every pair duplex once restarted", func() bool { return allPairsDuplex(p.Status()) })
	quiesceMover(t, p)
	waitFor(t, 30*time.Second, "the secondary's vol1 to be the primary's", func() bool { return sameVolume(t, p, h.s, "vol1") })
}

// hungCopy is a secondary and a primary of cfg (linkConfig's), every pair
// duplex, whose data mover gives up a copy's read after readWait. Every
// read of vol1 for a copy hangs, from then until release (or the test's
// end): reading is closed once the first one does. stop stops the
// primary, and returns once its Run did.
type hungCopy struct {
	cfg     *config.Config
	p       *Primary
	s       *Secondary
	reading <-chan struct{}
	release func()
	stop    func()
}

// hungCopyRead starts a hungCopy, the first 4 KiB of vols written (not a
// hole: a copy reads them).
func hungCopyRead(t *testing.T, readWait time.Duration, vols ...string) hungCopy {
	t.Helper()
	h := hungCopy{cfg: linkConfig(t)}
	h.s, _ = runSecondary(t, h.cfg)
	h.cfg.Primary.Secondary = h.s.ListenAddr()
	h.p, h.stop = startPrimary(t, h.cfg, readWait)
	waitFor(t, 30*time.Second, "every pair duplex", func() bool { return allPairsDuplex(h.p.Status()) })
	for _, vol := range vols {
		if err := h.p.Write(context.Background(), vol, bytes.Repeat([]byte{0x5a}, 4096), 0); err != nil {
			t.Fatal(err)
		}
	}
	first, hung := make(chan struct{}), make(chan struct{})
	var once, released sync.Once
	h.p.byVol["vol1"].SetBeforeCopyRead(func(vol string, _, _ int64) {
		if vol == "vol1" {
			once.Do(func() { close(first) })
			<-hung
		}
	})
	h.reading = first
	h.release = func() { released.Do(func() { close(hung) }) }
	t.Cleanup(h.release)
	return h
}

// healthyReadWait is the readWait of a primary whose copies' reads do not
// hang (they work, or fail at once): the default. A read that a loaded
// machine, or a disk through nbdfuse, held past a short wait (200 ms) was
// given up as hung, and its pair suspended for it rather than duplex.
const healthyReadWait = mover.DefaultCopyReadWait

// hungReadWait is the readWait of a primary one of whose volumes' copy
// reads hangs: the hung read is given up after it, and so is any of the
// other volumes' reads running as long, which only a loaded machine makes
// slow (the copies that follow the hang's release, the first copy of a
// volume beside it, a recovery's copies): 200 ms gave such reads up, and
// their pairs never became duplex.
const hungReadWait = 2 * time.Second

// startPrimary runs a primary of cfg, its data mover giving up a copy's
// read after readWait, until the test ends or stop. Its stop does not wait
// for the secondary: not a clean stop unless everything was shipped by then.
func startPrimary(t *testing.T, cfg *config.Config, readWait time.Duration) (*Primary, func()) {
	t.Helper()
	p, stop := startPrimaryDraining(t, cfg, readWait, 0)
	return p, func() { stop() }
}

// startPrimaryDraining is startPrimary whose stop ships what the primary
// holds for up to drain, and returns what Run did: nil for a clean stop.
func startPrimaryDraining(t *testing.T, cfg *config.Config, readWait, drain time.Duration) (*Primary, func() error) {
	t.Helper()
	p, err := OpenPrimary(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), PrimaryOptions{
		Dialer: linkDialer(t, cfg), CopyReadWait: readWait})
	if err != nil {
		t.Fatal(err)
	}
	var runErr error
	stop := runUntil(t, func(ctx context.Context) { runErr = p.Run(ctx, drain) })
	return p, func() error { stop(); return runErr }
}

func volumeStatus(st control.Status, name string) control.VolumeStatus {
	for _, v := range st.Volumes {
		if v.Name == name {
			return v
		}
	}
	return control.VolumeStatus{}
}

// sameVolume reports whether the secondary's copy of vol is the primary's.
func sameVolume(t *testing.T, p *Primary, s *Secondary, vol string) bool {
	t.Helper()
	return sameBytes(t, p, s, vol, 1<<20)
}

// sameBytes reports whether the secondary's copy of vol's first n bytes
// is the primary's.
func sameBytes(t *testing.T, p *Primary, s *Secondary, vol string, n int) bool {
	t.Helper()
	a, b := make([]byte, n), make([]byte, n)
	if err := p.ReadAt(vol, a, 0); err != nil {
		t.Fatal(err)
	}
	if err := s.ReadAt(vol, b, 0); err != nil {
		t.Fatal(err)
	}
	return bytes.Equal(a, b)
}

// TestAHungCopyReadHoldsNoOtherPairsCopy: once the data mover gave up the
// hung read of vol1's copy and vol1 is suspended, the pair manager goes on
// with the other pairs: vol2's first copy, queued behind vol1's, completes
// and vol2 becomes duplex, and vol1's suspension is on disk (a kill -9 now
// finds it suspended, saying why, not a copy the restart would resume by
// itself), all while the read still hangs. A write to the region read
// does not wait for the read either, and a resume before the volume reads
// again only suspends vol1 anew. Once it reads, a resume copies vol1 whole,
// the write with it.
func TestAHungCopyReadHoldsNoOtherPairsCopy(t *testing.T) {
	h := hungCopyRead(t, hungReadWait, "vol1", "vol2")
	p, s, reading, release := h.p, h.s, h.reading, h.release
	ctx := context.Background()
	for _, vol := range []string{"vol1", "vol2"} {
		if _, err := p.Pairs().Delete(vol); err != nil {
			t.Fatal(err)
		}
	}
	for _, vol := range []string{"vol1", "vol2"} {
		if err := p.Pairs().Add(vol); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-reading:
	case <-time.After(30 * time.Second):
		t.Fatalf("the copy of vol1 never read the volume; goroutines:\n%s", goroutines())
	}
	waitFor(t, 30*time.Second, "vol1 reported suspended, with the reason", func() bool {
		v := volumeStatus(p.Status(), "vol1")
		return v.State == "suspended" && strings.Contains(v.Reason, "read of the primary volume")
	})
	waitFor(t, 30*time.Second, "vol2's first copy to complete while vol1's read still hangs", func() bool {
		return volumeStatus(p.Status(), "vol2").State == "duplex"
	})
	waitFor(t, 30*time.Second, "vol1's suspension saved", func() bool {
		b, err := os.ReadFile(filepath.Join(p.stateDir, "pairs.json"))
		if err != nil {
			return false
		}
		var st struct {
			Pairs []struct {
				Volume, State, Reason string
			} `json:"pairs"`
		}
		if json.Unmarshal(b, &st) != nil {
			return false
		}
		for _, q := range st.Pairs {
			if q.Volume == "vol1" {
				return q.State == "suspended" && strings.Contains(q.Reason, "read of the primary volume")
			}
		}
		return false
	})

	// A write to the region of the read that hangs is vol1's bitmap's, and
	// does not wait for that read, whose data never ships.
	written := make(chan error, 1)
	go func() { written <- p.Write(ctx, "vol1", bytes.Repeat([]byte{0x77}, 4096), 0) }()
	select {
	case err := <-written:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("a write to vol1's region whose copy read hangs still waits for that read after 30s; goroutines:\n%s", goroutines())
	}
	// Resumed while the volume still does not read, vol1 is suspended again,
	// its copy given up again, and vol2 stays duplex.
	if err := p.Pairs().Resume("vol1"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "vol1, resumed while its read hangs, suspended again with the reason", func() bool {
		v := volumeStatus(p.Status(), "vol1")
		return v.State == "suspended" && strings.Contains(v.Reason, "read of the primary volume")
	})
	if v := volumeStatus(p.Status(), "vol2"); v.State != "duplex" {
		t.Fatalf("vol2 once vol1 was resumed while its read hangs: %+v, want duplex", v)
	}

	release()
	if err := p.Pairs().Resume("vol1"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "every pair duplex once vol1 is resumed", func() bool { return allPairsDuplex(p.Status()) })
	quiesceMover(t, p)
	waitFor(t, 30*time.Second, "the secondary's vol1 and vol2 to be the primary's", func() bool {
		return sameVolume(t, p, s, "vol1") && sameVolume(t, p, s, "vol2")
	})
}

// TestARecoveryCopyWhoseReadHangsDoesNotHoldTheStart: the primary stopped
// uncleanly with writes to vol1 and vol2 the secondary never got; at the
// restart, the read of vol1 for the copy of its recovered regions hangs
// (a stuck disk). The primary starts all the same and serves; vol1 is
// suspended, saying why, and vol2, recovered, is duplex. The secondary,
// told of both recoveries as a resync, holds its volumes as of before the
// crash while vol1's is unfinished (vol1 lacks writes acknowledged then,
// which vol2's later ones must not be applied without). Once vol1 reads
// again, a resume copies it, and the secondary holds both volumes as the
// primary does, every write with them.
func TestARecoveryCopyWhoseReadHangsDoesNotHoldTheStart(t *testing.T) {
	recoveryReadsHang(t, []string{"vol1"}, []string{"vol2"})
}

// TestRecoveryCopiesWhoseReadsHangInTwoSubsystems: as above, the reads of
// vol1 (ss1) and vol3 (ss2) hanging together, each volume's recovery on
// its own at the start and both subsystems' copies given up by one cut;
// vol2, beside vol1 in ss1, recovers.
func TestRecoveryCopiesWhoseReadsHangInTwoSubsystems(t *testing.T) {
	recoveryReadsHang(t, []string{"vol1", "vol3"}, []string{"vol2"})
}

// recoveryReadsHang writes to the volumes hung and ok, stops the primary
// as a kill -9 does, and restarts it with the reads of the volumes hung
// hanging: see TestARecoveryCopyWhoseReadHangsDoesNotHoldTheStart.
func recoveryReadsHang(t *testing.T, hung, ok []string) {
	cfg := linkConfig(t)
	// Room for the regions the log recovers (a whole volume each) at once.
	cfg.Primary.SidefileLimit = 16 * config.MiB
	s, dialer := crashWithUnshippedWrites(t, cfg, slices.Concat(hung, ok)...)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))

	reading, stuck := make(chan string, 64), make(chan struct{})
	var released sync.Once
	release := func() { released.Do(func() { close(stuck) }) }
	t.Cleanup(release)
	opened := make(chan *Primary, 1)
	go func() {
		p, err := OpenPrimary(cfg, quiet, PrimaryOptions{Dialer: dialer, CopyReadWait: hungReadWait,
			beforeCopyRead: func(vol string, _, _ int64) {
				if slices.Contains(hung, vol) {
					select {
					case reading <- vol:
					default:
					}
					<-stuck
				}
			}})
		if err != nil {
			t.Error(err)
		}
		opened <- p
	}()
	var p *Primary
	select {
	case p = <-opened:
		if p == nil {
			t.FailNow()
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("the primary's start still waits after 30s, %d of the recovery copies' reads of %v hung; goroutines:\n%s", len(reading), hung, goroutines())
	}
	read := map[string]bool{}
	for len(reading) > 0 {
		read[<-reading] = true
	}
	for _, vol := range hung {
		if !read[vol] {
			t.Fatalf("%s was not read for a recovery copy", vol)
		}
	}
	runUntil(t, func(ctx context.Context) { p.Run(ctx, 0) })
	for _, vol := range hung {
		waitFor(t, 30*time.Second, vol+" reported suspended, with the reason", func() bool {
			v := volumeStatus(p.Status(), vol)
			return v.State == "suspended" && strings.Contains(v.Reason, "read of the primary volume")
		})
		if err := p.Write(context.Background(), vol, bytes.Repeat([]byte{0x78}, 4096), 8192); err != nil {
			t.Fatal(err)
		}
	}
	for _, vol := range ok {
		waitFor(t, 30*time.Second, vol+" duplex", func() bool { return volumeStatus(p.Status(), vol).State == "duplex" })
		if err := p.Write(context.Background(), vol, bytes.Repeat([]byte{0x79}, 4096), 8192); err != nil {
			t.Fatal(err)
		}
	}
	quiesceMover(t, p)

	release()
	resumesToTheSecondary(t, p, s, hung, slices.Concat(hung, ok))
}

// crashWithUnshippedWrites runs a secondary of cfg, and a primary until
// every pair is duplex; then, the data mover not running, it writes 4 KiB
// at 0 of each of vols and stops the primary without its clean save, as a
// kill -9 leaves it: the writes acknowledged, never shipped. It returns the
// secondary and the primary's dialer to it.
func crashWithUnshippedWrites(t *testing.T, cfg *config.Config, vols ...string) (*Secondary, transport.Dialer) {
	t.Helper()
	s, dialer := duplexThenStopped(t, cfg)
	p, err := OpenPrimary(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), PrimaryOptions{Dialer: dialer})
	if err != nil {
		t.Fatal(err)
	}
	for _, vol := range vols {
		if err := p.Write(context.Background(), vol, bytes.Repeat([]byte{0x77}, 4096), 0); err != nil {
			t.Fatal(err)
		}
	}
	p.close()
	return s, dialer
}

// duplexThenStopped runs a secondary of cfg, and a primary until every
// pair is duplex, then stops the primary cleanly. It returns the
// secondary and the primary's dialer to it. Its reads do not hang.
func duplexThenStopped(t *testing.T, cfg *config.Config) (*Secondary, transport.Dialer) {
	t.Helper()
	s, _ := runSecondary(t, cfg)
	cfg.Primary.Secondary = s.ListenAddr()
	p, stop := startPrimary(t, cfg, healthyReadWait)
	waitFor(t, 30*time.Second, "every pair duplex", func() bool { return allPairsDuplex(p.Status()) })
	stop()
	return s, linkDialer(t, cfg)
}

// resumesToTheSecondary resumes the pairs of vols, their volumes reading
// again, waits for every pair to be duplex and shipped, and for the
// secondary's copy of each of same to be the primary's.
func resumesToTheSecondary(t *testing.T, p *Primary, s *Secondary, vols, same []string) {
	t.Helper()
	for _, vol := range vols {
		if err := p.Pairs().Resume(vol); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 30*time.Second, fmt.Sprintf("every pair duplex once %v are resumed", vols), func() bool { return allPairsDuplex(p.Status()) })
	quiesceMover(t, p)
	for _, v := range same {
		waitFor(t, 30*time.Second, "the secondary's "+v+" to be the primary's", func() bool { return sameVolume(t, p, s, v) })
	}
}
