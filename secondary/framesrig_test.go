package secondary

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"duplex/apply"
	"duplex/consistency"
	"duplex/journal"
	"duplex/recordset"
	"duplex/transport"
	"duplex/volume"
)

// framesRig is a secondary of subsystems ss1 and ss2 over vol1 and vol2,
// run on a listener: the frame tests send it frames, then read its
// volumes and its journal in dir.
type framesRig struct {
	t       *testing.T
	dir     string
	volSize int64
	cfg     Config // as opened, to open it again after stop
	vols    map[string]*volume.Volume
	sec     *Secondary
	// conn is the primary's end of the in-memory link openFramesRig
	// makes, its acknowledgements drained; nil on a rig of startFramesRig.
	conn transport.Conn
	stop func() // ends Run and closes the secondary; once, however often called
	// logs is the secondary's log, shown when the rig stalls, with notes
	// (what a test saw on the way).
	logs  *syncBuffer
	notes []string
}

var framesSubs = []string{"ss1", "ss2"}

// startFramesRig opens the rig's secondary with volumes of volSize bytes,
// the target of each volume wrapped by wrap if set (to slow, watch or fail
// its writes), and runs it on ln.
func startFramesRig(t *testing.T, volSize int64, wrap func(vol string, tg apply.Target) apply.Target, ln transport.Listener) *framesRig {
	t.Helper()
	r := &framesRig{t: t, dir: t.TempDir(), volSize: volSize, vols: map[string]*volume.Volume{}, logs: &syncBuffer{}}
	for _, name := range []string{"vol1", "vol2"} {
		v, err := volume.Open(filepath.Join(r.dir, name+".img"), volSize)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { v.Close() })
		r.vols[name] = v
	}
	r.cfg = Config{Session: "s", Subsystems: framesSubs, Volumes: r.vols,
		JournalDir: filepath.Join(r.dir, "journal"), StatePath: filepath.Join(r.dir, "state.json"),
		Logger: slog.New(slog.NewTextHandler(r.logs, nil))}
	sec, err := Open(r.cfg)
	if err != nil {
		t.Fatal(err)
	}
	r.sec = sec
	if wrap != nil {
		for name, tg := range sec.targets {
			sec.targets[name] = wrap(name, tg)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); sec.Run(ctx, ln) }()
	closed := false
	r.stop = func() {
		if !closed {
			closed = true
			cancel()
			<-done
			sec.Close()
		}
	}
	t.Cleanup(r.stop)
	return r
}

// openFramesRig is startFramesRig on an in-memory network, linked: the
// Hello sent, the welcome read, the acknowledgements drained.
func openFramesRig(t *testing.T, volSize int64, wrap func(vol string, tg apply.Target) apply.Target) *framesRig {
	t.Helper()
	net := transport.NewMemNetwork(1, transport.Faults{})
	r := startFramesRig(t, volSize, wrap, net)
	conn, err := net.Dial(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	r.conn = conn
	if err := conn.Send(r.hello()); err != nil {
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
	return r
}

// hello is the frame the rig's primary says hello with.
func (r *framesRig) hello() []byte {
	return transport.EncodeHello(transport.Hello{Session: "s", Subsystems: framesSubs, Instance: 7,
		Volumes: []transport.VolumeInfo{{Name: "vol1", Size: r.volSize}, {Name: "vol2", Size: r.volSize}}})
}

// oneUpdateSet returns record set seq of sub, encoded, holding one write
// of chunk bytes to vol at slot seq-1; its bytes, distinct from every other
// update's, are written into want as well.
func oneUpdateSet(t *testing.T, want map[string][]byte, chunk int, sub, vol string, seq uint64, ts int64) []byte {
	t.Helper()
	off := (int(seq) - 1) * chunk
	data := want[vol][off : off+chunk]
	for i := range data {
		data[i] = byte(int(seq)*31 + i*7 + len(vol)*int(sub[2]))
	}
	return encodeSet(t, &recordset.RecordSet{Session: "s", Subsystem: sub, Seq: seq, Group: seq, ReadTime: ts, Horizon: ts + 500,
		Updates: []recordset.Update{{Volume: vol, Kind: recordset.KindWrite, Offset: uint64(off), Length: uint64(chunk),
			Timestamp: ts, Seq: seq, Data: bytes.Clone(data)}}})
}

func encodeSet(t *testing.T, rs *recordset.RecordSet) []byte {
	t.Helper()
	b, err := recordset.Encode(nil, rs)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// waitApplied waits until the secondary has applied n bytes, and fails
// the test if it has not by deadline, saying how long before it the
// applied bytes last moved: a secondary slowed down by a loaded machine
// from one that waits for ever.
func (r *framesRig) waitApplied(n uint64, deadline time.Time) {
	r.t.Helper()
	applied, moved := r.sec.Stats().BytesApplied, time.Now()
	for applied < n {
		if time.Now().After(deadline) {
			r.stalled("applied %d of %d bytes by the test's deadline, the last of them %s before it",
				applied, n, time.Since(moved).Round(time.Millisecond))
		}
		time.Sleep(time.Millisecond)
		if b := r.sec.Stats().BytesApplied; b != applied {
			applied, moved = b, time.Now()
		}
	}
}

// stalled fails the test for what the secondary did not do in time (a
// format and its args), with what tells where it waits: every goroutine's
// stack, its stats (the groups journaled and applied, corrupt frames, a
// disk wait), its log and how busy the machine was. A stall seen once in
// a batch run on a loaded machine is otherwise only a count.
func (r *framesRig) stalled(format string, args ...any) {
	r.t.Helper()
	// The stacks first, and the stats only if they come: a receiver that
	// waits for ever holding s.mu would hold Stats too.
	stacks := goroutines()
	got := make(chan Stats, 1)
	go func() { got <- r.sec.Stats() }()
	stats := "none: Stats waited 5 s for the secondary's lock"
	select {
	case st := <-got:
		stats = fmt.Sprintf("%+v", st)
	case <-time.After(5 * time.Second):
	}
	r.t.Fatalf(format+"\nstats: %s\nnotes:\n%s\nmachine:\n%slog:\n%s\ngoroutines:\n%s",
		append(args, stats, strings.Join(r.notes, "\n"), machineLoad(), r.logs.String(), stacks)...)
}

// note keeps what the test saw (a format and its args), for stalled.
func (r *framesRig) note(format string, args ...any) {
	r.notes = append(r.notes, fmt.Sprintf(format, args...))
}

// machineLoad says how busy the machine is, where Linux tells: the load
// average, and the share of time tasks waited for a processor and for
// the disk. A secondary slowed down by a disk others saturate is not one
// that waits for ever.
func machineLoad() string {
	var b strings.Builder
	for _, f := range []string{"/proc/loadavg", "/proc/pressure/cpu", "/proc/pressure/io"} {
		if data, err := os.ReadFile(f); err == nil {
			fmt.Fprintf(&b, "%s: %s\n", f, strings.ReplaceAll(strings.TrimSpace(string(data)), "\n", "; "))
		}
	}
	return b.String()
}

// goroutines returns the stack of every goroutine.
func goroutines() string {
	for n := 1 << 20; ; n *= 2 {
		buf := make([]byte, n)
		if m := runtime.Stack(buf, true); m < n {
			return string(buf[:m])
		}
	}
}

// checkVolumes fails the test unless each volume holds want's bytes for
// it; what names want, unit is the size of an update (for the message)
// and why says what a difference means.
func (r *framesRig) checkVolumes(want map[string][]byte, what string, unit int, why string) {
	r.t.Helper()
	for name, v := range r.vols {
		got := make([]byte, r.volSize)
		if err := v.ReadAt(got, 0); err != nil {
			r.t.Fatal(err)
		}
		if i := firstDiff(got, want[name]); i >= 0 {
			r.t.Fatalf("%s differs from %s at byte %d (update %d): got %#x, want %#x; %s",
				name, what, i, i/unit, got[i], want[name][i], why)
		}
	}
}

// replayJournal calls each for every update of every group in the rig's
// journal, in order; the secondary must be stopped.
func (r *framesRig) replayJournal(each func(group uint64, u *recordset.Update) error) {
	r.t.Helper()
	j, err := journal.Open(filepath.Join(r.dir, "journal"), journal.Options{MaxRecord: MaxGroupBytes})
	if err != nil {
		r.t.Fatal(err)
	}
	defer j.Close()
	if err := j.Replay(0, func(index uint64, data []byte) error {
		g, _, err := consistency.DecodeGroup(data, groupLimits)
		if err != nil {
			return fmt.Errorf("group %d: %w", index, err)
		}
		for i := range g.Updates {
			if err := each(index, &g.Updates[i]); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		r.t.Fatal(err)
	}
}

// checkJournal fails the test unless every update in the journal is what
// want holds at its place (why says what a difference means), and
// returns how many updates it holds.
func (r *framesRig) checkJournal(want map[string][]byte, why string) int {
	r.t.Helper()
	updates := 0
	r.replayJournal(func(group uint64, u *recordset.Update) error {
		sent := want[u.Volume][u.Offset : u.Offset+uint64(len(u.Data))]
		if i := firstDiff(u.Data, sent); i >= 0 {
			return fmt.Errorf("group %d: the update of %s at %d differs from what was sent at its byte %d: got %#x, want %#x; %s",
				group, u.Volume, u.Offset, i, u.Data[i], sent[i], why)
		}
		updates++
		return nil
	})
	return updates
}
