package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"sync"
	"testing"
	"time"

	"duplex/consistency"
	"duplex/disk"
	"duplex/mover"
	"duplex/secondary"
	"duplex/sidefile"
	"duplex/subsystem"
	"duplex/timer"
	"duplex/transport"
	"duplex/volume"
	"duplex/workload"
)

const session = "e2e"

// layout of every harness: 2 subsystems × 2 volumes.
var layout = workload.Layout{Volumes: 4, BlocksPerVolume: 64, Clients: 4}

func volName(i int) string { return fmt.Sprintf("vol%d", i) }
func ssName(i int) string  { return fmt.Sprintf("ss%d", i/2+1) }

func quietLogger() *slog.Logger {
	if os.Getenv("DUPLEX_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// primary is the primary site of a harness.
type primary struct {
	timer  *timer.Timer
	subs   []*subsystem.Subsystem
	bySS   map[string]*subsystem.Subsystem
	vols   []*volume.Volume
	mover  *mover.Mover
	cancel context.CancelFunc
	done   chan struct{}
}

type primaryOpts struct {
	interval   time.Duration
	retransmit time.Duration
	sidefile   int64
	dialer     transport.Dialer
	volumes    int  // default layout.Volumes
	blocks     int  // per volume, default layout.BlocksPerVolume
	compress   bool // record sets go compressed (zstd) to a secondary that takes them
	namedAcks  bool // read no indexed acknowledgements, as a primary from before them
}

func startPrimary(t testing.TB, dir string, o primaryOpts) *primary {
	t.Helper()
	if o.volumes == 0 {
		o.volumes = layout.Volumes
	}
	if o.blocks == 0 {
		o.blocks = layout.BlocksPerVolume
	}
	if o.sidefile == 0 {
		o.sidefile = 64 << 20
	}
	p := &primary{timer: timer.New(), bySS: map[string]*subsystem.Subsystem{}}
	vols := map[string]map[string]*volume.Volume{}
	var order []string
	for i := range o.volumes {
		v, err := volume.Open(filepath.Join(dir, "primary-"+volName(i)+".img"), int64(o.blocks)*workload.BlockSize)
		if err != nil {
			t.Fatal(err)
		}
		p.vols = append(p.vols, v)
		if vols[ssName(i)] == nil {
			vols[ssName(i)] = map[string]*volume.Volume{}
			order = append(order, ssName(i))
		}
		vols[ssName(i)][volName(i)] = v
	}
	for _, name := range order {
		var names []string
		for n := range vols[name] {
			names = append(names, n)
		}
		ss := subsystem.New(name, p.timer, sidefile.New(o.sidefile), vols[name], names)
		p.subs = append(p.subs, ss)
		p.bySS[name] = ss
	}
	var zstd *transport.Compressor
	if o.compress {
		var err error
		if zstd, err = transport.NewCompressor(0); err != nil {
			t.Fatal(err)
		}
	}
	p.mover = mover.New(mover.Config{Session: session, Subsystems: p.subs, Timer: p.timer, Interval: o.interval,
		Retransmit: o.retransmit, HandshakeTimeout: 500 * time.Millisecond, Dialer: o.dialer, Logger: quietLogger(), Compressor: zstd,
		NoIndexedAcks: o.namedAcks})
	ctx, cancel := context.WithCancel(context.Background())
	p.cancel, p.done = cancel, make(chan struct{})
	go func() {
		defer close(p.done)
		p.mover.Run(ctx)
	}()
	t.Cleanup(p.stop)
	return p
}

func (p *primary) stop() {
	p.cancel()
	<-p.done
	for _, v := range p.vols {
		v.Close()
	}
	p.vols = nil
}

// WriteAt makes the primary a workload target.
func (p *primary) WriteAt(ctx context.Context, vol int, b []byte, off int64) error {
	return p.bySS[ssName(vol)].Write(ctx, volName(vol), b, off)
}

func (p *primary) read(vol int, b []byte, off int64) error { return p.vols[vol].ReadAt(b, off) }

// secondarySite is the secondary site of a harness, in this process.
type secondarySite struct {
	sec    *secondary.Secondary
	vols   []*volume.Volume
	cancel context.CancelFunc
	done   chan error
}

type secondaryOpts struct {
	volumes   int
	blocks    int
	onApplied func(s *secondarySite, g *consistency.Group)
	plain     bool    // announce no compression, as a secondary from before it
	namedAcks bool    // name the subsystems in every acknowledgement, as a secondary from before indexed ones
	fs        disk.FS // holds the journal and the state file; nil: the real disk
}

func secondaryConfig(dir string, vols map[string]*volume.Volume, subsystems []string) secondary.Config {
	return secondary.Config{
		Session: session, Subsystems: subsystems, Volumes: vols,
		JournalDir: filepath.Join(dir, "journal"), StatePath: filepath.Join(dir, "state.json"),
		Logger: quietLogger(),
	}
}

func openVolumes(dir string, n, blocks int) ([]*volume.Volume, map[string]*volume.Volume, []string, error) {
	var list []*volume.Volume
	m := map[string]*volume.Volume{}
	var subs []string
	for i := range n {
		v, err := volume.Open(filepath.Join(dir, "secondary-"+volName(i)+".img"), int64(blocks)*workload.BlockSize)
		if err != nil {
			for _, o := range list {
				o.Close()
			}
			return nil, nil, nil, err
		}
		list = append(list, v)
		m[volName(i)] = v
		if len(subs) == 0 || subs[len(subs)-1] != ssName(i) {
			subs = append(subs, ssName(i))
		}
	}
	return list, m, subs, nil
}

func openSecondaryVolumes(t testing.TB, dir string, n, blocks int) ([]*volume.Volume, map[string]*volume.Volume, []string) {
	t.Helper()
	list, m, subs, err := openVolumes(dir, n, blocks)
	if err != nil {
		t.Fatal(err)
	}
	return list, m, subs
}

func startSecondary(t testing.TB, dir string, ln transport.Listener, o secondaryOpts) *secondarySite {
	t.Helper()
	if o.volumes == 0 {
		o.volumes = layout.Volumes
	}
	if o.blocks == 0 {
		o.blocks = layout.BlocksPerVolume
	}
	s := &secondarySite{done: make(chan error, 1)}
	var m map[string]*volume.Volume
	var subs []string
	s.vols, m, subs = openSecondaryVolumes(t, dir, o.volumes, o.blocks)
	cfg := secondaryConfig(dir, m, subs)
	if o.onApplied != nil {
		cfg.OnApplied = func(g *consistency.Group) { o.onApplied(s, g) }
	}
	cfg.Plain = o.plain
	cfg.NoIndexedAcks = o.namedAcks
	cfg.FS = o.fs
	sec, err := secondary.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	s.sec = sec
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	go func() { s.done <- sec.Run(ctx, ln) }()
	t.Cleanup(s.stop)
	return s
}

func (s *secondarySite) stop() {
	if s.cancel == nil {
		return
	}
	s.cancel()
	<-s.done
	s.cancel = nil
	s.sec.Close()
	for _, v := range s.vols {
		v.Close()
	}
}

// readDirect reads a secondary volume without the view lock (for use inside
// OnApplied, which already excludes readers).
func (s *secondarySite) readDirect(vol int, b []byte, off int64) error {
	return s.vols[vol].ReadAt(b, off)
}

func (s *secondarySite) read(vol int, b []byte, off int64) error {
	return s.sec.ReadAt(volName(vol), b, off)
}

// quiesce ships everything the primary holds and waits until the secondary
// has applied it. The secondary acknowledges a group once it is journaled and
// applies it afterwards, so a read right after Quiesce alone may still see
// the volumes before the last group.
func quiesce(t testing.TB, p *primary, s *secondarySite) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := p.mover.Quiesce(ctx); err != nil {
		t.Fatal(err)
	}
	// As long as Quiesce's own bound: applying a journaled group of large
	// writes under -race on a loaded machine has taken over 10 s.
	waitFor(t, time.Minute, "the secondary to apply the last acknowledged group", func() bool {
		return s.sec.Stats().Group >= p.mover.Stats().Acked.Group
	})
}

// waitGroups waits until target groups have been applied and checked,
// failing at the first violation, and when no group is applied for stall: a
// stuck replication fails fast, a slow machine only takes longer. state says
// where both sites are, for the failure message.
func waitGroups(t testing.TB, v *violations, target int, stall time.Duration, state func() string) {
	t.Helper()
	start := time.Now()
	last, since := -1, start
	var longest time.Duration
	for {
		n, list := v.snapshot()
		if len(list) > 0 {
			t.Fatalf("violations after %d groups:\n%v", n, list)
		}
		if n != last {
			longest = max(longest, time.Since(since))
			last, since = n, time.Now()
		}
		if n >= target {
			t.Logf("%d groups applied in %s, longest wait for a group %s", n, time.Since(start).Round(time.Millisecond), longest.Round(time.Millisecond))
			return
		}
		if time.Since(since) > stall {
			dumpGoroutines(t)
			t.Fatalf("no group applied for %s: stuck after %d of %d groups; %s", stall, n, target, state())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// assertConverged checks every secondary volume is byte-identical to its primary.
func assertConverged(t testing.TB, n, blocks int, primary, secondary workload.Reader) {
	t.Helper()
	size := blocks * workload.BlockSize
	a, b := make([]byte, size), make([]byte, size)
	for v := range n {
		if err := primary(v, a, 0); err != nil {
			t.Fatal(err)
		}
		if err := secondary(v, b, 0); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a, b) {
			for i := range a {
				if a[i] != b[i] {
					t.Fatalf("volume %d differs first at byte %d (block %d)", v, i, i/workload.BlockSize)
				}
			}
		}
	}
}

// violations is a concurrency-safe collector for OnApplied checks.
type violations struct {
	mu     sync.Mutex
	groups int
	list   []string
}

func (v *violations) add(g uint64, vs []workload.Violation, err error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.groups++
	if err != nil && len(v.list) < 20 {
		v.list = append(v.list, fmt.Sprintf("group %d: %v", g, err))
	}
	for _, x := range vs {
		if len(v.list) < 20 {
			v.list = append(v.list, fmt.Sprintf("group %d: %s", g, x))
		}
	}
}

func (v *violations) snapshot() (int, []string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.groups, append([]string(nil), v.list...)
}

// dumpGoroutines writes every goroutine's stack to the test log.
func dumpGoroutines(t testing.TB) {
	t.Helper()
	var b strings.Builder
	pprof.Lookup("goroutine").WriteTo(&b, 2)
	t.Logf("goroutines:\n%s", b.String())
}

// replicationState says where the mover and the secondary are.
func replicationState(m *mover.Mover, s *secondary.Secondary) string {
	return fmt.Sprintf("mover %+v; secondary %+v", m.Stats(), s.Stats())
}

// strikeEveryFault goes on, 20 groups at a time (more waits for them),
// until each kind of fault the link draws has struck at least once. The
// faults are drawn per frame, and an interval is one frame of record sets
// and heartbeats: a loaded machine forms few frames a minute, and a
// disconnect comes once in 333 of them, so a kind that has not struck yet
// is drawn ten times as often as faults says until it has. It fails after
// 20 rounds; it leaves the link with faults.
func strikeEveryFault(t *testing.T, net *transport.MemNetwork, faults transport.Faults, more func()) {
	t.Helper()
	for round := 0; ; round++ {
		fs := net.Stats()
		boost := faults
		missing := false
		for _, k := range []struct {
			struck uint64
			p      *float64
		}{{fs.Dropped, &boost.Drop}, {fs.Duplicated, &boost.Duplicate}, {fs.Reordered, &boost.Reorder},
			{fs.Corrupted, &boost.Corrupt}, {fs.Disconnects, &boost.Disconnect}} {
			if k.struck == 0 {
				*k.p = min(0.5, 10**k.p)
				missing = true
			}
		}
		if !missing {
			net.SetFaults(faults)
			return
		}
		if round == 20 {
			t.Fatalf("not every fault struck in 20 rounds of 20 groups: %+v", fs)
		}
		net.SetFaults(boost)
		more()
	}
}
