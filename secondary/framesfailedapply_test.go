package secondary

import (
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"duplex/apply"
	"duplex/recordset"
	"duplex/transport"
)

// failOnceThroughTarget is a slowThroughTarget whose first write at off
// fails, however it is written, as a disk's passing fault.
type failOnceThroughTarget struct {
	slowThroughTarget
	off    int64
	failed *atomic.Bool
}

var errInjectedWrite = errors.New("injected: input/output error")

func (t failOnceThroughTarget) fails(off int64) bool {
	return off == t.off && t.failed.CompareAndSwap(false, true)
}

func (t failOnceThroughTarget) WriteAt(p []byte, off int64) error {
	if t.fails(off) {
		return errInjectedWrite
	}
	return t.slowThroughTarget.WriteAt(p, off)
}

func (t failOnceThroughTarget) WriteVAt(bufs [][]byte, off int64) error {
	if t.fails(off) {
		return errInjectedWrite
	}
	return t.slowThroughTarget.WriteVAt(bufs, off)
}

func (t failOnceThroughTarget) WriteThrough(bufs [][]byte, off int64) error {
	if t.fails(off) {
		return errInjectedWrite
	}
	return t.slowThroughTarget.WriteThrough(bufs, off)
}

// TestPlacedFramesThroughAFailedApplyAndARestart streams placed bundles of
// 1 MiB updates (ss2's set of the interval before and ss1's of the next),
// the volumes slowed, until the write of ss1's fourth update fails once,
// as a disk's passing fault. The group's frames, and those of the groups
// the applier then skips, are recycled (poisoned) as the applier lets them
// go, and a restart of the secondary applies the journaled groups again:
// whatever applies the failed group again must read it from the journal,
// not from the frames it came in. The volumes must then hold exactly what
// the journal holds, and the journal exactly what was sent.
func TestPlacedFramesThroughAFailedApplyAndARestart(t *testing.T) {
	const (
		chunk = 1 << 20
		fail  = 4 // ss1's update whose first write fails
	)
	sets := 12
	if raceDetector {
		sets = 8
	}
	volSize := int64(sets * chunk)
	var aligned atomic.Int64
	var failed atomic.Bool
	r := openFramesRig(t, volSize, func(name string, tg apply.Target) apply.Target {
		slow := slowThroughTarget{slowTarget{Target: tg, pause: 5 * time.Millisecond}, &aligned}
		if name == "vol1" {
			return failOnceThroughTarget{slow, (fail - 1) * chunk, &failed}
		}
		return slow
	})
	sec, conn := r.sec, r.conn
	sent := map[string][]byte{"vol1": make([]byte, volSize), "vol2": make([]byte, volSize)}
	set := func(sub, vol string, seq uint64, ts int64) []byte {
		return oneUpdateSet(t, sent, chunk, sub, vol, seq, ts)
	}
	deadline := time.Now().Add(time.Minute)
	taken := uint64(0)
	for n := 1; n <= sets+1; n++ {
		// One frame at a time: each frame is received alone, and let go of
		// once the group of its ss1 set is handed to the applier, which
		// then recycles it after that group's apply, failed or not.
		for st := sec.Stats(); st.RecordSets < taken && st.Stopped == ""; st = sec.Stats() {
			if time.Now().After(deadline) {
				t.Fatalf("%d of %d record sets taken within a minute", st.RecordSets, taken)
			}
			time.Sleep(time.Millisecond)
		}
		ts := int64(n) * 1000
		var b [][]byte
		if n > 1 {
			b = append(b, set("ss2", "vol2", uint64(n-1), ts-999))
		}
		if n <= sets {
			b = append(b, set("ss1", "vol1", uint64(n), ts))
		}
		if err := conn.Send(transport.EncodeBundle(transport.Bundle{Sets: b})); err != nil {
			break // the secondary stopped on the failed write, and refused the link
		}
		taken += uint64(len(b))
	}
	// Whatever it does after the failure, stop or try the write again,
	// it ends.
	for st := sec.Stats(); st.Stopped == "" && st.BytesApplied < uint64(2*sets*chunk); st = sec.Stats() {
		if time.Now().After(deadline) {
			t.Fatalf("neither stopped nor applied everything within a minute: %d of %d bytes applied", st.BytesApplied, 2*sets*chunk)
		}
		time.Sleep(time.Millisecond)
	}
	if !failed.Load() {
		t.Fatal("the write to fail was never tried")
	}
	// The applier lets go of the frames of the groups handed to it,
	// applied or skipped after the failure: wait until it has.
	for {
		sec.frames.mu.Lock()
		waiting, recycled := len(sec.frames.waiting), sec.frames.recycled
		sec.frames.mu.Unlock()
		if waiting == 0 {
			if recycled == 0 {
				t.Fatal("no frame was recycled: the poison read nothing")
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d releases of frames still wait for the applier a minute after it failed", waiting)
		}
		time.Sleep(time.Millisecond)
	}
	if aligned.Load() == 0 {
		t.Fatal("no update lay on a page boundary: the frames were not placed")
	}
	r.stop()

	want := map[string][]byte{"vol1": make([]byte, volSize), "vol2": make([]byte, volSize)}
	journaledFailed := false
	r.replayJournal(func(group uint64, u *recordset.Update) error {
		if i := firstDiff(u.Data, sent[u.Volume][u.Offset:]); i >= 0 {
			return fmt.Errorf("group %d: the update of %s at %d differs from what was sent at its byte %d; a recycled frame was journaled",
				group, u.Volume, u.Offset, i)
		}
		copy(want[u.Volume][u.Offset:], u.Data)
		journaledFailed = journaledFailed || u.Volume == "vol1" && u.Offset == (fail-1)*chunk
		return nil
	})
	if !journaledFailed {
		t.Fatal("the journal does not hold the update whose write failed")
	}
	// The restart applies again the journaled groups after the last one
	// applied, the failed one among them.
	sec, err := Open(r.cfg)
	if err != nil {
		t.Fatalf("restart: %v", err)
	}
	defer sec.Close()
	r.checkVolumes(want, "the journal after the restart", chunk, "a recycled frame was applied")
}
