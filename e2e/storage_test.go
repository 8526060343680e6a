package e2e

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"duplex/config"
	"duplex/disk"
	"duplex/internal/testenv"
	"duplex/pair"
	"duplex/site"
	"duplex/transport"
	"duplex/workload"
)

// reopenable is a listener that a stopped secondary does not close, so a
// restarted one accepts the primary that is still dialling.
type reopenable struct{ *transport.MemNetwork }

func (reopenable) Close() error { return nil }

// opsTarget lets the dependent-write workload write through the primary site.
type opsTarget struct{ s *opsSession }

func (o opsTarget) WriteAt(ctx context.Context, vol int, p []byte, off int64) error {
	return o.s.prim.Write(ctx, o.s.cfg.VolumeNames()[vol], p, off)
}

// secondaryReader reads the secondary volumes at a group boundary.
func (s *opsSession) secondaryReader() workload.Reader {
	names := s.cfg.VolumeNames()
	return func(v int, p []byte, off int64) error { return s.sec.ReadAt(names[v], p, off) }
}

// storageLoad runs the dependent-write workload through the primary until
// stopped; acked counts acknowledged writes, and a write error fails the test.
type storageLoad struct {
	acked  atomic.Int64
	cancel context.CancelFunc
	done   chan error
}

func startStorageLoad(s *opsSession, l workload.Layout) *storageLoad {
	ctx, cancel := context.WithCancel(context.Background())
	ld := &storageLoad{cancel: cancel, done: make(chan error, 1)}
	go func() {
		_, err := workload.Run(ctx, l, countingTarget{opsTarget{s}, &ld.acked}, 0, 11)
		ld.done <- err
	}()
	return ld
}

func (ld *storageLoad) stop(t *testing.T) {
	t.Helper()
	ld.cancel()
	select {
	case err := <-ld.done:
		if err != nil {
			t.Fatalf("a write failed at the primary: %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("the workload did not stop within a minute: a write is stuck at the primary")
	}
}

type countingTarget struct {
	workload.Target
	n *atomic.Int64
}

func (c countingTarget) WriteAt(ctx context.Context, vol int, p []byte, off int64) error {
	err := c.Target.WriteAt(ctx, vol, p, off)
	if err == nil {
		c.n.Add(1)
	}
	return err
}

// checkInvariant fails the test if the secondary holds a write without one
// it depends on. The secondary may be applying groups meanwhile, and volumes
// are read one after another, so the writes held are read first and the
// dependencies checked in a second read: the copy only moves forward, so a
// dependency present at the first read is still met at the second.
func (s *opsSession) checkInvariant(l workload.Layout, when string) {
	s.t.Helper()
	holders, bad, err := workload.ReadImage(l, s.secondaryReader())
	if err != nil {
		s.t.Fatalf("%s: reading the secondary: %v", when, err)
	}
	deps, _, err := workload.ReadImage(l, s.secondaryReader())
	if err != nil {
		s.t.Fatalf("%s: reading the secondary: %v", when, err)
	}
	vs := append(bad, holders.Violations(deps, workload.Scope{})...)
	if len(vs) > 0 {
		s.t.Fatalf("%s: %d dependent-write violations at the secondary, first %v", when, len(vs), vs[0])
	}
}

// storageScenario is the operator's story of a secondary whose journal disk
// fails: the secondary stops with the reason in its log and status; the
// primary goes on serving writes, paced, then suspended into bitmaps; once
// the disk works again (heal) and the secondary restarts, the pairs resync and
// the secondary ends byte-identical, with the dependent-write invariant intact
// at every point it is read.
//
// With restartFull, the secondary is first restarted with the disk still
// full: it must refuse to start, naming what its journal needs, and a 1 MiB
// write at the primary must still complete.
func storageScenario(t *testing.T, cfg *config.Config, secOpts site.SecondaryOptions, fail, heal func(), want string, restartFull bool) {
	const suspended = 30 * time.Second
	l := workload.Layout{Volumes: len(cfg.VolumeNames()), BlocksPerVolume: 256, Clients: 4}
	logs := &testenv.LogBuffer{}
	s := &opsSession{t: t, cfg: cfg, net: transport.NewMemNetwork(4, transport.Faults{})}
	s.secOpts = secOpts
	s.secOpts.Listener = reopenable{s.net}
	s.secLog = slog.New(slog.NewTextHandler(logs, nil))
	s.startSecondary()
	s.startPrimary()
	t.Cleanup(func() {
		s.stopPrimary()
		s.stopSecondary()
	})
	for _, name := range cfg.VolumeNames() {
		s.waitState(name, pair.Duplex, time.Minute)
	}
	ld := startStorageLoad(s, l)
	waitFor(t, time.Minute, "writes replicating before the fault", func() bool {
		return ld.acked.Load() > 200 && s.sec.Replica().Stats().GroupsApplied > 10
	})

	fail()
	waitFor(t, time.Minute, "the secondary to stop", func() bool { return s.sec.Status().Stopped != "" })
	if st := s.sec.Status().Stopped; !strings.Contains(st, want) {
		t.Errorf("secondary status says %q, want the reason (%q)", st, want)
	}
	if lg := logs.String(); !strings.Contains(lg, "secondary stopped") || !strings.Contains(lg, want) {
		t.Errorf("the secondary's log does not say it stopped and why (%q)", want)
	}
	s.checkInvariant(l, "when the secondary stopped")

	for _, name := range cfg.VolumeNames() {
		s.waitState(name, pair.Suspended, suspended)
	}
	before := ld.acked.Load()
	waitFor(t, 30*time.Second, "writes to go on at the primary while the secondary is stopped", func() bool {
		return ld.acked.Load() > before+200
	})
	if st := s.prim.Status(); !strings.Contains(st.LastError, want) {
		t.Logf("primary status last_error %q does not carry the secondary's reason", st.LastError)
	}
	s.checkInvariant(l, "while the pairs were suspended")

	if restartFull {
		s.stopSecondary()
		opts := s.secOpts
		sec, err := site.OpenSecondary(cfg, quietLogger(), opts)
		if err == nil {
			sec.Close()
			t.Fatal("the secondary started with its journal's disk still full")
		}
		if msg := err.Error(); !strings.Contains(msg, "needs") || !strings.Contains(msg, "free") {
			t.Errorf("the refusal to start does not name what the journal needs and what is free: %v", err)
		}
		t.Logf("restart with the disk still full: %v", err)
		// Past the workload's blocks, so the invariant checks still read
		// only the workload's writes.
		big := bytes.Repeat([]byte{0x3c}, 1<<20)
		done := make(chan error, 1)
		go func() { done <- s.prim.Write(context.Background(), cfg.VolumeNames()[0], big, 2<<20) }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("1 MiB write at the primary: %v", err)
			}
		case <-time.After(time.Minute):
			t.Fatal("a 1 MiB write at the primary is stuck for a minute while the secondary cannot start")
		}
	}

	heal()
	s.stopSecondary()
	s.startSecondary()
	for _, name := range cfg.VolumeNames() {
		s.waitState(name, pair.Duplex, 2*time.Minute)
	}
	ld.stop(t)
	if st := s.sec.Status().Stopped; st != "" {
		t.Errorf("the restarted secondary still says stopped: %s", st)
	}
	s.checkInvariant(l, "after the resync")
	s.assertImagesEqual()
	t.Logf("%d writes acknowledged, none failed", ld.acked.Load())
}

// journalFaults are the faults a disk gives the journal: ENOSPC from a
// write, EIO from an fsync, with the words of each error.
var journalFaults = []struct {
	name string
	op   disk.Op
	err  error
	want string
}{
	{"write ENOSPC", disk.OpWrite, disk.ENOSPC, "no space left on device"},
	{"fsync EIO", disk.OpSync, disk.EIO, "input/output error"},
}

// TestJournalFaultAtSecondaryPrimaryGoesOn injects the journal faults a disk
// gives (ENOSPC from write, EIO from fsync) into the secondary's journal
// while a dependent-write workload runs through the primary.
func TestJournalFaultAtSecondaryPrimaryGoesOn(t *testing.T) {
	t.Parallel()
	for _, tc := range journalFaults {
		t.Run(tc.name, func(t *testing.T) {
			cfg := newOpsConfig(t, 4<<20, 1<<20, 500*time.Millisecond)
			in := disk.NewInjector(nil)
			storageScenario(t, cfg, site.SecondaryOptions{FS: in},
				func() { in.Inject(disk.Fault{Op: tc.op, Under: cfg.Secondary.Journal, Err: tc.err}) },
				func() {
					if in.Injected(tc.op) == 0 {
						t.Fatalf("the %s fault never fired", tc.op)
					}
					in.Clear()
				}, tc.want, false)
		})
	}
}

// TestSecondaryDiskFull puts the secondary's journal on a small ext4 file
// system (a loop-mounted image) and fills it for real.
func TestSecondaryDiskFull(t *testing.T) {
	mnt := smallExt4(t, 48<<20)
	cfg := newOpsConfig(t, 4<<20, 1<<20, 500*time.Millisecond)
	cfg.Secondary.Journal = filepath.Join(mnt, "journal")
	filler := filepath.Join(mnt, "filler")
	storageScenario(t, cfg, site.SecondaryOptions{},
		func() { fill(t, filler) },
		func() {
			if err := os.Remove(filler); err != nil {
				t.Fatal(err)
			}
		}, "no space left on device", true)
}

// fill writes path until the file system is full.
func fill(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	for {
		if _, err := f.Write(buf); err != nil {
			break
		}
	}
	// Whatever the last partial block left.
	for {
		if _, err := f.Write(buf[:4096]); err != nil {
			break
		}
	}
	f.Sync()
}

// smallExt4 mounts a fresh ext4 file system of size bytes and returns its
// mount point; it skips the test when that is not possible here.
func smallExt4(t *testing.T, size int64) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to loop-mount a small ext4 file system")
	}
	for _, tool := range []string{"mkfs.ext4", "mount", "umount"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not found: %v", tool, err)
		}
	}
	dir := t.TempDir()
	img, mnt := filepath.Join(dir, "fs.img"), filepath.Join(dir, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, size); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", img).CombinedOutput(); err != nil {
		t.Skipf("mkfs.ext4: %v: %s", err, out)
	}
	if out, err := exec.Command("mount", "-o", "loop", img, mnt).CombinedOutput(); err != nil {
		t.Skipf("cannot loop-mount an ext4 image here: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			// Lazily, so a file still open cannot leave the mount behind.
			if out2, err2 := exec.Command("umount", "-l", mnt).CombinedOutput(); err2 != nil {
				t.Errorf("umount %s: %v: %s; %v: %s", mnt, err, out, err2, out2)
			}
		}
	})
	return mnt
}

// TestActivityLogFaultAtPrimary fails the primary's activity log writes.
// The application's writes go on: the primary records that this run has
// no log and turns it off (an unclean stop then copies every pair in
// full), so no write is refused or left hanging for want of the log, the
// status says the log is off and why, and the sites converge.
func TestActivityLogFaultAtPrimary(t *testing.T) {
	t.Parallel()
	const volSize = 64 << 20
	cfg := newOpsConfig(t, volSize, 8<<20, time.Minute)
	in := disk.NewInjector(nil)
	s := &opsSession{t: t, cfg: cfg, net: transport.NewMemNetwork(4, transport.Faults{})}
	s.primOpts.FS = in
	s.startSecondary()
	s.startPrimary()
	t.Cleanup(func() {
		s.stopPrimary()
		s.stopSecondary()
	})
	for _, name := range cfg.VolumeNames() {
		s.waitState(name, pair.Duplex, time.Minute)
	}
	in.Inject(disk.Fault{Op: disk.OpWrite, Under: filepath.Join(site.PairStateDir(cfg), "activity.log"), Err: disk.EIO})
	buf := bytes.Repeat([]byte{0x77}, 4096)
	// Regions the initial copy marked stay marked until their copies are
	// acknowledged and the log is cleaned, and a region written here stays
	// marked while in use: walk regions not written yet, over every volume,
	// until one needs the log and the log is turned off.
	off := ""
	deadline := time.Now().Add(30 * time.Second)
walk:
	for at := int64(0); at < volSize; at += 1 << 20 {
		for _, name := range cfg.VolumeNames() {
			if time.Now().After(deadline) {
				break walk
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			err := s.prim.Write(ctx, name, buf, at)
			hung := ctx.Err() != nil
			cancel()
			switch {
			case hung:
				t.Fatalf("a write to %s at %d hung for 30s while the activity log failed", name, at)
			case err != nil:
				t.Fatalf("a write to %s at %d failed while only the activity log failed: %v", name, at, err)
			}
			if off = s.prim.Status().ActivityLogOff; off != "" {
				t.Logf("activity log off after the write to %s at %d: %s", name, at, off)
				break walk
			}
			time.Sleep(20 * time.Millisecond) // give the log's cleaning a turn
		}
	}
	if off == "" {
		t.Fatal("the activity log failed under every region written, and the status never said it was off")
	}
	if !strings.Contains(off, "input/output error") {
		t.Errorf("status says the log is off for %q, want the log's error", off)
	}
	in.Clear()
	s.assertImagesEqual()
}
