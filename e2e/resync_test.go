package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"duplex/config"
	"duplex/consistency"
	"duplex/pair"
	"duplex/recordset"
	"duplex/site"
	"duplex/transport"
	"duplex/workload"
)

// resyncCheck follows one sequential client over the four volumes of an
// ops session and checks the secondary images against its history: every
// image is the result of a prefix of the writes, except that the suspended
// volume may instead hold exactly what it held when it was suspended while
// the others hold a prefix.
type resyncCheck struct {
	t       *testing.T
	cfg     *config.Config
	blocks  int
	names   []string
	susp    string // the volume suspended and resynchronised
	suspIdx int    // index into history where it was suspended; -1 before

	mu       sync.Mutex
	history  []op
	checking atomic.Bool
	bad      violations
	files    []*os.File
}

func newResyncCheck(t *testing.T, cfg *config.Config, volSize int64, susp string) *resyncCheck {
	c := &resyncCheck{t: t, cfg: cfg, blocks: int(volSize / workload.BlockSize), names: cfg.VolumeNames(), susp: susp, suspIdx: -1}
	return c
}

func (c *resyncCheck) open() {
	c.closeFiles()
	for _, name := range c.names {
		sv, _ := c.cfg.SecondaryVolume(name)
		f, err := os.Open(sv.Path)
		if err != nil {
			c.t.Fatal(err)
		}
		c.files = append(c.files, f)
	}
}

func (c *resyncCheck) closeFiles() {
	for _, f := range c.files {
		f.Close()
	}
	c.files = nil
}

// image reads the secondary images straight from their files: the check
// runs while the secondary excludes readers.
func (c *resyncCheck) image() (workload.Image, error) {
	l := workload.Layout{Volumes: len(c.names), BlocksPerVolume: c.blocks, Clients: 1}
	img, bad, err := workload.ReadImage(l, func(vol int, p []byte, off int64) error {
		_, err := c.files[vol].ReadAt(p, off)
		return err
	})
	if err != nil {
		return nil, err
	}
	if len(bad) > 0 {
		return nil, fmt.Errorf("undecodable block: %s", bad[0])
	}
	return img, nil
}

// want is the image of the writes of ops to the volumes in vols.
func (c *resyncCheck) want(ops []op, vols func(int) bool) [][]uint64 {
	w := make([][]uint64, len(c.names))
	for v := range w {
		w[v] = make([]uint64, c.blocks)
	}
	for _, o := range ops {
		if vols(o.vol) {
			w[o.vol][o.block] = o.counter
		}
	}
	return w
}

// prefixOf reports whether the volumes in vols hold a prefix of ops. Only
// writes are issued, so the highest counter found fixes the prefix.
func (c *resyncCheck) prefixOf(img workload.Image, ops []op, vols func(int) bool) bool {
	var m uint64
	for v := range img {
		if !vols(v) {
			continue
		}
		for b := range img[v] {
			m = max(m, img[v][b].Counter)
		}
	}
	end := 0
	if m > 0 {
		end = slices.IndexFunc(ops, func(o op) bool { return o.counter == m }) + 1
		if end == 0 {
			return false
		}
	}
	return c.equal(img, c.want(ops[:end], vols), vols)
}

func (c *resyncCheck) equal(img workload.Image, w [][]uint64, vols func(int) bool) bool {
	for v := range w {
		if !vols(v) {
			continue
		}
		for b := range w[v] {
			if img[v][b].Counter != w[v][b] {
				return false
			}
		}
	}
	return true
}

// onApplied is the secondary's OnApplied; the check reads the image files
// itself.
func (c *resyncCheck) onApplied(g *consistency.Group, _ func(string, []byte, int64) error) {
	c.check(g)
}

// check runs after every applied group.
func (c *resyncCheck) check(g *consistency.Group) {
	if !c.checking.Load() {
		return
	}
	copies, ended := false, false
	for _, u := range g.Updates {
		if u.Volume != c.susp {
			continue
		}
		if u.Kind == recordset.KindCopy || u.Kind == recordset.KindZeroes {
			copies = true
		}
		if m, err := recordset.DecodeMarker(u); u.Kind == recordset.KindMarker && err == nil && m.State == recordset.StateCopyEnd {
			ended = true
		}
	}
	if copies && !ended {
		c.bad.add(g.Number, nil, fmt.Errorf("group %d applied with copies of %s while its resync was open", g.Number, c.susp))
	}
	c.bad.add(g.Number, nil, c.consistent())
}

// consistent reports an error unless the secondary images are a state the
// primary had: a prefix of all writes, or (while the volume is out of the
// consistency set) its state at suspension with the others at a prefix.
func (c *resyncCheck) consistent() error {
	c.mu.Lock()
	ops := slices.Clone(c.history)
	suspIdx := c.suspIdx
	c.mu.Unlock()
	img, err := c.image()
	if err != nil {
		return err
	}
	all := func(int) bool { return true }
	if c.prefixOf(img, ops, all) {
		return nil
	}
	si := slices.Index(c.names, c.susp)
	if suspIdx >= 0 {
		only := func(v int) bool { return v == si }
		others := func(v int) bool { return v != si }
		if c.equal(img, c.want(ops[:suspIdx], only), only) && c.prefixOf(img, ops, others) {
			return nil
		}
	}
	return fmt.Errorf("secondary images are no state of the primary (%d writes issued)", len(ops))
}

// write issues one sequential write, recorded before it is issued: the
// secondary may hold it before the client sees the acknowledgement.
func (c *resyncCheck) write(s *opsSession, vol, block int, counter uint64) {
	o := op{vol: vol, block: block, counter: counter}
	c.mu.Lock()
	c.history = append(c.history, o)
	c.mu.Unlock()
	buf := make([]byte, workload.BlockSize)
	workload.Encode(buf, workload.Block{Ref: workload.Ref{Client: 1, Counter: counter, Volume: uint32(vol), Block: uint32(block)}})
	if err := s.prim.Write(context.Background(), c.names[vol], buf, int64(block)*workload.BlockSize); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// startResyncSession starts an ops session of four 1 MiB volumes with a 256
// KiB sidefile, so a resync of one volume spans many record sets and several
// sidefiles, and waits for the initial copies.
func startResyncSession(t *testing.T, c **resyncCheck) (*opsSession, int64) {
	const volSize = 1 << 20
	cfg := newOpsConfig(t, volSize, 256<<10, time.Minute)
	cfg.Interval = config.Duration(10 * time.Millisecond) // fewer groups to check
	// Without pacing the writes wait only for sidefile space: the check
	// after every group slows the secondary, and pacing would slow every
	// write far more.
	cfg.Primary.PacingMaxDelay = 0
	*c = newResyncCheck(t, cfg, volSize, "vol2")
	s := &opsSession{t: t, cfg: cfg, net: newMemNet()}
	s.startSecondaryWith(site.SecondaryOptions{OnApplied: (*c).onApplied})
	s.startPrimary()
	t.Cleanup(func() {
		s.stopPrimary()
		s.stopSecondary()
		(*c).closeFiles()
	})
	for _, name := range cfg.VolumeNames() {
		s.waitState(name, pair.Duplex, time.Minute)
	}
	(*c).open()
	return s, volSize
}

// TestResyncKeepsSecondaryConsistent suspends a volume, writes far more than
// one record set while it is suspended, resumes it while writes go on, and
// checks after every applied group that the secondary is a state the
// primary had: no group of the resync is applied before it completes.
func TestResyncKeepsSecondaryConsistent(t *testing.T) {
	t.Parallel()
	var c *resyncCheck
	s, _ := startResyncSession(t, &c)
	c.checking.Store(true)
	counter := c.runResync(t, s, nil)
	s.waitState("vol2", pair.Duplex, time.Minute)
	c.finish(t, s, counter)
}

// runResync writes, suspends vol2, writes, resumes it and writes on while
// the resync runs; midResync, if set, runs once the resync is under way.
func (c *resyncCheck) runResync(t *testing.T, s *opsSession, midResync func()) uint64 {
	rng := newRand(11)
	var counter uint64
	writes := func(n int) {
		for range n {
			counter++
			c.write(s, rng.IntN(len(c.names)), rng.IntN(c.blocks), counter)
			if counter%8 == 0 {
				time.Sleep(time.Millisecond) // spread the writes over many groups
			}
		}
	}
	writes(300)
	if err := s.prim.Pairs().Suspend(c.susp); err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	c.suspIdx = len(c.history)
	c.mu.Unlock()
	writes(3000)
	if err := s.prim.Pairs().Resume(c.susp); err != nil {
		t.Fatal(err)
	}
	writes(20)
	if midResync != nil {
		midResync()
	}
	writes(680)
	return counter
}

// finish waits until the secondary has applied everything and checks it
// equals the primary's history.
func (c *resyncCheck) finish(t *testing.T, s *opsSession, counter uint64) {
	qctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := s.prim.Mover().Quiesce(qctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the last group applied", func() bool {
		return s.sec.Replica().Stats().Group >= s.prim.Mover().Stats().Acked.Group
	})
	n, list := c.bad.snapshot()
	if len(list) > 0 {
		t.Fatalf("%d of %d applied groups were no state of the primary:\n%v", len(list), n, list)
	}
	if n < 20 {
		t.Fatalf("only %d groups checked", n)
	}
	c.mu.Lock()
	ops := slices.Clone(c.history)
	c.mu.Unlock()
	img, err := c.image()
	if err != nil {
		t.Fatal(err)
	}
	if !c.equal(img, c.want(ops, func(int) bool { return true }), func(int) bool { return true }) {
		t.Fatalf("after the resync the secondary does not hold all %d writes", counter)
	}
	t.Logf("%d groups checked, %d writes", n, counter)
}

func newRand(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, seed+1)) }

func newMemNet() *transport.MemNetwork { return transport.NewMemNetwork(4, transport.Faults{}) }

// keepOpen is a listener a stopping secondary cannot close: the in-memory
// network outlives it, so a secondary restarted on it is reached again.
type keepOpen struct{ transport.Listener }

func (keepOpen) Close() error { return nil }

// startSecondaryWith starts the ops session's secondary with opts (the
// in-memory listener is filled in).
func (s *opsSession) startSecondaryWith(opts site.SecondaryOptions) {
	opts.Listener = keepOpen{s.net}
	sec, err := site.OpenSecondary(s.cfg, quietLogger(), opts)
	if err != nil {
		s.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.sec, s.secRun, s.secErr = sec, cancel, make(chan error, 1)
	go func() { s.secErr <- sec.Run(ctx) }()
}

// TestResyncSecondaryRestartedMidResync stops the secondary in the middle
// of a resync, while groups are held, and reopens it: replay applies the
// journal only up to the hold, so the reopened volumes are still a state of
// the primary; the resync then completes and everything is applied.
func TestResyncSecondaryRestartedMidResync(t *testing.T) {
	t.Parallel()
	var c *resyncCheck
	s, _ := startResyncSession(t, &c)
	c.checking.Store(true)
	reopened := false
	counter := c.runResync(t, s, func() {
		waitFor(t, 30*time.Second, "groups held by the resync", func() bool { return s.sec.Replica().Stats().HeldGroups > 0 })
		s.stopSecondary()
		off, err := site.OpenSecondary(c.cfg, quietLogger(), site.SecondaryOptions{Offline: true})
		if err != nil {
			t.Fatal(err)
		}
		st := off.Replica().Stats()
		err = c.consistent()
		off.Close()
		if err != nil {
			t.Fatalf("reopened mid-resync (applied group %d, %d held): %v", st.Group, st.HeldGroups, err)
		}
		if st.HeldGroups == 0 || len(st.Resyncing) == 0 {
			t.Fatalf("reopened mid-resync: %d groups held, resyncing %v; want the resync's groups held", st.HeldGroups, st.Resyncing)
		}
		reopened = true
		s.startSecondaryWith(site.SecondaryOptions{OnApplied: c.onApplied})
	})
	if !reopened {
		t.Fatal("the secondary was not restarted")
	}
	s.waitState("vol2", pair.Duplex, time.Minute)
	c.finish(t, s, counter)
}
