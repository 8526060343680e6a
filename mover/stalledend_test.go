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

// TestRunEndsMidSendToAStalledSecondary: the end of Run's context ends a
// send to a secondary that stopped reading at once, long before the
// silence time gives the link up (a primary's SIGTERM waits for Run).
func TestRunEndsMidSendToAStalledSecondary(t *testing.T) {
	ln, accepted := listenAccepting(t)
	v, err := volume.Open(filepath.Join(t.TempDir(), "a.img"), 64<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	tm := timer.New()
	ss := subsystem.New("ss1", tm, sidefile.New(256<<20), map[string]*volume.Volume{"a": v}, []string{"a"})
	const silence = 10 * time.Minute
	m := New(Config{Session: session, Subsystems: []*subsystem.Subsystem{ss}, Timer: tm, Interval: time.Hour,
		Dialer: &transport.TCPDialer{Addr: ln.Addr()}, Retransmit: silence, Silence: silence,
		HandshakeTimeout: 2 * time.Second, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	var conn transport.Conn
	defer func() {
		if conn != nil {
			conn.Close()
		}
	}()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()

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
	data := make([]byte, 1<<20)
	for i := range 48 {
		data[0] = byte(i)
		if err := ss.Write(context.Background(), "a", data, int64(i)<<20); err != nil {
			t.Fatal(err)
		}
	}
	m.Cut()
	// Give the send time to fill the sockets buffers and block; whether
	// it has or not, Run must end promptly.
	time.Sleep(time.Second)
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatalf("Run did not return within 5s of its context's end while sending to a secondary that stopped reading (silence time %v, connected %v)",
			silence, m.Stats().Connected)
	}
}
