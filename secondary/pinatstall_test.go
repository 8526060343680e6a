package secondary

import (
	"bytes"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"duplex/history"
	"duplex/recordset"
)

// pinAtWhile opens a view of time at (its images spilled to sc, if not
// nil) and, while PinAt reads the undo of the groups after its point,
// checks that nothing keeps a group from being applied, then runs during
// (which applies groups) before the read goes on.
func pinAtWhile(t *testing.T, r *gateRig, at int64, sc *history.Scratch, during func()) *ReadView {
	t.Helper()
	v, err := tryPinAtWhile(t, r, at, sc, during)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// tryPinAtWhile is pinAtWhile returning PinAt's error.
func tryPinAtWhile(t *testing.T, r *gateRig, at int64, sc *history.Scratch, during func()) (*ReadView, error) {
	t.Helper()
	reading, release := make(chan struct{}), make(chan struct{})
	r.sec.testPinAtReading = func() {
		close(reading)
		<-release
	}
	type pinned struct {
		v   *ReadView
		err error
	}
	done := make(chan pinned, 1)
	go func() {
		v, err := r.sec.PinAtSpilled(at, sc)
		done <- pinned{v, err}
	}()
	select {
	case <-reading:
	case p := <-done:
		r.sec.testPinAtReading = nil
		if p.err != nil {
			t.Fatal(p.err)
		}
		p.v.Close()
		t.Fatalf("a view of %v opened without reading any undo", time.Duration(at))
	}
	// The applier takes the lock for writing to apply a group: free it
	// must be while the undo is read. Tried for a while, as a reader (a
	// status) may hold it for a moment.
	free := false
	for range 1000 {
		if free = r.sec.view.TryLock(); free {
			r.sec.view.Unlock()
			break
		}
		time.Sleep(time.Millisecond)
	}
	if free {
		during()
	}
	close(release)
	p := <-done
	r.sec.testPinAtReading = nil
	if !free {
		if p.v != nil {
			p.v.Close()
		}
		t.Fatalf("a view of %v holds the volumes' lock while it reads the undo after its point: no group is applied until it is done "+
			"(seconds for a window of GiBs), so opening NAME@TIME stalls replication", time.Duration(at))
	}
	return p.v, p.err
}

// checkHeld checks that what a view counts against its bound and the
// views' budget is what its images hold.
func checkHeld(t *testing.T, r *gateRig, v *ReadView) {
	t.Helper()
	r.sec.rviews.mu.Lock()
	defer r.sec.rviews.mu.Unlock()
	var sum int64
	for _, o := range v.over {
		sum += o.Bytes()
	}
	if v.gone != nil || v.held != sum {
		t.Errorf("the view of group %d counts %d bytes held, its images hold %d (gone: %v)", v.Group, v.held, sum, v.gone)
	}
}

func scratchIn(t *testing.T, dir, name string, limit int64) *history.Scratch {
	t.Helper()
	sc, err := history.CreateScratch(filepath.Join(dir, name), limit)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sc.Close() })
	return sc
}

// Opening NAME@TIME (or a drill at a past time) reads the undo of every
// group since TIME: up to MaxViewBytes of it, seconds of reading on a busy
// disk. Applying must go on meanwhile: a reader that opens a view of the
// past must not hold the consistency time back, nor the acknowledgements
// with it. The view, once open, still reads the volume as of TIME: the
// undo of the oldest group after TIME wins over the before images the view
// kept of the groups applied while it opened.
func TestPinAtDoesNotStallApplying(t *testing.T) {
	for _, spilled := range []bool{false, true} {
		t.Run(map[bool]string{false: "in memory", true: "spilled"}[spilled], func(t *testing.T) {
			dir := t.TempDir()
			fillVolume(t, dir)
			r := openGateRigWith(t, dir, nil, historyOf(dir))
			defer r.close(t)
			r.sendSet(t, 1, []recordset.Update{blockWrite(2, 1)})
			r.sendSet(t, 2, []recordset.Update{blockWrite(2, 2), blockWrite(4, 2)})
			waitGate(t, "group 2 applied", func() bool { return r.sec.appliedState().Group == 2 })
			var sc *history.Scratch
			if spilled {
				sc = scratchIn(t, dir, "drill", 1<<20)
			}
			// Group 1's time: the view lays group 2's undo over the volume,
			// while group 3 overwrites blocks 2 and 6.
			v := pinAtWhile(t, r, int64(time.Millisecond), sc, func() {
				r.sendSet(t, 3, []recordset.Update{blockWrite(2, 3), blockWrite(6, 3)})
				waitGate(t, "group 3 applied while a view of group 1 opens", func() bool { return r.sec.appliedState().Group == 3 })
			})
			defer v.Close()
			if v.Group != 1 {
				t.Fatalf("the view reads group %d, want 1", v.Group)
			}
			got := blockBytes(t, func(b []byte, off int64) error { return v.ReadAt("vol1", b, off) }, 3)
			// Blocks 2..7 as of group 1: block 2 holds 1, the rest 0xEE.
			if want := []byte{1, 0xEE, 0xEE, 0xEE, 0xEE, 0xEE}; !bytes.Equal(got, want) {
				t.Errorf("the view of group 1 reads blocks 2..7 as %v, want %v", got, want)
			}
			checkHeld(t, r, v)
		})
	}
}

// A view of every point the history holds, a group or a step inside one,
// opened while groups are applied, reads every block as of its point: the
// undo of the oldest group (or step) after it where one wrote the block,
// else what the block held when the view was pinned, else the volume now;
// and it goes on doing so as more groups are applied. Its images are what
// it counts held, in memory or spilled to a drill's scratch file.
func TestPinAtWhileGroupsApply(t *testing.T) {
	for _, spilled := range []bool{false, true} {
		t.Run(map[bool]string{false: "in memory", true: "spilled"}[spilled], func(t *testing.T) {
			dir := t.TempDir()
			fillVolume(t, dir)
			hist := historyOf(dir)
			hist.Interval = 10 * time.Millisecond
			ms := int64(time.Millisecond)
			const blocks = 40
			r := openGateRigWith(t, dir, nil, hist)
			defer r.close(t)
			// Group 1 holds vol1's first copy and block 2 before 1 ms;
			// group 2 is one record set from 5 ms to 195 ms, kept in steps
			// of an interval; group 3 a short one.
			r.sendSet(t, 1, []recordset.Update{recordset.Marker{State: recordset.StateFirstCopy, Bytes: 4096}.Update("vol1"), blockWrite(2, 1),
				recordset.Marker{State: recordset.StateCopyEnd}.Update("vol1")})
			all := []stampedWrite{{blk: 2, b: 1, ts: ms - 2}}
			var long []stampedWrite
			for i := 1; i < 40; i++ {
				long = append(long, stampedWrite{blk: 3 + uint64(i%25), b: byte(i + 1), ts: int64(i) * 5 * ms})
			}
			r.sendStamped(t, 2, 200*ms, long)
			short := []stampedWrite{{blk: 2, b: 0x60, ts: 201 * ms}, {blk: 10, b: 0x61, ts: 203 * ms}, {blk: 30, b: 0x62, ts: 205 * ms}}
			r.sendStamped(t, 3, 210*ms, short)
			all = append(append(all, long...), short...)
			waitGate(t, "group 3 applied", func() bool { return r.sec.appliedState().Group == 3 })

			seq, clock := uint64(4), 210*ms
			// more applies a group over blocks the history's groups wrote
			// (2, 4, 10), some no group wrote yet (31+), and those the
			// groups applied here wrote before.
			more := func() {
				var ws []stampedWrite
				for i, blk := range []uint64{2, 4, 10, 31 + seq%5, 35 + seq%3} {
					ws = append(ws, stampedWrite{blk: blk, b: byte(0x80 + seq), ts: clock + int64(i+1)*ms})
				}
				clock += 10 * ms
				r.sendStamped(t, seq, clock, ws)
				all = append(all, ws...)
				g := seq
				waitGate(t, fmt.Sprintf("group %d applied", g), func() bool { return r.sec.appliedState().Group == g })
				seq++
			}
			image := func(v *ReadView) []byte {
				return firstBytes(t, func(p []byte, off int64) error { return v.ReadAt("vol1", p, off) }, blocks)
			}
			for i, at := range []int64{ms, 9 * ms, 57 * ms, 123 * ms, 199 * ms, 200 * ms, 207 * ms} {
				var sc *history.Scratch
				if spilled {
					sc = scratchIn(t, dir, fmt.Sprintf("drill%d", i), 1<<20)
				}
				v := pinAtWhile(t, r, at, sc, func() { more(); more() })
				if v.Time > at {
					t.Errorf("a view of %v reads %v, after it", time.Duration(at), time.Duration(v.Time))
				}
				if got, want := image(v), imageAt(all, blocks, v.Time); !bytes.Equal(got, want) {
					t.Errorf("a view of %v (group %d at %v) opened while groups were applied reads blocks\n%v, want\n%v",
						time.Duration(at), v.Group, time.Duration(v.Time), got, want)
				}
				checkHeld(t, r, v)
				more()
				if got, want := image(v), imageAt(all, blocks, v.Time); !bytes.Equal(got, want) {
					t.Errorf("a view of %v (group %d at %v), one more group applied, reads blocks\n%v, want\n%v",
						time.Duration(at), v.Group, time.Duration(v.Time), got, want)
				}
				checkHeld(t, r, v)
				v.Close()
			}
		})
	}
}

// The bound of a view of a past time holds for the undo read from the
// history and the before images it kept while the undo was read, together:
// each within it is not enough.
func TestPinAtBoundCountsWhatItKeptWhileItOpened(t *testing.T) {
	dir := t.TempDir()
	fillVolume(t, dir)
	r := openGateRigWith(t, dir, nil, historyOf(dir))
	defer r.close(t)
	r.sendSet(t, 1, []recordset.Update{blockWrite(2, 1)})
	waitGate(t, "group 1 applied", func() bool { return r.sec.appliedState().Group == 1 })
	// What a view holds for two blocks overwritten: k.
	plain, err := r.sec.Pin()
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	r.sendSet(t, 2, []recordset.Update{blockWrite(3, 2), blockWrite(4, 2)})
	waitGate(t, "group 2 applied", func() bool { return r.sec.appliedState().Group == 2 })
	r.sec.rviews.mu.Lock()
	k := plain.held
	r.sec.rviews.mu.Unlock()
	if err := plain.Close(); err != nil {
		t.Fatal(err)
	}
	// Two blocks' images of the history and two of the view fit a bound of
	// k each, four do not fit k + 4 KiB.
	r.sec.rviews.maxView = k + 4<<10
	v, err := tryPinAtWhile(t, r, int64(time.Millisecond), nil, func() {
		r.sendSet(t, 3, []recordset.Update{blockWrite(5, 3), blockWrite(6, 3)})
		waitGate(t, "group 3 applied while a view of group 1 opens", func() bool { return r.sec.appliedState().Group == 3 })
	})
	if err == nil {
		v.Close()
	}
	if !errors.Is(err, ErrViewGone) {
		t.Fatalf("a view of group 1 holding the undo of group 2 and the before images of group 3, past its bound: %v", err)
	}
	r.sec.rviews.mu.Lock()
	n := len(r.sec.rviews.views)
	r.sec.rviews.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d views registered after the refused one, want none", n)
	}
}
