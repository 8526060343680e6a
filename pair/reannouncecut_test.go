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
	"duplex/recordset"
	"duplex/secondary"
	"duplex/sidefile"
	"duplex/subsystem"
	"duplex/timer"
	"duplex/transport"
	"duplex/volume"
)

// hookedMover is the real mover, with afterDrop run once its Drop has
// handed over what it drops.
type hookedMover struct {
	*mover.Mover
	afterDrop func()
}

func (m *hookedMover) Drop(mark func(recordset.Update)) {
	m.Mover.Drop(mark)
	if m.afterDrop != nil {
		m.afterDrop()
	}
}

// TestAHungLeaseLetsNoGroupReachTheSecondaryBeforeTheMarkersAnnouncedAgain:
// the link goes down with the sidefile full, a's write A (acknowledged)
// held by the mover; the session suspends a and drops what the mover
// holds, A and a's suspension's marker with it. The timer's lease hangs
// as the drop ends, and the mover's next cut, stamping its horizon, waits
// for it as the marker announced again does. The link comes back, then
// the disk answers. Whatever order the stamps are handed out in, the
// secondary must not take any group formed after the drop for one that
// holds every write of a stamped before it: a group reaching it before
// a's marker announced again would have it call a duplex, and then
// suspended, consistent as of that group's time, after A's stamp, while
// it lacks A.
func TestAHungLeaseLetsNoGroupReachTheSecondaryBeforeTheMarkersAnnouncedAgain(t *testing.T) {
	const size = 1 << 20
	// The session's resume on the link's return waits until the test has
	// read what the secondary says: A stays missing there meanwhile. Put
	// back last, once the manager's loop has ended. Only the resume after
	// the drop waits (holdResume): a link slow to come up at the start
	// (a loaded machine's handshake), the first copy filling the sidefile,
	// suspends a too, and its first copy ends only once a is resumed.
	resumed := make(chan struct{})
	var holdResume atomic.Bool
	old := resumeHook
	resumeHook = func(string) {
		if holdResume.Load() {
			<-resumed
		}
	}
	t.Cleanup(func() { resumeHook = old })
	dir := t.TempDir()
	fs := disk.NewInjector(nil)
	held := make(chan struct{})
	release := sync.OnceFunc(func() { close(held) })
	t.Cleanup(release)
	var clock atomic.Int64
	clock.Store(time.Date(2026, 12, 5, 22, 0, 0, 0, time.UTC).UnixNano())
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
	// Anything held leaves no room for a 1 MiB update: full, as the
	// session's suspension for the link down asks.
	ss := subsystem.New("s1", tm, sidefile.New(sidefile.Cost(size)), map[string]*volume.Volume{"a": pv}, []string{"a"})

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

	mv := &hookedMover{Mover: mover.New(mover.Config{Session: "sess", Subsystems: []*subsystem.Subsystem{ss}, Timer: tm,
		Interval: 10 * time.Millisecond, Dialer: net, Retransmit: 50 * time.Millisecond, Silence: 500 * time.Millisecond,
		HandshakeTimeout: time.Second, Logger: quiet})}
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
	mg, err := Open(Options{Dir: state, SuspendAfter: 20 * time.Millisecond, SaveWait: 200 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(logs, nil))}, mv, []Volume{{Name: "a", Subsystem: ss, Size: size}})
	if err != nil {
		t.Fatal(err)
	}
	// Let go before the loops' end is waited for (the cleanup before).
	t.Cleanup(sync.OnceFunc(func() { close(resumed) }))
	wg.Add(2)
	go func() { defer wg.Done(); mv.Run(ctx) }()
	go func() { defer wg.Done(); mg.Run(ctx) }()

	waitUntil(t, 20*time.Second, "a's first copy to end, a duplex at the secondary", func() bool {
		v := sec.Volume("a")
		return mg.Pairs()[0].State == Duplex && v.State == secondary.StateDuplex && v.Consistent
	})
	holdResume.Store(true)

	hung := make(chan struct{})
	mv.afterDrop = sync.OnceFunc(func() {
		fs.Inject(disk.Fault{Op: disk.OpWrite, Under: filepath.Join(dir, "lease"), Hang: held})
		clock.Add(int64(2 * time.Second))
		// The mover's cuts go on every 10 ms: the next one's stamp
		// waits for the lease, here ahead of the markers announced
		// again, as it may anywhere.
		for end := time.Now().Add(time.Second); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
			if _, waiting := tm.LeaseWait(); waiting > 0 {
				break
			}
		}
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
	// The markers announced again tried, and put off.
	waitUntil(t, 10*time.Second, "the markers announced again to be put off", func() bool {
		return bytes.Contains([]byte(logs.String()), []byte("announced again after its drop, waits for the write of the timer's lease"))
	})
	net.SetDown(false)
	waitUntil(t, 10*time.Second, "the link to come back", func() bool { return mv.Stats().Connected })
	release()
	waitUntil(t, 10*time.Second, "a suspended at the secondary", func() bool {
		v := sec.Volume("a")
		return v.State == secondary.StateSuspended && (v.AsOfSuspension || !v.Consistent)
	})
	v := sec.Volume("a")
	got := make([]byte, len(a))
	if err := sec.ReadAt("a", got, off); err != nil {
		t.Fatal(err)
	}
	if v.Consistent && v.Time >= stampA && !bytes.Equal(got, a) {
		t.Errorf("the secondary calls a consistent as of %d, at or after the stamp of the acknowledged write A (%d), yet lacks A "+
			"(a group formed after the drop reached it before a's suspension announced again)", v.Time, stampA)
	}
	t.Logf("a at the secondary: %+v, A's stamp at most %d", v, stampA)
	leaseWritten(t, tm, filepath.Join(dir, "lease"))
}

// waitUntil polls cond until it holds, or fails the test after d.
func waitUntil(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(d); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("waited %s for %s", d, what)
		}
	}
}
