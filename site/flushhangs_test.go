package site

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"duplex/actlog"
	"duplex/config"
	"duplex/disk"
	"duplex/nbd"
)

// flushHang blocks the flushes of vol1, once hung, until released: a disk
// (or an NFS or iSCSI backing) that stops answering, an fdatasync that
// takes minutes under writeback pressure.
type flushHang struct {
	hung     atomic.Bool
	closes   atomic.Bool   // vol1's close hangs too, once set
	writes   atomic.Bool   // vol1's writes hang too, once set
	entered  chan struct{} // closed when a flush of vol1 first blocks
	enter    sync.Once
	released chan struct{}
	release  func()
}

func newFlushHang() *flushHang {
	h := &flushHang{entered: make(chan struct{}), released: make(chan struct{})}
	var once sync.Once
	h.release = func() { once.Do(func() { close(h.released) }) }
	return h
}

func (h *flushHang) beforeFlush(vol string) error {
	if vol != "vol1" || !h.hung.Load() {
		return nil
	}
	h.enter.Do(func() { close(h.entered) })
	<-h.released
	return nil
}

// beforeClose holds vol1's close, once closes is set, until released: a
// close flushes on NFS and FUSE, and waits for the disk as a flush does.
func (h *flushHang) beforeClose(vol string) {
	if vol == "vol1" && h.closes.Load() {
		<-h.released
	}
}

// beforeVolumeWrite holds the writes to vol1, once writes is set, until
// released.
func (h *flushHang) beforeVolumeWrite(vol string) {
	if vol == "vol1" && h.writes.Load() {
		<-h.released
	}
}

// flushHanging runs a secondary and a primary of cfg (the stop waiting up
// to stopWait for a flush) until every pair is duplex, then hangs vol1's
// flushes and writes to vol1, and returns once the activity log's flush
// of vol1, to unmark the write's region, hangs. configure, if any,
// changes the configuration first.
func flushHanging(t *testing.T, stopWait time.Duration, configure ...func(*config.Config)) (*Primary, *Secondary, *flushHang, *logBuffer, func() error) {
	t.Helper()
	old := actlog.Idle
	actlog.Idle = 500 * time.Millisecond
	t.Cleanup(func() { actlog.Idle = old })
	cfg := linkConfig(t)
	for _, f := range configure {
		f(cfg)
	}
	s, _ := runSecondary(t, cfg)
	cfg.Primary.Secondary = s.ListenAddr()
	h := newFlushHang()
	logs := &logBuffer{}
	t.Cleanup(func() {
		// Last, after the stop: what the primary did, and how far its
		// stop got.
		if t.Failed() {
			t.Logf("the primary's log:\n%s", logs.String())
		}
	})
	p, err := OpenPrimary(cfg, slog.New(slog.NewTextHandler(logs, nil)), PrimaryOptions{
		Dialer: linkDialer(t, cfg), CopyReadWait: healthyReadWait,
		beforeFlush: h.beforeFlush, beforeClose: h.beforeClose, beforeVolumeWrite: h.beforeVolumeWrite, stopFlushWait: stopWait})
	if err != nil {
		t.Fatal(err)
	}
	var runErr error
	stop := runUntil(t, func(ctx context.Context) { runErr = p.Run(ctx, 10*time.Second) })
	t.Cleanup(h.release) // before the stop, which a hung flush may hold up
	waitFor(t, 30*time.Second, "every pair duplex", func() bool { return allPairsDuplex(p.Status()) })

	h.hung.Store(true)
	if err := p.Write(context.Background(), "vol1", bytes.Repeat([]byte{0x78}, 4096), 8192); err != nil {
		t.Fatal(err)
	}
	select {
	case <-h.entered:
	case <-time.After(30 * time.Second):
		t.Fatalf("after 30 s: no flush of vol1 to unmark the write's region; goroutines:\n%s", goroutines())
	}
	return p, s, h, logs, func() error { stop(); return runErr }
}

// within fails the test unless f returns within d, with every
// goroutine's stack.
func within(t *testing.T, d time.Duration, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("after %s: %s has not returned; goroutines:\n%s", d, what, goroutines())
	}
}

// TestAHungFlushLetsTheOtherPairsCopy: the activity log's flush of vol1
// hangs. vol2, suspended and written to meanwhile, is resumed: its resync
// copies and it is promoted to duplex, and the operator's commands and the
// status are served, as when vol1's disk answers. The status and metrics
// report vol1's flush under way.
func TestAHungFlushLetsTheOtherPairsCopy(t *testing.T) {
	p, s, _, _, _ := flushHanging(t, time.Second)
	within(t, 10*time.Second, "the status", func() { p.Status() })
	waitFor(t, 10*time.Second, "the status and metrics to report vol1's flush under way", func() bool {
		return p.Status().ActivityLogFlushSeconds["vol1"] >= 1 && sampleMap(p.Samples())["activity_log_flush_seconds"].Value >= 1
	})
	within(t, 10*time.Second, "the suspension of vol2", func() {
		if err := p.Pairs().Suspend("vol2"); err != nil {
			t.Error(err)
		}
	})
	if err := p.Write(context.Background(), "vol2", bytes.Repeat([]byte{0x79}, 4096), 4096); err != nil {
		t.Fatal(err)
	}
	within(t, 10*time.Second, "the resume of vol2", func() {
		if err := p.Pairs().Resume("vol2"); err != nil {
			t.Error(err)
		}
	})
	waitFor(t, 20*time.Second, "vol2, resumed while a flush of vol1 hangs, duplex", func() bool {
		return volumeStatus(p.Status(), "vol2").State == "duplex"
	})
	quiesceMover(t, p)
	waitFor(t, 20*time.Second, "the secondary's vol2 to be the primary's", func() bool { return sameVolume(t, p, s, "vol2") })
	if n := p.actlog.Marked(); n == 0 {
		t.Error("the activity log marks nothing while the flush of the volume written to hangs")
	}
}

// TestAHungFlushAtAStopLeavesItUnclean: the activity log's flush of vol1
// hangs, and the primary is stopped. The stop waits for the flush only so
// long, and saves the pair state as not clean, saying why: the write is
// not known to be on vol1's disk (here the disk lost it). Restarted, the
// primary copies the regions the log marks, making the secondary's vol1
// the primary's.
func TestAHungFlushAtAStopLeavesItUnclean(t *testing.T) {
	p, s, h, logs, stop := flushHanging(t, time.Second)
	cfg := p.cfg
	// The write never reached the disk.
	if err := p.vols["vol1"].WriteAt(make([]byte, 4096), 8192); err != nil {
		t.Fatal(err)
	}
	var err error
	within(t, 20*time.Second, "the stop", func() { err = stop() })
	t.Logf("the stop: %v", err)
	if len(logs.lines("vol1", "not clean")) == 0 {
		t.Errorf("the stop's log does not say it is not clean for vol1's flush:\n%s", logs.String())
	}
	h.release()

	restartCopiesVol1(t, cfg, s)
}

// TestAHungFlushAtAStopWithAClientsFlushLeavesItUnclean: as above, with an
// NBD client's FLUSH of vol1 under way, which vol1's disk holds up too.
// The stop still waits only so long, and saves the pair state not clean:
// the restart copies vol1's marked region.
func TestAHungFlushAtAStopWithAClientsFlushLeavesItUnclean(t *testing.T) {
	p, s, h, logs, stop, c := flushHangingServed(t)
	cfg := p.cfg
	flushed := make(chan error, 1)
	go func() { flushed <- c.Flush() }()
	select {
	case err := <-flushed:
		t.Fatalf("the client's FLUSH of vol1, its disk hung, returned: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	if err := p.vols["vol1"].WriteAt(make([]byte, 4096), 8192); err != nil {
		t.Fatal(err)
	}
	stopsNotClean(t, stop, logs)
	h.release()

	restartCopiesVol1(t, cfg, s)
}

// flushHangingServed is flushHanging with the primary serving NBD, and a
// client connected to vol1.
func flushHangingServed(t *testing.T) (*Primary, *Secondary, *flushHang, *logBuffer, func() error, *nbd.Client) {
	t.Helper()
	p, s, h, logs, stop := flushHanging(t, time.Second, func(cfg *config.Config) { cfg.Primary.NBD = "127.0.0.1:0" })
	c, err := nbd.Dial(p.NBDAddr(), "vol1")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return p, s, h, logs, stop, c
}

// stopsNotClean stops the primary, within its bounds, and checks that its
// log says the stop is not clean, and that the stop ends with an error
// (saying so, unless a more particular one, a lease's or a close's that
// hung, came first): a stop that logs ERROR and returns nil has duplex
// primary exit 0 after "primary stopped cleanly", which it was not.
func stopsNotClean(t *testing.T, stop func() error, logs *logBuffer) {
	t.Helper()
	var stopErr error
	within(t, 20*time.Second, "the stop", func() { stopErr = stop() })
	t.Logf("the stop: %v", stopErr)
	if len(logs.lines("not clean")) == 0 {
		t.Errorf("the stop's log does not say it is not clean:\n%s", logs.String())
	}
	if stopErr == nil {
		t.Errorf("the stop, not clean, ends with no error: want one")
	}
}

// restartCopiesVol1 restarts the primary of cfg after a stop that left
// vol1 to copy, and waits for the secondary's vol1 to be the primary's.
// Its reads do not hang.
func restartCopiesVol1(t *testing.T, cfg *config.Config, s *Secondary) {
	t.Helper()
	awaitStateDirLetGo(t, cfg)
	p, _ := startPrimary(t, cfg, healthyReadWait)
	waitFor(t, 30*time.Second, "every pair duplex after the restart", func() bool { return allPairsDuplex(p.Status()) })
	quiesceMover(t, p)
	waitFor(t, 20*time.Second, "the secondary's vol1 to be the primary's", func() bool { return sameVolume(t, p, s, "vol1") })
}

// TestAHungCloseLetsTheStopEnd: vol1's disk stops answering, its flushes
// and its close alike (a close flushes on NFS and FUSE). The stop gives
// the close up after its wait on a volume's disk, as it does the flush,
// and its error and log name the close of vol1. Restarted once the disk
// answers, the primary copies vol1's marked region.
func TestAHungCloseLetsTheStopEnd(t *testing.T) {
	p, s, h, logs, stop := flushHanging(t, time.Second)
	cfg := p.cfg
	h.closes.Store(true)
	var stopErr error
	within(t, 20*time.Second, "the stop", func() { stopErr = stop() })
	t.Logf("the stop: %v", stopErr)
	if stopErr == nil || !strings.Contains(stopErr.Error(), "close of volume vol1") {
		t.Errorf("the stop's error does not name the close of vol1: %v", stopErr)
	}
	if len(logs.lines("close of volume vol1", "has not ended")) == 0 {
		t.Errorf("the stop's log does not name the close of vol1 given up:\n%s", logs.String())
	}
	stateDirHeld(t, cfg, "vol1's close (a write-back)")
	h.release()
	restartCopiesVol1(t, cfg, s)
}

// stateDirHeld fails the test if the pair-state directory's LOCK of the
// stopped primary of cfg is free while what (its volume's I/O) is under
// way: a next primary let in then would find the volume written under
// it, after its copies read it.
func stateDirHeld(t *testing.T, cfg *config.Config, what string) {
	t.Helper()
	l, err := disk.OS.Lock(filepath.Join(PairStateDir(cfg), stateLockName))
	if err == nil {
		l.Close()
		t.Errorf("the stopped primary let its state directory's LOCK go with %s under way", what)
	}
}

// TestAHungVolumeWriteHoldsItsRequestAloneAndTheStopEnds: vol1's disk
// stops answering, its writes as its flushes, under an NBD client's
// writes, sent together: the server's read loop serves the first of them
// itself (more are buffered behind it, and its region is marked), and
// waits with the disk. Another client's writes, reads and flushes of
// vol2, and its reads of vol1, are served, as is the status. The stop
// returns within its bounds (the NBD server's close given up for the
// requests under way, vol1's close not held by them), not clean, the
// writes never acknowledged, and the restart, once the disk answers,
// makes the secondary's vol1 the primary's.
func TestAHungVolumeWriteHoldsItsRequestAloneAndTheStopEnds(t *testing.T) {
	p, s, h, logs, stop, _ := flushHangingServed(t)
	cfg := p.cfg
	h.writes.Store(true)
	wrote := make(chan error, 1)
	go func() { wrote <- pipelinedWrites(p.NBDAddr(), "vol1", 3, 16384) }()
	select {
	case err := <-wrote:
		t.Fatalf("the client's writes to vol1, its disk hung, returned: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	for _, vol := range []string{"vol2", "vol1"} {
		c2, err := nbd.Dial(p.NBDAddr(), vol)
		if err != nil {
			t.Fatal(err)
		}
		within(t, 10*time.Second, "another client's requests to "+vol, func() {
			b := make([]byte, 4096)
			if err := c2.ReadAt(b, 0); err != nil {
				t.Errorf("a read of %s beside the hung write: %v", vol, err)
			}
			if vol == "vol2" {
				if err := c2.WriteAt(bytes.Repeat([]byte{0x7b}, 4096), 8192); err != nil {
					t.Errorf("a write to vol2 beside the hung write: %v", err)
				}
				if err := c2.Flush(); err != nil {
					t.Errorf("a flush of vol2 beside the hung write: %v", err)
				}
			}
		})
		c2.Close()
	}
	within(t, 10*time.Second, "the status", func() { p.Status() })
	stopsNotClean(t, stop, logs)
	stateDirHeld(t, cfg, "vol1's write")
	h.release()
	select {
	case err := <-wrote:
		t.Logf("the hung writes, once the disk answered: %v", err)
		if err == nil {
			t.Error("the client's writes that waited for the hung disk were acknowledged after the stop")
		}
	case <-time.After(10 * time.Second):
		t.Errorf("the client's write still waits 10s after the stop and the disk's answer")
	}
	restartCopiesVol1(t, cfg, s)
}

// pipelinedWrites connects to the NBD server at addr, opens export, and
// sends n writes of 4 KiB from off on, all at once, then reads their
// replies: an error unless all n are acknowledged.
func pipelinedWrites(addr, export string, n int, off int64) error {
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer nc.Close()
	br := bufio.NewReader(nc)
	if _, err := io.ReadFull(br, make([]byte, 18)); err != nil { // greeting
		return fmt.Errorf("greeting: %w", err)
	}
	b := binary.BigEndian.AppendUint32(nil, 3) // fixed newstyle, no zeroes
	b = binary.BigEndian.AppendUint64(b, 0x49484156454F5054)
	b = binary.BigEndian.AppendUint32(b, 1) // NBD_OPT_EXPORT_NAME
	b = binary.BigEndian.AppendUint32(b, uint32(len(export)))
	b = append(b, export...)
	if _, err := nc.Write(b); err != nil {
		return err
	}
	if _, err := io.ReadFull(br, make([]byte, 10)); err != nil { // size, flags
		return fmt.Errorf("opening %s: %w", export, err)
	}
	b = b[:0]
	for i := range n {
		b = binary.BigEndian.AppendUint32(b, 0x25609513)
		b = binary.BigEndian.AppendUint16(b, 0)
		b = binary.BigEndian.AppendUint16(b, nbd.CmdWrite)
		b = binary.BigEndian.AppendUint64(b, uint64(i))
		b = binary.BigEndian.AppendUint64(b, uint64(off)+uint64(i)*4096)
		b = binary.BigEndian.AppendUint32(b, 4096)
		b = append(b, bytes.Repeat([]byte{byte(i + 1)}, 4096)...)
	}
	if _, err := nc.Write(b); err != nil {
		return err
	}
	for range n {
		h := make([]byte, 16)
		if _, err := io.ReadFull(br, h); err != nil {
			return fmt.Errorf("a write's reply: %w", err)
		}
		if e := binary.BigEndian.Uint32(h[4:]); e != 0 {
			return fmt.Errorf("write %d: error %d", binary.BigEndian.Uint64(h[8:]), e)
		}
	}
	return nil
}
