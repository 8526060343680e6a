package secondary

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"duplex/consistency"
	"duplex/journal"
	"duplex/recordset"
	"duplex/transport"
	"duplex/volume"
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
	dir := t.TempDir()
	vols := map[string]*volume.Volume{}
	for _, name := range []string{"vol1", "vol2"} {
		v, err := volume.Open(filepath.Join(dir, name+".img"), volSize)
		if err != nil {
			t.Fatal(err)
		}
		defer v.Close()
		vols[name] = v
	}
	subs := []string{"ss1", "ss2"}
	cfg := Config{Session: "s", Subsystems: subs, Volumes: vols,
		JournalDir: filepath.Join(dir, "journal"), StatePath: filepath.Join(dir, "state.json"),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	sec, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var aligned atomic.Int64
	var failed atomic.Bool
	for name, tg := range sec.targets {
		slow := slowThroughTarget{slowTarget{Target: tg, pause: 5 * time.Millisecond}, &aligned}
		if name == "vol1" {
			sec.targets[name] = failOnceThroughTarget{slow, (fail - 1) * chunk, &failed}
			continue
		}
		sec.targets[name] = slow
	}
	net := transport.NewMemNetwork(1, transport.Faults{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); sec.Run(ctx, net) }()
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			cancel()
			<-done
			sec.Close()
		}
	}
	defer stop()
	conn, err := net.Dial(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := conn.Send(transport.EncodeHello(transport.Hello{Session: "s", Subsystems: subs, Instance: 7,
		Volumes: []transport.VolumeInfo{{Name: "vol1", Size: volSize}, {Name: "vol2", Size: volSize}}})); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Recv(); err != nil { // the welcome
		t.Fatal(err)
	}
	go func() {
		for {
			if _, err := conn.Recv(); err != nil {
				return
			}
		}
	}()
	sent := map[string][]byte{"vol1": make([]byte, volSize), "vol2": make([]byte, volSize)}
	set := func(sub, vol string, seq uint64, ts int64) []byte {
		off := (int(seq) - 1) * chunk
		data := sent[vol][off : off+chunk]
		for i := range data {
			data[i] = byte(int(seq)*29 + i*11 + len(vol)*int(sub[2]))
		}
		rs := &recordset.RecordSet{Session: "s", Subsystem: sub, Seq: seq, Group: seq, ReadTime: ts, Horizon: ts + 500,
			Updates: []recordset.Update{{Volume: vol, Kind: recordset.KindWrite, Offset: uint64(off), Length: chunk,
				Timestamp: ts, Seq: seq, Data: bytes.Clone(data)}}}
		b, err := recordset.Encode(nil, rs)
		if err != nil {
			t.Fatal(err)
		}
		return b
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
	stop()

	j, err := journal.Open(filepath.Join(dir, "journal"), journal.Options{MaxRecord: MaxGroupBytes})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]byte{"vol1": make([]byte, volSize), "vol2": make([]byte, volSize)}
	journaledFailed := false
	if err := j.Replay(0, func(index uint64, data []byte) error {
		g, _, err := consistency.DecodeGroup(data, groupLimits)
		if err != nil {
			return fmt.Errorf("group %d: %w", index, err)
		}
		for _, u := range g.Updates {
			if i := firstDiff(u.Data, sent[u.Volume][u.Offset:]); i >= 0 {
				return fmt.Errorf("group %d: the update of %s at %d differs from what was sent at its byte %d; a recycled frame was journaled",
					index, u.Volume, u.Offset, i)
			}
			copy(want[u.Volume][u.Offset:], u.Data)
			journaledFailed = journaledFailed || u.Volume == "vol1" && u.Offset == (fail-1)*chunk
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	j.Close()
	if !journaledFailed {
		t.Fatal("the journal does not hold the update whose write failed")
	}
	// The restart applies again the journaled groups after the last one
	// applied, the failed one among them.
	sec, err = Open(cfg)
	if err != nil {
		t.Fatalf("restart: %v", err)
	}
	defer sec.Close()
	for name, v := range vols {
		got := make([]byte, volSize)
		if err := v.ReadAt(got, 0); err != nil {
			t.Fatal(err)
		}
		if i := firstDiff(got, want[name]); i >= 0 {
			t.Fatalf("after the restart %s differs from the journal at byte %d (update %d): got %#x, want %#x; a recycled frame was applied",
				name, i, i/chunk+1, got[i], want[name][i])
		}
	}
}
