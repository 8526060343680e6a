package mover

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"duplex/recordset"
	"duplex/sidefile"
	"duplex/subsystem"
	"duplex/timer"
	"duplex/transport"
	"duplex/volume"
)

// yieldRig is a mover whose burst sends yield, with a subsystem that
// takes a burst (ss1) and an idle one (ss2), linked to a secondary played
// by hand, and its yielder's thread held at one point of its jobs: a
// thread the kernel does not run there.
type yieldRig struct {
	m       *Mover
	ss      *subsystem.Subsystem
	conn    transport.Conn
	frames  chan seenFrame
	reached chan struct{} // closed once the thread is held
	cancel  context.CancelFunc
	done    chan error
}

// seenFrame is what the secondary got in a frame: its type, and the record
// sets and heartbeats of a bundle.
type seenFrame struct {
	typ         byte
	sets, beats int
	updates     int // in its record sets, each decoded and its checksum checked
}

// startYieldRig starts the rig with its thread held at point ("" holds it
// nowhere) and record sets waiting on the thread at most age. The thread
// is let go, the mover stopped and yieldAge restored when the test ends.
func startYieldRig(t *testing.T, point string, age time.Duration, features uint64) *yieldRig {
	r := &yieldRig{frames: make(chan seenFrame, 1024), reached: make(chan struct{}), done: make(chan error, 1)}
	unrun := make(chan struct{})
	var once sync.Once
	hook := func(p string) {
		if p != point {
			return
		}
		once.Do(func() { close(r.reached) })
		<-unrun
	}
	was := yieldAge
	yieldAge = age
	yieldedHook.Store(&hook)
	ln, accepted := listenAccepting(t)
	dir := t.TempDir()
	v, err := volume.Open(filepath.Join(dir, "a.img"), 16<<20)
	if err != nil {
		t.Fatal(err)
	}
	tm := timer.New()
	r.ss = subsystem.New("ss1", tm, sidefile.New(256<<20), map[string]*volume.Volume{"a": v}, []string{"a"})
	idle := subsystem.New("ss2", tm, sidefile.New(1<<20), map[string]*volume.Volume{}, nil)
	r.m = New(Config{Session: session, Subsystems: []*subsystem.Subsystem{r.ss, idle}, Timer: tm, Interval: time.Hour,
		Dialer: &transport.TCPDialer{Addr: ln.Addr()}, Retransmit: time.Hour, Silence: time.Hour,
		HandshakeTimeout: 10 * time.Second, YieldBurstSends: true, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() { r.done <- r.m.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(30 * time.Second):
			t.Errorf("Run did not return within 30s of its context's end: it waits on the low-priority thread")
		}
		if r.conn != nil {
			r.conn.Close()
		}
		close(unrun)
		yieldedHook.Store(nil)
		yieldAge = was
		v.Close()
	})
	select {
	case r.conn = <-accepted:
	case <-time.After(deadline):
		t.Fatal("the mover did not connect")
	}
	if _, err := r.conn.Recv(); err != nil {
		t.Fatalf("hello: %v", err)
	}
	if err := r.conn.Send(transport.EncodePosition(transport.TypeWelcome, transport.Position{Features: features})); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the link", func() bool { return r.m.Stats().Connected })
	go func() {
		for {
			f, err := r.conn.Recv()
			if err != nil {
				close(r.frames)
				return
			}
			typ, body, err := transport.Open(f)
			if err != nil {
				t.Errorf("a corrupt frame: %v", err)
				continue
			}
			s := seenFrame{typ: typ}
			if typ == transport.TypeBundle {
				b, err := transport.DecodeBundle(body)
				if err != nil {
					t.Errorf("a corrupt bundle: %v", err)
				}
				s.sets, s.beats = len(b.Sets), len(b.Beats)
				for _, set := range b.Sets {
					rs, err := recordset.Decode(set, recordset.Limits{}.Effective())
					if err != nil {
						t.Errorf("a corrupt record set: %v", err)
						continue
					}
					s.updates += len(rs.Updates)
				}
			}
			r.frames <- s
		}
	}()
	return r
}

// burst writes 8 MiB to ss1 and cuts: one turn whose sends yield.
func (r *yieldRig) burst(t *testing.T) {
	t.Helper()
	data := make([]byte, 1<<20)
	for i := range 8 {
		data[0] = byte(i)
		if err := r.ss.Write(context.Background(), "a", data, int64(i)<<20); err != nil {
			t.Fatal(err)
		}
	}
	r.m.Cut()
}

// next returns the next frame that matches want, failing after 30 s.
func (r *yieldRig) next(t *testing.T, what string, want func(seenFrame) bool) {
	t.Helper()
	end := time.After(30 * time.Second)
	for {
		select {
		case f, ok := <-r.frames:
			if !ok {
				t.Fatalf("the link ended before %s", what)
			}
			if want(f) {
				return
			}
		case <-end:
			t.Fatalf("no %s within 30s: the session waits on a low-priority thread the kernel has not run", what)
		}
	}
}

func recordSets(f seenFrame) bool {
	return f.typ == transport.TypeRecordSet || f.typ == transport.TypeBundle && f.sets > 0
}

// TestABurstIsSentWhenTheLowPriorityThreadIsNotRun: on a CPU that other
// work at normal priority keeps busy, the kernel may leave a nice-19 thread
// unrun for as long as that work lasts. A mover whose burst sends yield
// must still send a burst's record sets (the secondary's silence timer and
// the heartbeats riding with them depend on it) and return from Run when
// its context ends, rather than wait on that thread.
func TestABurstIsSentWhenTheLowPriorityThreadIsNotRun(t *testing.T) {
	r := startYieldRig(t, "take", time.Second, 0)
	r.burst(t)
	r.next(t, "record set", recordSets)
}

// TestABurstIsSentFromTheYielder: a burst's frames, encoded and (where
// the thread can be raised back) sent by the low-priority thread, carry
// every update, checksums right.
func TestABurstIsSentFromTheYielder(t *testing.T) {
	yielded := yieldStats.yielded.Load()
	r := startYieldRig(t, "", time.Hour, transport.FeatureBundles)
	r.burst(t)
	updates := 0
	r.next(t, "the burst's 8 updates", func(f seenFrame) bool {
		updates += f.updates
		return updates >= 8
	})
	if updates != 8 {
		t.Errorf("%d updates sent, want 8", updates)
	}
	// Counted once the thread is back from the send.
	waitFor(t, "a frame of the burst to go by the low-priority thread", func() bool { return yieldStats.yielded.Load() > yielded })
}

// TestAStalledYielderDelaysAFrameOnlyToItsBound: wherever the thread stops
// being run in a job (before it claims the job, while it encodes, before it
// claims the send), the session takes the frame back once its record sets
// have waited yieldAge, and sends it and every frame after it itself: the
// burst's record sets and the heartbeats of the idle subsystem that ride
// with them, and those of the turns that follow.
func TestAStalledYielderDelaysAFrameOnlyToItsBound(t *testing.T) {
	for _, point := range []string{"take", "encode", "send"} {
		t.Run(point, func(t *testing.T) {
			taken := yieldStats.taken.Load()
			r := startYieldRig(t, point, 200*time.Millisecond, transport.FeatureBundles)
			r.burst(t)
			select {
			case <-r.reached:
			case <-time.After(30 * time.Second):
				if point == "send" {
					// The thread sends only where it can be raised
					// back to normal priority.
					t.Skip("the thread does not send here: no CAP_SYS_NICE")
				}
				t.Fatalf("the thread never reached %q", point)
			}
			r.next(t, "bundle with the burst's record sets and the idle subsystem's heartbeat", func(f seenFrame) bool {
				return f.typ == transport.TypeBundle && f.sets > 0 && f.beats > 0
			})
			if got := yieldStats.taken.Load() - taken; got == 0 {
				t.Error("the record sets went out, but not taken back from the thread")
			}
			for i := range 3 {
				r.m.Cut()
				r.next(t, "heartbeats of a later turn", func(f seenFrame) bool { return f.typ == transport.TypeBundle && f.beats == 2 })
				_ = i
			}
		})
	}
}

// TestRunEndsWhileItsSendWaitsOnTheYielder: the end of Run's context ends
// the session's wait on the thread at once, wherever the thread stopped,
// sending included (a send the thread has claimed is the thread's alone:
// the session does not wait for it to end), however long the record sets
// may still wait.
func TestRunEndsWhileItsSendWaitsOnTheYielder(t *testing.T) {
	for _, point := range []string{"take", "encode", "send", "sending"} {
		t.Run(point, func(t *testing.T) {
			r := startYieldRig(t, point, time.Hour, transport.FeatureBundles)
			r.burst(t)
			select {
			case <-r.reached:
			case <-time.After(30 * time.Second):
				if point == "send" || point == "sending" {
					t.Skip("the thread does not send here: no CAP_SYS_NICE")
				}
				t.Fatalf("the thread never reached %q", point)
			}
			r.cancel()
			select {
			case err := <-r.done:
				r.done <- err
			case <-time.After(30 * time.Second):
				t.Fatal("Run did not return within 30s of its context's end")
			}
		})
	}
}
