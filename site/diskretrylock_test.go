package site

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"duplex/config"
	"duplex/control"
	"duplex/disk"
)

// failingEveryReopen runs a secondary under RunSecondary, with a primary,
// and makes its journal's fsync fail for good once both volumes are
// replicated: it stops, and every attempt to open it again fails. It
// returns once one has.
func failingEveryReopen(t *testing.T) *config.Config {
	t.Helper()
	cfg, _, _ := failingEveryReopenWaiting(t, 200*time.Millisecond)
	return cfg
}

// failingEveryReopenWaiting is failingEveryReopen with a backoff of wait;
// stop ends RunSecondary's context, and ended gives what it returned.
func failingEveryReopenWaiting(t *testing.T, wait time.Duration) (cfg *config.Config, stop func(), ended chan error) {
	t.Helper()
	r := retryingForGood(t, wait)
	go func() {
		err := <-r.ended
		r.ended <- err
		if err != nil {
			t.Errorf("RunSecondary: %v", err)
		}
	}()
	return r.cfg, r.stop, r.ended
}

// retrying is a secondary under RunSecondary whose every attempt to open
// again fails on its journal's fsync, until in's faults are cleared.
type retrying struct {
	cfg   *config.Config
	in    *disk.Injector
	logs  *logBuffer
	stop  func()
	ended chan error // what RunSecondary returned
}

// retryingForGood is failingEveryReopenWaiting, what RunSecondary
// returns left to the caller to judge.
func retryingForGood(t *testing.T, wait time.Duration) *retrying {
	t.Helper()
	r := &retrying{cfg: switchoverConfig(t), in: disk.NewInjector(nil), logs: &logBuffer{}, ended: make(chan error, 1)}
	cfg, in, logs := r.cfg, r.in, r.logs
	var cur atomic.Pointer[Secondary]
	r.stop = runUntil(t, func(ctx context.Context) {
		_, err := RunSecondary(ctx, cfg, slog.New(slog.NewTextHandler(logs, nil)), SecondaryOptions{FS: in, stopHungWait: time.Second},
			DiskRetry{First: wait, Max: wait},
			func(s *Secondary) { cur.Store(s) })
		r.ended <- err
	})
	waitFor(t, 30*time.Second, "the secondary open", func() bool { return cur.Load() != nil })
	pcfg := *cfg
	pcfg.Primary.Secondary = cur.Load().ListenAddr()
	p, _ := startPrimary(t, &pcfg, healthyReadWait)
	replicatedBeforeTheFault(t, p, cur.Load, 4096)
	// Every open fails from now on (its journal's fsync).
	in.Inject(disk.Fault{Op: disk.OpSync, Under: cfg.Secondary.Journal, Err: disk.EIO})
	if err := p.Write(context.Background(), "vol1", bytes.Repeat([]byte{0x22}, 4096), 0); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "an attempt to open again that failed", func() bool {
		return len(logs.lines("opening again after a disk fault failed")) > 0
	})
	return r
}

// TestNoOtherOpenOfASecondaryBetweenItsDiskRetries: between the attempts
// to open a secondary again after a disk fault, no site is open and the
// journal's lock is free, yet the daemon runs and opens the site again at
// the next attempt. Another open of the site meanwhile (duplex recover or
// promote where they find no control address answering, a second duplex
// secondary) must be refused, as while the site is open: else it applies
// and fences, or serves, the volumes the daemon's next attempt opens and
// links the primary into. recover's fence asked at the control address
// meanwhile is refused saying why, not as a session without a token.
func TestNoOtherOpenOfASecondaryBetweenItsDiskRetries(t *testing.T) {
	cfg := failingEveryReopen(t)
	tok, err := control.ReadToken(cfg.TokenPath())
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		s, err := OpenSecondary(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), SecondaryOptions{Offline: true})
		if err == nil {
			s.Close()
			t.Fatalf("another open of the secondary (as duplex recover's) succeeded between the daemon's attempts to open it again")
		}
		t.Logf("another open: %v", err)
		if !strings.Contains(err.Error(), "locked") {
			t.Fatalf("another open of the secondary: %v, want it refused as locked", err)
		}
		err = control.FenceSecondary(context.Background(), control.Endpoint{Addr: cfg.Secondary.Control}, tok)
		if err == nil || strings.Contains(err.Error(), "no control_token_file") {
			t.Fatalf("recover's fence between the attempts: %v, want refused as the secondary retries", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestMetricsBetweenDiskRetries: while no site is open between the
// attempts to open a secondary again, its metrics still say that it is
// stopped and how many attempts it made, as status does: a scrape that
// found nothing there would hide the very state to alert on.
func TestMetricsBetweenDiskRetries(t *testing.T) {
	cfg := failingEveryReopen(t)
	var body string
	defer func() {
		if t.Failed() {
			t.Logf("the last scrape: %.2000s", body)
		}
	}()
	waitFor(t, 30*time.Second, "the metrics between the attempts to say that the secondary stopped and retries", func() bool {
		resp, err := http.Get("http://" + cfg.Secondary.Control + "/metrics")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		body = fmt.Sprintf("%d %s", resp.StatusCode, b)
		if resp.StatusCode != http.StatusOK {
			return false
		}
		st, err := control.Fetch(context.Background(), control.Endpoint{Addr: cfg.Secondary.Control})
		// Served between the attempts, not by a site open.
		return err == nil && st.Link == "disconnected" && st.DiskRetry != nil && st.GroupsApplied == nil &&
			regexp.MustCompile(`(?m)^duplex_stopped\{[^}]*\} 1$`).MatchString(string(b)) &&
			regexp.MustCompile(`(?m)^duplex_disk_retries_total\{[^}]*\} [1-9]`).MatchString(string(b))
	})
}

// TestAStopWhileASecondaryOpensAgainIsClean: the operator's stop (the
// context's end, SIGTERM) that comes while an attempt to open the
// secondary again after a disk fault is under way, and fails on the disk
// as the ones before it did, ends RunSecondary as one that comes during
// its wait does: nil, a clean stop, not the attempt's disk error. The
// backoff is a millisecond, so that the stop comes during an attempt.
func TestAStopWhileASecondaryOpensAgainIsClean(t *testing.T) {
	_, stop, ended := failingEveryReopenWaiting(t, time.Millisecond)
	time.Sleep(50 * time.Millisecond)
	start := time.Now()
	stop()
	if err := <-ended; err != nil {
		t.Fatalf("RunSecondary stopped during its attempts: %v, want nil", err)
	}
	t.Logf("stopped in %s", time.Since(start))
}

// TestRunSecondaryWithoutASecondarySectionLocksNothing: a config with no
// [secondary] section is refused as OpenSecondary refuses it, and no lock
// file is left where its empty journal path points: the working directory.
func TestRunSecondaryWithoutASecondarySectionLocksNothing(t *testing.T) {
	cfg := linkConfig(t)
	cfg.Secondary = config.Secondary{}
	dir := t.TempDir()
	t.Chdir(dir)
	_, err := RunSecondary(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), SecondaryOptions{}, DiskRetry{}, nil)
	if err == nil || !strings.Contains(err.Error(), "no [secondary] section") {
		t.Errorf("RunSecondary without a [secondary] section: %v", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("RunSecondary without a [secondary] section left %s in the working directory", ents[0].Name())
	}
}
