package mover

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"duplex/sidefile"
	"duplex/subsystem"
	"duplex/timer"
	"duplex/transport"
	"duplex/volume"
)

// TestABurstIsSentWhenTheLowPriorityThreadIsNotRun: on a CPU that other
// work at normal priority keeps busy, the kernel may leave a nice-19 thread
// unrun for as long as that work lasts. A mover configured as by default
// must still send a burst's record sets (the secondary's silence timer and
// the heartbeats riding with them depend on it) and return from Run when
// its context ends, rather than wait on that thread.
func TestABurstIsSentWhenTheLowPriorityThreadIsNotRun(t *testing.T) {
	unrun := make(chan struct{})
	hook := func() { <-unrun }
	yieldedHook.Store(&hook)
	defer func() { close(unrun); yieldedHook.Store(nil) }()

	ln, accepted := listenAccepting(t)
	dir := t.TempDir()
	v, err := volume.Open(filepath.Join(dir, "a.img"), 16<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	tm := timer.New()
	ss := subsystem.New("ss1", tm, sidefile.New(256<<20), map[string]*volume.Volume{"a": v}, []string{"a"})
	m := New(Config{Session: session, Subsystems: []*subsystem.Subsystem{ss}, Timer: tm, Interval: time.Hour,
		Dialer: &transport.TCPDialer{Addr: ln.Addr()}, Retransmit: time.Hour, Silence: time.Hour,
		HandshakeTimeout: 10 * time.Second, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	var conn transport.Conn
	defer func() {
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Errorf("Run did not return within 30s of its context's end: it waits on the low-priority thread")
		}
		if conn != nil {
			conn.Close()
		}
	}()
	select {
	case conn = <-accepted:
	case <-time.After(deadline):
		t.Fatal("the mover did not connect")
	}
	if _, err := conn.Recv(); err != nil {
		t.Fatalf("hello: %v", err)
	}
	if err := conn.Send(transport.EncodePosition(transport.TypeWelcome, transport.Position{})); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the link", func() bool { return m.Stats().Connected })
	frames := make(chan byte, 64)
	go func() {
		for {
			f, err := conn.Recv()
			if err != nil {
				close(frames)
				return
			}
			if len(f) > 0 {
				frames <- f[0]
			}
		}
	}()

	// 8 MiB in one interval: a burst, with the sidefile nearly empty.
	data := make([]byte, 1<<20)
	for i := range 8 {
		data[0] = byte(i)
		if err := ss.Write(context.Background(), "a", data, int64(i)<<20); err != nil {
			t.Fatal(err)
		}
	}
	m.Cut()
	end := time.After(30 * time.Second)
	for {
		select {
		case typ, ok := <-frames:
			if !ok {
				t.Fatal("the link ended before a record set was sent")
			}
			if typ == transport.TypeRecordSet || typ == transport.TypeBundle {
				return
			}
		case <-end:
			t.Fatal("the burst's record sets were not sent within 30s: their sends wait on a nice-19 thread the kernel has not run")
		}
	}
}
