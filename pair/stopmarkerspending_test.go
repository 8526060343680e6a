package pair

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"duplex/disk"
	"duplex/mover"
	"duplex/secondary"
	"duplex/sidefile"
	"duplex/subsystem"
	"duplex/timer"
	"duplex/transport"
	"duplex/volume"
)

// TestAStopBeforeTheMarkersAnnouncedAgainClaimsNothingTheSecondaryLacks:
// the link goes down with the sidefile full and a's write A
// (acknowledged) held; the session suspends a and drops what the mover
// holds, A and a's suspension's marker with it, and the markers it
// announces again are not captured yet (here the timer's lease hangs as
// the drop ends) when the primary stops, the link still down: nothing
// is held, and the stop saves its pair state clean, a suspended with
// A's region in its bitmap. Until the next start announces a's
// suspension again, the secondary lists a duplex: it must then claim a
// consistent only as of a time before A's stamp (its last group, from
// before the drop), and so must the primary; after the next start, the
// link back, the secondary learns a's suspension before any group,
// and a's resume by the session copies A's region.
func TestAStopBeforeTheMarkersAnnouncedAgainClaimsNothingTheSecondaryLacks(t *testing.T) {
	const size = 1 << 20
	dir := t.TempDir()
	fs := disk.NewInjector(nil)
	held := make(chan struct{})
	release := sync.OnceFunc(func() { close(held) })
	t.Cleanup(release)
	var clock atomic.Int64
	clock.Store(time.Date(2026, 12, 6, 4, 0, 0, 0, time.UTC).UnixNano())
	if err := os.MkdirAll(filepath.Join(dir, "lease"), 0o755); err != nil {
		t.Fatal(err)
	}
	tm, err := timer.OpenPersistent(fs, filepath.Join(dir, "lease", "timer.json"), clock.Load, time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	pv, err := volume.Open(filepath.Join(dir, "a.img"), size)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pv.Close() })
	sv, err := volume.Open(filepath.Join(dir, "secondary-a.img"), size)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sv.Close() })
	quiet := slog.New(slog.NewTextHandler(&lockedBuffer{}, nil))
	sec, err := secondary.Open(secondary.Config{Session: "sess", Subsystems: []string{"s1"}, Volumes: map[string]*volume.Volume{"a": sv},
		JournalDir: filepath.Join(dir, "journal"), StatePath: filepath.Join(dir, "secondary.json"),
		Checkpoint: 10 * time.Millisecond, CheckpointEvery: 10 * time.Millisecond, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	net := transport.NewMemNetwork(1, transport.Faults{})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() {
		release()
		cancel()
		wg.Wait()
		sec.Close()
		net.Close()
	})
	wg.Add(1)
	go func() { defer wg.Done(); sec.Run(ctx, net) }()
	logs := &lockedBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("the manager's log:\n%s", logs.String())
		}
	})
	state := filepath.Join(dir, "pairs")
	if err := os.MkdirAll(state, 0o755); err != nil {
		t.Fatal(err)
	}
	// run starts a primary process on the pair state: its subsystem (a
	// sidefile that anything held leaves no room for a 1 MiB update in:
	// full, as the session's suspension for the link down asks), mover
	// and pair manager, until stop; stop ends its loops, the pair state
	// saved clean, as a stop that found nothing held does.
	run := func() (ss *subsystem.Subsystem, mv *hookedMover, mg *Manager, stop func()) {
		ss = subsystem.New("s1", tm, sidefile.New(sidefile.Cost(size)), map[string]*volume.Volume{"a": pv}, []string{"a"})
		mv = &hookedMover{Mover: mover.New(mover.Config{Session: "sess", Subsystems: []*subsystem.Subsystem{ss}, Timer: tm,
			Interval: 10 * time.Millisecond, Dialer: net, Retransmit: 50 * time.Millisecond, Silence: 500 * time.Millisecond,
			HandshakeTimeout: time.Second, Logger: quiet})}
		mg, err := Open(Options{Dir: state, SuspendAfter: 20 * time.Millisecond, SaveWait: 200 * time.Millisecond,
			Logger: slog.New(slog.NewTextHandler(logs, nil))}, mv, []Volume{{Name: "a", Subsystem: ss, Size: size}})
		if err != nil {
			t.Fatal(err)
		}
		rctx, rcancel := context.WithCancel(ctx)
		var rwg sync.WaitGroup
		rwg.Add(2)
		go func() { defer rwg.Done(); mv.Run(rctx) }()
		go func() { defer rwg.Done(); mg.Run(rctx) }()
		wg.Add(1)
		stopped := make(chan struct{})
		go func() { defer wg.Done(); rwg.Wait(); close(stopped) }()
		return ss, mv, mg, func() {
			rcancel()
			// The mover's loop ends once its cut has its stamp: the
			// link down, it ships nothing meanwhile.
			<-stopped
		}
	}
	ss, mv, mg, stop := run()
	waitUntil(t, 20*time.Second, "a's first copy to end, a duplex at the secondary", func() bool {
		v := sec.Volume("a")
		return mg.Pairs()[0].State == Duplex && v.State == secondary.StateDuplex && v.Consistent
	})
	hung := make(chan struct{})
	mv.afterDrop = sync.OnceFunc(func() {
		fs.Inject(disk.Fault{Op: disk.OpWrite, Under: filepath.Join(dir, "lease"), Hang: held})
		clock.Add(int64(2 * time.Second))
		close(hung)
	})
	net.SetDown(true)
	net.Cut()
	a := bytes.Repeat([]byte{0xa1}, 4096)
	const off = 64 << 10
	if err := ss.Write(context.Background(), "a", a, off); err != nil {
		t.Fatal(err)
	}
	stampA := tm.Last() // A's stamp, or a later one
	select {
	case <-hung:
	case <-time.After(10 * time.Second):
		t.Fatal("the session has not suspended itself 10 s after the link went down with the sidefile full")
	}
	waitUntil(t, 10*time.Second, "the markers announced again to be put off", func() bool {
		return bytes.Contains([]byte(logs.String()), []byte("announced again after its drop, waits for the write of the timer's lease"))
	})
	// The stop, the link down: nothing held, and a's suspension not yet
	// announced again.
	if n := mv.Stats().HeldWithUpdates; n != 0 {
		t.Fatalf("the mover holds %d record sets with updates after the session's drop", n)
	}
	if n := ss.Sidefile().Stats().Captured; n != 0 {
		t.Fatalf("the sidefile holds %d updates after the session's drop, the markers announced again not captured", n)
	}
	if err := mg.Close(true); err != nil {
		t.Fatal(err)
	}
	saved := savedPersisted(t, filepath.Join(state, "pairs.json"))
	t.Logf("saved: clean %v, %+v", saved.Clean, *saved.Pairs[0])
	if !saved.Clean || saved.Pairs[0].State != Suspended {
		t.Fatalf("the stop saved clean %v, a %s: want clean, a suspended (the case this test pins)", saved.Clean, saved.Pairs[0].State)
	}
	checkClaims := func(when string, primary *Pair) {
		t.Helper()
		v := sec.Volume("a")
		got := make([]byte, len(a))
		if err := sec.ReadAt("a", got, off); err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: a at the secondary %+v; at the primary %+v", when, v, *primary)
		lacks := !bytes.Equal(got, a)
		if v.Consistent && v.Time >= stampA && lacks {
			t.Errorf("%s: the secondary calls a consistent as of %d, at or after the stamp of the acknowledged write A (%d), yet lacks A", when, v.Time, stampA)
		}
		if primary.Consistent >= stampA && lacks {
			t.Errorf("%s: the primary calls a consistent as of %d at the secondary, at or after A's stamp (%d), which it lacks", when, primary.Consistent, stampA)
		}
	}
	t.Logf("A stamped at %d or before", stampA)
	checkClaims("stopped", saved.Pairs[0])
	// The process ends: its loops stop, the link down, and the markers,
	// captured once the disk answers, die in its sidefile.
	release()
	stop()
	leaseWritten(t, tm, filepath.Join(dir, "lease"))
	checkClaims("the process ended", saved.Pairs[0])

	// The next start, the link back: a's suspension announced again
	// before any group, then the session's resume of a copies A's region
	// (its bitmap's), and a is duplex again, holding A. Whatever the
	// secondary and the primary claim meanwhile holds.
	ss, mv, mg, stop = run()
	defer stop()
	net.SetDown(false)
	for end := time.Now().Add(20 * time.Second); ; time.Sleep(2 * time.Millisecond) {
		p := mg.Pairs()[0]
		checkClaims("restarted", &p)
		got := make([]byte, len(a))
		if err := sec.ReadAt("a", got, off); err != nil {
			t.Fatal(err)
		}
		if v := sec.Volume("a"); p.State == Duplex && v.State == secondary.StateDuplex && v.Consistent && bytes.Equal(got, a) {
			break
		}
		if t.Failed() {
			t.FailNow()
		}
		if time.Now().After(end) {
			t.Fatalf("restarted: a is not duplex again, holding A, 20 s after the link came back: %+v at the secondary", sec.Volume("a"))
		}
	}
	// Logged as the resume ends, which a duplex pair need not follow on
	// a loaded machine.
	for end := time.Now().Add(10 * time.Second); !bytes.Contains([]byte(logs.String()), []byte("link is back: resumed")); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(end) {
			t.Errorf("restarted: a duplex again without the session's resume, which copies A's region")
			break
		}
	}
}
