package site

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"duplex/control"
	"duplex/pair"
	"duplex/tlsconf"
	"duplex/transport"
)

// stoppedPairs is the pair state a stopped primary left in pairs.json.
type stoppedPairs struct {
	Clean bool        `json:"clean"`
	Pairs []pair.Pair `json:"pairs"`
}

func readStoppedPairs(t *testing.T, dir string) stoppedPairs {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "pairs.json"))
	if err != nil {
		t.Fatal(err)
	}
	var st stoppedPairs
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	return st
}

// Operator commands that reach the primary once its stop has saved the
// pair state clean, while its control address still answers, must not
// change that state: each is refused ("stopping"), status still answers,
// and the state the stop saved (clean, every pair duplex) is what the next
// start finds. A command answered as done would be lost, or would turn the
// clean stop into a copy of every marked region.
func TestCommandsWhileThePrimaryStopsAreRefused(t *testing.T) {
	cfg := switchoverConfig(t)
	cfg.Primary.Control = "127.0.0.1:0"
	s, _ := runSecondary(t, cfg)
	cfg.Primary.Secondary = s.ListenAddr()
	tlsConf, err := tlsconf.PrimaryLink(cfg)
	if err != nil {
		t.Fatal(err)
	}
	saved, release := make(chan struct{}), make(chan struct{})
	p, err := OpenPrimary(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), PrimaryOptions{
		Dialer:        &transport.TCPDialer{Addr: cfg.Primary.Secondary, TLS: tlsConf},
		afterStopSave: func() { close(saved); <-release }})
	if err != nil {
		t.Fatal(err)
	}
	var runErr error
	stop := runUntil(t, func(ctx context.Context) { runErr = p.Run(ctx, 30*time.Second) })
	t.Cleanup(func() {
		select {
		case <-release:
		default:
			close(release)
		}
	})
	waitDuplex(t, p)
	at := control.Endpoint{Addr: p.ControlAddr()}
	tok := "switchover-test-token"
	vols := cfg.VolumeNames()

	stopped := make(chan struct{})
	go func() { stop(); close(stopped) }()
	select {
	case <-saved:
	case <-time.After(time.Minute):
		t.Fatal("the stop did not save the pair state within a minute")
	}
	if st := readStoppedPairs(t, p.stateDir); !st.Clean {
		t.Fatalf("the stop saved clean:false before any command: %+v", st)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	type call struct {
		what string
		do   func() error
	}
	pairOp := func(vol, op string) call {
		return call{"pair " + op + " " + vol, func() error {
			_, err := control.PairOp(ctx, at, tok, vol, op, false)
			return err
		}}
	}
	calls := []call{
		pairOp(vols[0], "suspend"),
		pairOp(vols[0], "resume"),
		pairOp(vols[1], "delete"),
		pairOp(vols[1], "add"),
		{"pair suspend --all", func() error {
			_, err := control.AllPairsOp(ctx, at, tok, "suspend", false)
			return err
		}},
		{"pair resume --all", func() error {
			_, err := control.AllPairsOp(ctx, at, tok, "resume", false)
			return err
		}},
		{"pair rate", func() error {
			n := int64(1 << 20)
			_, err := control.SetRates(ctx, at, tok, &n, nil)
			return err
		}},
	}
	var answered []string
	for _, c := range calls {
		err := c.do()
		switch {
		case err == nil:
			answered = append(answered, c.what)
		case !strings.Contains(err.Error(), "stopping"):
			t.Errorf("%s while the primary stops: %v, want a refusal that says it is stopping", c.what, err)
		}
	}
	if len(answered) > 0 {
		t.Errorf("answered as done after the stop saved the pair state: %v", answered)
	}
	st, err := control.Fetch(ctx, at)
	if err != nil {
		t.Errorf("status while the primary stops: %v", err)
	} else if len(st.Volumes) != len(vols) {
		t.Errorf("status while the primary stops: %d volumes, want %d", len(st.Volumes), len(vols))
	}

	close(release)
	<-stopped
	if runErr != nil {
		t.Fatalf("the stop, linked to the secondary: %v, want a clean stop", runErr)
	}
	got := readStoppedPairs(t, p.stateDir)
	if !got.Clean {
		t.Errorf("pairs.json after the stop: clean:false, want the clean stop it saved")
	}
	for _, pr := range got.Pairs {
		if pr.State != pair.Duplex || pr.Deleted {
			t.Errorf("pairs.json after the stop: %s %s (deleted %v), want duplex as the stop saved it", pr.Volume, pr.State, pr.Deleted)
		}
	}
}
