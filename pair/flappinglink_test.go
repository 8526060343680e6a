package pair

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"duplex/mover"
	"duplex/sidefile"
	"duplex/subsystem"
	"duplex/timer"
	"duplex/transport"
	"duplex/volume"
)

// TestSecondaryThatWelcomesThenStallsSuspendsTheSession: a secondary that
// answers every Hello with a Welcome and then takes nothing more (a path
// that carries small frames and loses full-size ones, a receiver that
// hangs once data arrives) never acknowledges a record set. The mover
// gives each connection up after its silence time and dials again at once,
// so the link is "connected" nearly all the time; the sidefile is full and
// writes wait for room. The session must still suspend into bitmaps within
// suspend_after (plus the silence time) of the last acknowledgement, so
// that writes go on: nothing acknowledged is shipped, and without the
// suspension no write completes for as long as the secondary behaves so.
func TestSecondaryThatWelcomesThenStallsSuspendsTheSession(t *testing.T) {
	dir := t.TempDir()
	const size = 16 << 20
	v, err := volume.Open(filepath.Join(dir, "a.img"), size)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	tm := timer.New()
	ss := subsystem.New("s1", tm, sidefile.New(1<<20), map[string]*volume.Volume{"a": v}, []string{"a"})
	state := filepath.Join(dir, "pairs")
	os.MkdirAll(state, 0o755)
	b, _ := json.Marshal(persisted{Clean: true, Pairs: []*Pair{{Volume: "a", Subsystem: "s1", State: Duplex, Size: size}}})
	os.WriteFile(filepath.Join(state, "pairs.json"), b, 0o644)

	// The secondary: a Welcome for every Hello, then nothing read.
	net := transport.NewMemNetwork(1, transport.Faults{})
	defer net.Close()
	var conns sync.Map
	go func() {
		for {
			conn, err := net.Accept(context.Background())
			if err != nil {
				return
			}
			conns.Store(conn, true)
			go func() {
				if _, err := conn.Recv(); err != nil {
					return
				}
				conn.Send(transport.EncodePosition(transport.TypeWelcome, transport.Position{}))
			}()
		}
	}()
	defer conns.Range(func(c, _ any) bool { c.(transport.Conn).Close(); return true })

	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	const silence, suspendAfter = 200 * time.Millisecond, 300 * time.Millisecond
	m := mover.New(mover.Config{Session: "sess", Subsystems: []*subsystem.Subsystem{ss}, Timer: tm, Interval: 10 * time.Millisecond,
		Dialer: net, Retransmit: 50 * time.Millisecond, Silence: silence, HandshakeTimeout: time.Second, Logger: log})
	mg, err := Open(Options{Dir: state, SuspendAfter: suspendAfter, Logger: log}, m, []Volume{{Name: "a", Subsystem: ss, Size: size}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Add(2)
	go func() { defer wg.Done(); m.Run(ctx) }()
	go func() { defer wg.Done(); mg.Run(ctx) }()

	// Writes until the sidefile is full and one waits.
	var done sync.WaitGroup
	written := make(chan int, 1024)
	done.Add(1)
	go func() {
		defer done.Done()
		data := make([]byte, 64<<10)
		for i := 0; ctx.Err() == nil; i++ {
			if err := ss.Write(ctx, "a", data, int64(i%256)*int64(len(data))); err != nil {
				return
			}
			select {
			case written <- i:
			default:
			}
		}
	}()
	defer done.Wait()
	defer cancel()

	start := time.Now()
	const bound = 10 * time.Second // suspend_after 300ms, silence 200ms
	for {
		p := mg.Pairs()[0]
		if p.State == Suspended {
			t.Logf("suspended after %v (%d connections)", time.Since(start).Round(time.Millisecond), m.Stats().Connects)
			return
		}
		if time.Since(start) > bound {
			st := ss.Sidefile().Stats()
			flaps := m.Stats().Connects
			t.Fatalf("the secondary welcomed %d connections in %v and acknowledged nothing; the sidefile is full (used %d of %d, %d writes waiting), "+
				"yet the pair is still %s after %v with suspend_after %v: every Welcome resets the session's link-down clock, so writes wait for ever",
				flaps, bound, st.Used, st.Limit, st.Waiting, p.State, bound, suspendAfter)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
