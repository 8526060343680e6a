package site

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"duplex/config"
	"duplex/consistency"
	"duplex/control"
)

// A stopping secondary's close applies every group it journaled and has
// not applied yet, which takes a while with a backlog: its status,
// metrics and status page go on answering meanwhile, as the primary's do
// until it exits, and its control address closes once the close is done.
func TestAStoppingSecondaryAnswersStatusWhileItsCloseApplies(t *testing.T) {
	cfg := linkConfig(t)
	cfg.Secondary.Control, cfg.Secondary.NBD = "127.0.0.1:0", "127.0.0.1:0"
	// A history too, which the close closes while status may be asked.
	cfg.Secondary.History = config.Duration(time.Hour)
	var hold atomic.Bool
	held, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	s, err := OpenSecondary(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), SecondaryOptions{
		OnApplied: func(*consistency.Group, func(string, []byte, int64) error) {
			if hold.Load() {
				once.Do(func() { close(held) })
				<-release
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	ran := make(chan error, 1)
	stop := runUntil(t, func(ctx context.Context) { ran <- s.Run(ctx) })
	var released sync.Once
	releaseAll := func() { released.Do(func() { close(release) }) }
	t.Cleanup(releaseAll)
	pcfg := *cfg
	pcfg.Primary.Secondary = s.ListenAddr()
	p, _ := startPrimary(t, &pcfg, healthyReadWait)
	waitFor(t, time.Minute, "every pair duplex", func() bool { return allPairsDuplex(p.Status()) })

	// A group applying, held, and more journaled behind it.
	hold.Store(true)
	ctx := context.Background()
	if err := p.Write(ctx, "vol1", bytes.Repeat([]byte{0x11}, 4096), 0); err != nil {
		t.Fatal(err)
	}
	select {
	case <-held:
	case <-time.After(time.Minute):
		t.Fatal("no group applied within a minute of a write")
	}
	if err := p.Write(ctx, "vol2", bytes.Repeat([]byte{0x22}, 4096), 0); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Minute, "a group journaled behind the one held", func() bool {
		st := s.Replica().Stats()
		return st.JournaledGroup > st.Group+1
	})

	stopped := make(chan struct{})
	go func() { stop(); close(stopped) }()
	// Its read-only exports close as the stop begins; the close then waits
	// for the group held.
	waitFor(t, time.Minute, "the NBD exports to close as the stop begins", func() bool {
		c, err := net.DialTimeout("tcp", s.NBDAddr(), time.Second)
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	at := control.Endpoint{Addr: s.ControlAddr()}
	for i := 0; i < 5; i++ {
		fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		st, err := control.Fetch(fctx, at)
		cancel()
		if err != nil {
			t.Fatalf("status while the stopping secondary's close applies its backlog: %v", err)
		}
		if st.Role != "secondary" || len(st.Volumes) != 4 {
			t.Fatalf("status while the stopping secondary's close applies its backlog: role %q, %d volumes", st.Role, len(st.Volumes))
		}
		time.Sleep(100 * time.Millisecond)
	}
	select {
	case <-stopped:
		t.Fatal("the secondary's Run ended with a group held in its apply")
	default:
	}

	// Status, metrics and the status page's samples asked through the
	// rest of the close (the journal's and the history's close; -race).
	polled := make(chan struct{})
	go func() {
		defer close(polled)
		for {
			select {
			case <-stopped:
				return
			default:
			}
			fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			control.Fetch(fctx, at)
			for _, path := range []string{"/metrics", "/v1/history"} {
				if req, err := http.NewRequestWithContext(fctx, "GET", "http://"+at.Addr+path, nil); err == nil {
					if resp, err := http.DefaultClient.Do(req); err == nil {
						io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
					}
				}
			}
			cancel()
		}
	}()
	releaseAll()
	<-stopped
	<-polled
	if err := <-ran; err != nil {
		t.Fatalf("the secondary's Run: %v", err)
	}
	if st := s.Replica().Stats(); st.Group != st.JournaledGroup {
		t.Errorf("after the stop: applied through group %d, journaled %d: the close applies every group journaled", st.Group, st.JournaledGroup)
	}
	fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := control.Fetch(fctx, at); err == nil {
		t.Errorf("status answered after the secondary's Run ended")
	}
}
