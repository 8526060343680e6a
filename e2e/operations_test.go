package e2e

import (
	"bytes"
	"context"
	"log/slog"
	"math/rand/v2"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"duplex/config"
	"duplex/pair"
	"duplex/site"
	"duplex/transport"
)

// opsSession is an in-process session of both sites over an in-memory link,
// as the daemons assemble them, for the operations tests.
type opsSession struct {
	t       *testing.T
	cfg     *config.Config
	net     *transport.MemNetwork
	prim    *site.Primary
	sec     *site.Secondary
	primRun context.CancelFunc
	primErr chan error
	secRun  context.CancelFunc
	secErr  chan error
	// secOpts and secLog, when set, replace the secondary's options (its
	// listener defaults to net) and its quiet logger.
	secOpts site.SecondaryOptions
	secLog  *slog.Logger
	// primOpts, when set, are the primary's options (its dialer is net).
	primOpts site.PrimaryOptions
}

func newOpsConfig(t *testing.T, volSize int64, sidefile int64, suspendAfter time.Duration) *config.Config {
	dir := t.TempDir()
	cfg := config.Demo(dir)
	cfg.Session = "ops"
	cfg.Interval = config.Duration(5 * time.Millisecond)
	cfg.ControlTokenFile = ""
	cfg.Primary.NBD, cfg.Primary.Control = "", ""
	cfg.Secondary.NBD, cfg.Secondary.Control = "", ""
	cfg.Primary.SidefileLimit = config.Size(sidefile)
	cfg.Primary.SuspendAfter = config.Duration(suspendAfter)
	for i := range cfg.Primary.Subsystems {
		for j := range cfg.Primary.Subsystems[i].Volumes {
			cfg.Primary.Subsystems[i].Volumes[j].Size = config.Size(volSize)
		}
	}
	return cfg
}

func startOps(t *testing.T, cfg *config.Config) *opsSession {
	s := &opsSession{t: t, cfg: cfg, net: transport.NewMemNetwork(4, transport.Faults{})}
	s.startSecondary()
	s.startPrimary()
	t.Cleanup(func() {
		s.stopPrimary()
		s.stopSecondary()
	})
	return s
}

func (s *opsSession) startSecondary() {
	opts, log := s.secOpts, s.secLog
	if opts.Listener == nil {
		opts.Listener = s.net
	}
	if log == nil {
		log = quietLogger()
	}
	sec, err := site.OpenSecondary(s.cfg, log, opts)
	if err != nil {
		s.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.sec, s.secRun, s.secErr = sec, cancel, make(chan error, 1)
	go func() { s.secErr <- sec.Run(ctx) }()
}

func (s *opsSession) startPrimary() {
	opts := s.primOpts
	opts.Dialer = s.net
	p, err := site.OpenPrimary(s.cfg, quietLogger(), opts)
	if err != nil {
		s.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.prim, s.primRun, s.primErr = p, cancel, make(chan error, 1)
	go func() { s.primErr <- p.Run(ctx, time.Minute) }()
}

func (s *opsSession) stopPrimary() {
	if s.primRun != nil {
		s.primRun()
		if err := <-s.primErr; err != nil {
			s.t.Errorf("primary: %v", err)
		}
		s.primRun = nil
	}
}

func (s *opsSession) stopSecondary() {
	if s.secRun != nil {
		s.secRun()
		<-s.secErr
		s.secRun = nil
	}
}

func (s *opsSession) pairs() map[string]pair.Pair {
	m := map[string]pair.Pair{}
	for _, p := range s.prim.Pairs().Pairs() {
		m[p.Volume] = p
	}
	return m
}

func (s *opsSession) waitState(vol string, want pair.State, d time.Duration) pair.Pair {
	s.t.Helper()
	var p pair.Pair
	waitFor(s.t, d, vol+" "+string(want), func() bool {
		p = s.pairs()[vol]
		return p.State == want
	})
	return p
}

// assertImagesEqual stops both sites (the primary ships everything first) and
// compares every volume's image files.
func (s *opsSession) assertImagesEqual() {
	s.t.Helper()
	s.stopPrimary()
	acked := s.prim.Mover().Stats().Acked.Group
	waitFor(s.t, 30*time.Second, "the last group applied", func() bool { return s.sec.Replica().Stats().Group >= acked })
	s.stopSecondary()
	for _, name := range s.cfg.VolumeNames() {
		pv, _, _ := s.cfg.PrimaryVolume(name)
		sv, _ := s.cfg.SecondaryVolume(name)
		if !sameFiles(s.t, pv.Path, sv.Path) {
			s.t.Errorf("%s: secondary image differs from the primary", name)
		}
	}
}

// sameFiles compares two images chunk by chunk.
func sameFiles(t *testing.T, a, b string) bool {
	t.Helper()
	fa, err := os.Open(a)
	if err != nil {
		t.Fatal(err)
	}
	defer fa.Close()
	fb, err := os.Open(b)
	if err != nil {
		t.Fatal(err)
	}
	defer fb.Close()
	ba, bb := make([]byte, 8<<20), make([]byte, 8<<20)
	for off := int64(0); ; off += int64(len(ba)) {
		na, ea := fa.ReadAt(ba, off)
		nb, _ := fb.ReadAt(bb, off)
		if na != nb || !bytes.Equal(ba[:na], bb[:nb]) {
			return false
		}
		if ea != nil {
			return true
		}
	}
}

// load writes random 4 KiB blocks (and some zeroes) to every volume through the
// primary until stop is closed; it returns the number of writes, and fails the
// test if any write fails.
func (s *opsSession) load(stop <-chan struct{}, seed uint64, volSize int64) (*sync.WaitGroup, *atomic.Int64) {
	return s.loadPaced(stop, seed, volSize, 2*time.Millisecond)
}

// loadPaced is load with a pause after each write of each writer.
func (s *opsSession) loadPaced(stop <-chan struct{}, seed uint64, volSize int64, pause time.Duration) (*sync.WaitGroup, *atomic.Int64) {
	var wg sync.WaitGroup
	var n atomic.Int64
	for w := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, uint64(w)))
			buf := make([]byte, 4096)
			names := s.cfg.VolumeNames()
			for {
				select {
				case <-stop:
					return
				default:
				}
				for i := range buf {
					buf[i] = byte(rng.Uint32())
				}
				vol := names[rng.IntN(len(names))]
				off := rng.Int64N(volSize/4096) * 4096
				if err := s.prim.Write(context.Background(), vol, buf, off); err != nil {
					s.t.Errorf("write %s@%d: %v", vol, off, err)
					return
				}
				n.Add(1)
				// By default about 1000 writes a second: load enough to
				// overlap the copy and fill a small sidefile, not to saturate
				// the test.
				if pause > 0 {
					time.Sleep(pause)
				}
			}
		}()
	}
	return &wg, &n
}

// TestInitialCopyUnderLoad fills a primary volume with data before the session
// exists, then starts the session: the initial copy runs while random writes
// continue, the pairs reach duplex, and the images end identical.
func TestInitialCopyUnderLoad(t *testing.T) {
	t.Parallel()
	// The copy's cost grows with the volume; what is checked here, a
	// whole-volume copy racing writes, does not.
	const volSize = 64 << 20
	cfg := newOpsConfig(t, volSize, 64<<20, time.Minute)
	// Existing data on the primary: 6 MiB scattered over vol1, the rest holes.
	pv, _, _ := cfg.PrimaryVolume("vol1")
	os.MkdirAll(cfg.Dir+"/primary", 0o755)
	f, err := os.Create(pv.Path)
	if err != nil {
		t.Fatal(err)
	}
	f.Truncate(volSize)
	rng := rand.New(rand.NewPCG(1, 2))
	chunk := make([]byte, 1<<20)
	for i := range 6 {
		for j := range chunk {
			chunk[j] = byte(rng.Uint32())
		}
		f.WriteAt(chunk, int64(i)*10<<20)
	}
	f.Close()

	s := startOps(t, cfg)
	stop := make(chan struct{})
	wg, n := s.load(stop, 3, volSize)
	for _, name := range cfg.VolumeNames() {
		p := s.waitState(name, pair.Duplex, 3*time.Minute)
		if p.Resynced != volSize {
			t.Errorf("%s: initial copy covered %d bytes, want the whole volume %d", name, p.Resynced, volSize)
		}
	}
	close(stop)
	wg.Wait()
	if n.Load() == 0 {
		t.Fatal("no writes ran during the copy")
	}
	s.assertImagesEqual()
}

// TestSuspendResumeResyncsOnlyChangedRegions suspends a pair, writes 10 MiB to
// scattered regions, resumes, and checks that the resync copied about those
// regions, not the volume, and that the images end identical.
func TestSuspendResumeResyncsOnlyChangedRegions(t *testing.T) {
	t.Parallel()
	const volSize = 256 << 20
	s := startOps(t, newOpsConfig(t, volSize, 64<<20, time.Minute))
	for _, name := range s.cfg.VolumeNames() {
		s.waitState(name, pair.Duplex, time.Minute)
	}
	if err := s.prim.Pairs().Suspend("vol2"); err != nil {
		t.Fatal(err)
	}
	if st := s.pairs()["vol2"].State; st != pair.Suspended {
		t.Fatalf("vol2 is %s after suspend", st)
	}
	// 160 scattered 64 KiB writes: 10 MiB in 160 distinct regions.
	buf := bytes.Repeat([]byte{0x5a}, 64<<10)
	for i := range 160 {
		if err := s.prim.Write(context.Background(), "vol2", buf, int64(i)*(1<<20)+4096*int64(i%16)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.prim.Pairs().Resume("vol2"); err != nil {
		t.Fatal(err)
	}
	p := s.waitState("vol2", pair.Duplex, time.Minute)
	// Each unaligned 64 KiB write touches at most two 64 KiB regions.
	if p.Resynced < 10<<20 || p.Resynced > 20<<20 {
		t.Fatalf("resync copied %d bytes for 10 MiB of changes", p.Resynced)
	}
	t.Logf("resync copied %d bytes after 10 MiB of scattered writes to a %d-byte volume", p.Resynced, volSize)
	s.assertImagesEqual()
}

// TestLinkDownSuspendsAndResumes cuts the link under load for longer than
// suspend_after: the session suspends into bitmap mode, the sidefile empties,
// no write fails; when the link returns, the pairs resync and converge.
func TestLinkDownSuspendsAndResumes(t *testing.T) {
	t.Parallel()
	const volSize = 32 << 20
	s := startOps(t, newOpsConfig(t, volSize, 1<<20, 500*time.Millisecond))
	for _, name := range s.cfg.VolumeNames() {
		s.waitState(name, pair.Duplex, time.Minute)
	}
	stop := make(chan struct{})
	wg, n := s.load(stop, 5, volSize)
	time.Sleep(100 * time.Millisecond)
	s.net.SetDown(true)
	for _, name := range s.cfg.VolumeNames() {
		s.waitState(name, pair.Suspended, 30*time.Second)
	}
	before := n.Load()
	waitFor(t, 10*time.Second, "writes to continue while suspended", func() bool { return n.Load() > before+100 })
	// What stays is the pair-state markers that announce the suspension
	// to the secondary (a few dozen bytes per volume), never the writes.
	if used := *s.prim.Status().SidefileBytes; used > 4096 {
		t.Errorf("sidefile holds %d bytes while suspended; want its memory released", used)
	}
	if st := s.prim.Status().Link; st != "suspended" {
		t.Errorf("link %q while suspended", st)
	}
	s.net.SetDown(false)
	for _, name := range s.cfg.VolumeNames() {
		s.waitState(name, pair.Duplex, time.Minute)
	}
	close(stop)
	wg.Wait()
	s.assertImagesEqual()
}

// TestPacingBoundsSidefile slows the link and fills a tiny sidefile: writes get
// delayed, and the sidefile never holds more than its limit.
func TestPacingBoundsSidefile(t *testing.T) {
	const volSize = 16 << 20
	s := startOps(t, newOpsConfig(t, volSize, 1<<20, time.Hour))
	for _, name := range s.cfg.VolumeNames() {
		s.waitState(name, pair.Duplex, time.Minute)
	}
	s.net.SetFaults(transport.Faults{MaxDelay: 200 * time.Millisecond})
	stop := make(chan struct{})
	var over atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			st := s.prim.Status()
			if *st.SidefileBytes > *st.SidefileLimitBytes {
				over.Add(1)
			}
			time.Sleep(time.Millisecond)
		}
	}()
	wg, _ := s.loadPaced(stop, 6, volSize, 0)
	time.Sleep(2 * time.Second)
	close(stop)
	wg.Wait()
	<-done
	if over.Load() > 0 {
		t.Fatalf("sidefile exceeded its limit %d times", over.Load())
	}
	var paced time.Duration
	for _, smp := range s.prim.Samples() {
		if smp.Name == "pacing_delay_seconds_total" {
			paced = time.Duration(smp.Value * float64(time.Second))
		}
	}
	if paced == 0 {
		t.Fatal("no write was paced with a full sidefile and a slow link")
	}
	t.Logf("writes were delayed %s in total by pacing", paced)
	s.net.SetFaults(transport.Faults{})
	s.assertImagesEqual()
}

// TestRestartKeepsPairStateAndBitmaps stops a primary cleanly with a suspended
// pair, restarts it, and expects the pair still suspended with its changes
// tracked; a resume then converges.
func TestRestartKeepsPairStateAndBitmaps(t *testing.T) {
	t.Parallel()
	const volSize = 32 << 20
	s := startOps(t, newOpsConfig(t, volSize, 8<<20, time.Hour))
	for _, name := range s.cfg.VolumeNames() {
		s.waitState(name, pair.Duplex, time.Minute)
	}
	if err := s.prim.Pairs().Suspend("vol3"); err != nil {
		t.Fatal(err)
	}
	buf := bytes.Repeat([]byte{7}, 4096)
	for i := range 10 {
		if err := s.prim.Write(context.Background(), "vol3", buf, int64(i)<<20); err != nil {
			t.Fatal(err)
		}
	}
	s.stopPrimary()
	s.stopSecondary()
	s.net = transport.NewMemNetwork(5, transport.Faults{}) // a stopped listener stays closed
	s.startSecondary()
	s.startPrimary()
	p := s.pairs()["vol3"]
	if p.State != pair.Suspended {
		t.Fatalf("after restart vol3 is %s, want suspended", p.State)
	}
	if p1 := s.pairs()["vol1"]; p1.State != pair.Duplex {
		t.Fatalf("after a clean restart vol1 is %s, want duplex", p1.State)
	}
	if err := s.prim.Pairs().Resume("vol3"); err != nil {
		t.Fatal(err)
	}
	p = s.waitState("vol3", pair.Duplex, time.Minute)
	if p.Resynced != 10*64<<10 {
		t.Fatalf("resync after restart copied %d bytes, want the 10 changed regions (%d)", p.Resynced, 10*64<<10)
	}
	s.assertImagesEqual()
}
