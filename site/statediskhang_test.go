package site

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"duplex/actlog"
	"duplex/config"
	"duplex/disk"
	"duplex/pair"
)

// stateDiskHang holds every write, fsync, create, rename and removal in
// the primary's state directory (the activity log, the pair state and
// bitmaps, the timer's lease) until released: the disk holding them
// stops answering, neither failing nor returning.
type stateDiskHang struct {
	fs      *disk.Injector
	held    chan struct{}
	release func()
}

func (h *stateDiskHang) hang(dir string) {
	for _, op := range []disk.Op{disk.OpWrite, disk.OpSync, disk.OpSyncDir, disk.OpCreate, disk.OpRename, disk.OpRemove, disk.OpTruncate} {
		h.fs.Inject(disk.Fault{Op: op, Under: dir, Hang: h.held})
	}
}

// stateDiskHanging runs a secondary and a primary whose state directory
// is on h's disk (the stop waiting up to stopWait), until every pair is
// duplex, writes to vol2, and hangs that disk once only vol2's region is
// marked in the activity log. With idle set, regions are unmarked once
// idle that long (actlog.Idle), and the disk hangs right after the
// write, so that vol2's region is unmarked during the hang.
func stateDiskHanging(t *testing.T, stopWait, idle time.Duration) (*Primary, *Secondary, *stateDiskHang, *logBuffer, func() error) {
	t.Helper()
	return stateDiskHangingWith(t, stopWait, idle, nil)
}

// stateDiskHangingWith is stateDiskHanging with the primary's options
// changed by more first (if set).
func stateDiskHangingWith(t *testing.T, stopWait, idle time.Duration, more func(*PrimaryOptions)) (*Primary, *Secondary, *stateDiskHang, *logBuffer, func() error) {
	t.Helper()
	return stateDiskHangingOf(t, stopWait, idle, more, (*stateDiskHang).hang)
}

// stateDiskHangingOf is stateDiskHangingWith whose disk hangs as hang
// has it (given the state directory): one file's writes alone, say.
func stateDiskHangingOf(t *testing.T, stopWait, idle time.Duration, more func(*PrimaryOptions), hang func(h *stateDiskHang, dir string)) (*Primary, *Secondary, *stateDiskHang, *logBuffer, func() error) {
	t.Helper()
	old := actlog.Idle
	actlog.Idle = cmp.Or(idle, time.Hour) // vol2's region stays marked
	t.Cleanup(func() { actlog.Idle = old })
	cfg, s, dialer := linkedSecondary(t)
	var p *Primary
	t.Cleanup(func() {
		// After the stop and the disk's answer, before the test's
		// directory is removed (registered after it was made: cleanups
		// run last first): a stop that went on
		// without the pair manager's loop, or the activity log's last
		// write, leaves them to end then, and they read actlog.Idle
		// until they have.
		if p == nil {
			return
		}
		for what, ended := range map[string]<-chan struct{}{"the pair manager's loop": p.pairsEnded, "the activity log's last write": p.logEnded,
			"the suspension of the pairs whose writes failed": p.failedSuspended} {
			if ended == nil {
				continue
			}
			select {
			case <-ended:
			case <-time.After(30 * time.Second):
				t.Errorf("%s has not ended 30s after the disk answered; goroutines:\n%s", what, goroutines())
			}
		}
		// A write given up (the timer's lease, a record) removes its
		// temporary file once the disk answers: not after the test's
		// directory is.
		for end := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			tmp, _ := filepath.Glob(filepath.Join(p.stateDir, "*.tmp*"))
			if d, _ := p.timer.LeaseWait(); d == 0 && len(tmp) == 0 {
				break
			}
			if time.Now().After(end) {
				t.Errorf("a write given up has not ended 30s after the disk answered (%v); goroutines:\n%s", tmp, goroutines())
				break
			}
		}
		// And every other one (a save of the pair state, a volume's
		// close): the primary lets its LOCK go once they have.
		awaitStateDirLetGo(t, p.cfg)
	})
	h := newStateDiskHang()
	logs := &logBuffer{}
	t.Cleanup(func() {
		// Last, after the stop: what the primary did, and how far its
		// stop got.
		if t.Failed() {
			t.Logf("the primary's log:\n%s", logs.String())
		}
	})
	opts := PrimaryOptions{
		Dialer: dialer, CopyReadWait: healthyReadWait,
		FS: h.fs, stopFlushWait: stopWait, slowDisk: 200 * time.Millisecond}
	if more != nil {
		more(&opts)
	}
	var err error
	p, err = OpenPrimary(cfg, slog.New(slog.NewTextHandler(logs, nil)), opts)
	if err != nil {
		t.Fatal(err)
	}
	var runErr error
	stop := runUntil(t, func(ctx context.Context) { runErr = p.Run(ctx, 10*time.Second) })
	t.Cleanup(h.release) // before the stop
	waitFor(t, 30*time.Second, "every pair duplex", func() bool { return allPairsDuplex(p.Status()) })
	if err := p.Write(context.Background(), "vol2", bytes.Repeat([]byte{0x72}, 4096), 0); err != nil {
		t.Fatal(err)
	}
	if idle == 0 {
		waitFor(t, 30*time.Second, "vol2's region alone marked", func() bool { return p.actlog.Marked() == 1 })
	}
	hang(h, p.stateDir)
	return p, s, h, logs, func() error { stop(); return runErr }
}

// TestAHungStateDiskLetsTheStatusMarkedWritesAndTheStopGoOn: the disk of
// the primary's state directory (the activity log and the pair state)
// stops answering. The status answers and names the wait; a write to
// vol2, whose region the log marks on disk, is acknowledged; a write to
// vol1, whose region must be marked first, waits, and the status says a
// write waits for the activity log. The stop returns within its bound,
// not clean, and the write that waited is never acknowledged. The
// operator's suspension of vol2 is answered in effect, not yet saved, the
// status naming the save that waits.
// Restarted once the disk answers, the primary copies what may differ:
// the secondary's volumes are the primary's.
func TestAHungStateDiskLetsTheStatusMarkedWritesAndTheStopGoOn(t *testing.T) {
	p, s, h, logs, stop := stateDiskHanging(t, time.Second, 0)
	cfg := p.cfg
	within(t, 10*time.Second, "the status", func() { p.Status() })
	within(t, 10*time.Second, "a write to vol2, its region marked", func() {
		if err := p.Write(context.Background(), "vol2", bytes.Repeat([]byte{0x73}, 4096), 4096); err != nil {
			t.Error(err)
		}
	})
	wrote := make(chan error, 1)
	go func() { wrote <- p.Write(context.Background(), "vol1", bytes.Repeat([]byte{0x71}, 4096), 0) }()
	select {
	case err := <-wrote:
		t.Fatalf("a write to vol1, its region not marked and the log's disk hung, returned: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	waitFor(t, 10*time.Second, "the status and metrics to say a write waits for the activity log", func() bool {
		st := p.Status()
		m := sampleMap(p.Samples())
		return bytes.Contains([]byte(st.DiskWait), []byte("activity log")) && m["activity_log_write_seconds"].Value > 0 &&
			m["activity_log_waiting_writes"].Value >= 1
	})
	t.Logf("status: %s", p.Status().DiskWait)
	// The operator's command is answered, in effect, not yet saved; the
	// status names the save that waits.
	within(t, 10*time.Second, "the suspension of vol2", func() {
		if err := p.Pairs().Suspend("vol2"); !errors.Is(err, pair.ErrSaveHung) {
			t.Errorf("the suspension of vol2 with the state's disk hung: %v, want pair.ErrSaveHung", err)
		}
	})
	if st := volumeStatus(p.Status(), "vol2").State; st != "suspended" {
		t.Errorf("vol2, its suspension answered in effect: %s", st)
	}
	waitFor(t, 10*time.Second, "the status and metrics to name the pair state's save", func() bool {
		return strings.Contains(p.Status().DiskWait, "pair state save") && sampleMap(p.Samples())["pair_state_save_seconds"].Value > 0
	})
	t.Logf("status: %s", p.Status().DiskWait)
	stopsNotClean(t, stop, logs)
	// The write waits until the disk answers (a process that exits ends
	// it), and is never acknowledged: the log's file is closed under it.
	h.release()
	select {
	case err := <-wrote:
		if err == nil {
			t.Error("the write to vol1 that waited for the hung log was acknowledged")
		}
	case <-time.After(10 * time.Second):
		t.Errorf("the write to vol1 still waits after the stop and the disk's answer; goroutines:\n%s", goroutines())
	}
	restartMakesTheSecondarysVolumesThePrimarys(t, cfg, s)
}

// TestAHungStateDiskUnderThePairManagersLoopLetsTheStopEnd: the disk of
// the primary's state directory stops answering just after a write to
// vol2. Once the region is idle, the pair manager's loop unmarks it and
// writes the log, which hangs with the disk, and holds the loop (or,
// first, its save of the pair state does); the status names what waits,
// no client write waiting. The stop returns within its bound, not clean,
// and the restart makes the secondary's volumes the primary's.
func TestAHungStateDiskUnderThePairManagersLoopLetsTheStopEnd(t *testing.T) {
	p, s, h, logs, stop := stateDiskHanging(t, time.Second, 300*time.Millisecond)
	cfg := p.cfg
	waitFor(t, 10*time.Second, "the status to name the log's write or the pair state's save", func() bool {
		st := p.Status().DiskWait
		return (strings.Contains(st, "activity log write") || strings.Contains(st, "pair state save")) &&
			sampleMap(p.Samples())["activity_log_waiting_writes"].Value == 0
	})
	t.Logf("status: %s", p.Status().DiskWait)
	stopsNotClean(t, stop, logs)
	h.release()
	restartMakesTheSecondarysVolumesThePrimarys(t, cfg, s)
}

// restartMakesTheSecondarysVolumesThePrimarys restarts the primary of cfg
// and waits for the secondary's volumes to be the primary's.
func restartMakesTheSecondarysVolumesThePrimarys(t *testing.T, cfg *config.Config, s *Secondary) {
	t.Helper()
	awaitStateDirLetGo(t, cfg)
	p2, _ := startPrimary(t, cfg, healthyReadWait)
	waitFor(t, 30*time.Second, "every pair duplex after the restart", func() bool { return allPairsDuplex(p2.Status()) })
	quiesceMover(t, p2)
	for _, vol := range []string{"vol1", "vol2"} {
		waitFor(t, 20*time.Second, "the secondary's "+vol+" to be the primary's", func() bool { return sameVolume(t, p2, s, vol) })
	}
}

// awaitStateDirLetGo waits until no primary holds the pair-state
// directory of cfg: a stop that gave a hung write of the timer's lease up
// lets it go only once the write has ended (after the disk answers).
func awaitStateDirLetGo(t *testing.T, cfg *config.Config) {
	t.Helper()
	waitFor(t, 10*time.Second, "the stopped primary to let its state directory go", func() bool {
		l, err := disk.OS.Lock(filepath.Join(PairStateDir(cfg), stateLockName))
		if err != nil {
			return false
		}
		l.Close()
		return true
	})
}
