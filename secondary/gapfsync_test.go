package secondary

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"duplex/disk"
	"duplex/recordset"
	"duplex/transport"
)

// TestASlowFsyncUnderAHistoryGapKeepsStatusAndTheLink: a group whose
// before images exceed the history's bound is applied with no undo kept,
// the history giving up its window (a Gap: its files removed, a gap
// record written and fsynced). That fsync hangs, as on a slow or failing
// disk. Status reads the history's window under the lock the receiver
// takes to acknowledge: it must answer meanwhile, and the next group must
// still be journaled and acknowledged on the link, rather than both
// waiting as long as the disk, the primary hearing nothing until it gives
// the link up for silence.
func TestASlowFsyncUnderAHistoryGapKeepsStatusAndTheLink(t *testing.T) {
	in := disk.NewInjector(nil)
	r := &rig{t: t, dir: t.TempDir(), sizes: map[string]int64{"vol1": 1 << 20}, subs: []string{"ss1"}}
	if err := os.WriteFile(filepath.Join(r.dir, "vol1.img"), bytes.Repeat([]byte{0xEE}, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	histDir := filepath.Join(r.dir, "history")
	r.edit = func(c *Config) {
		c.FS = in
		c.History = HistoryConfig{Dir: histDir, Window: time.Hour, MaxBytes: 16 << 10}
		c.CheckpointEvery = time.Hour
		c.Logger = slog.New(slog.NewTextHandler(&syncBuffer{}, nil))
	}
	r.open()
	t.Cleanup(r.close)

	conn, typ, _ := r.dial(r.hello())
	if typ != transport.TypeWelcome {
		t.Fatalf("frame type %d, want a welcome", typ)
	}
	conn = conn.(settledConn).Conn // the applier waits on the disk
	sendRecordSet(t, conn, writeSet(1, 1_000, blockWrite(2, 1)))
	if reason, acked := answers(t, conn, 0); acked != 1 {
		t.Fatalf("acknowledged through group %d (refusal %q), want 1", acked, reason)
	}
	for deadline := time.Now().Add(30 * time.Second); r.sec.Stats().Group < 1; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("group 1 not applied within 30s")
		}
	}

	gate := make(chan struct{})
	var once sync.Once
	release := func() { once.Do(func() { close(gate) }) }
	defer release()
	in.Inject(disk.Fault{Op: disk.OpSync, Under: histDir, Hang: gate})
	// 24 KiB of before images over the bound of 16: a Gap.
	var big []recordset.Update
	for blk := uint64(10); blk < 16; blk++ {
		big = append(big, blockWrite(blk, 2))
	}
	sendRecordSet(t, conn, writeSet(2, 3_000, big...))
	for deadline := time.Now().Add(30 * time.Second); in.Injected(disk.OpSync) == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the history's gap was not fsynced within 30s of group 2")
		}
	}

	// The fsync holds until released: an answer that does not come while
	// it holds waits on it.
	if _, ok := statusWithin(r.sec, 15*time.Second); !ok {
		t.Error("status did not answer while the history's gap fsync was held (15s): it waits on the disk")
	}
	sendRecordSet(t, conn, writeSet(3, 5_000, blockWrite(3, 3)))
	if reason, acked := answers(t, conn, 2); acked < 3 {
		t.Errorf("while the history's gap fsync was held, group 3 was not acknowledged (through %d, refusal %q): the link waits on the disk", acked, reason)
	}
	release()
	for deadline := time.Now().Add(30 * time.Second); r.sec.Stats().Group < 3; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("group 3 not applied within 30s of the fsync's release (applied through %d, stopped %q)", r.sec.Stats().Group, r.sec.Stats().Stopped)
		}
	}
	if st := r.sec.Stats(); !st.History || st.HistoryOldestGroup < 2 {
		t.Errorf("after the gap status says history %v from group %d, want it kept from group 2 on (the gap's) at the oldest", st.History, st.HistoryOldestGroup)
	}
}
