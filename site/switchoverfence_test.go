package site

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"duplex/disk"
	"duplex/failover"
)

// promotionRecordFails is the real disk, except that the promotion record
// cannot be written (a full or failing disk under the promoted directory).
type promotionRecordFails struct{ disk.FS }

func (f promotionRecordFails) CreateTemp(dir, pattern string) (disk.File, error) {
	if strings.HasPrefix(pattern, "promotion.json") {
		return nil, errors.New("injected: no space left on device")
	}
	return f.FS.CreateTemp(dir, pattern)
}

// A switchover whose promotion fails at the secondary after its fence (the
// promotion record cannot be written) is reported to the primary as a
// refusal, and the primary says it was abandoned, nothing changed, the
// writes and replication going on. But promoteOpen fenced the secondary
// first, for good (the fence is recorded in its identity and refuses every
// primary across restarts), and returned the error without undoing it: the
// primary takes writes again that no secondary will ever take, while its
// status and the switchover's answer say the session goes on replicating.
func TestSwitchoverFailedAfterTheFenceLeavesReplicationRunning(t *testing.T) {
	cfg := switchoverConfig(t)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	s, err := OpenSecondary(cfg, quiet, SecondaryOptions{FS: promotionRecordFails{disk.OS}})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Primary.Secondary, cfg.Secondary.Control = s.ListenAddr(), s.ControlAddr()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	p, _ := startPrimaryForSwitchover(t, cfg)
	waitDuplex(t, p)
	vols := cfg.VolumeNames()
	_, err = p.Switchover(context.Background(), time.Minute)
	if err == nil {
		t.Fatal("the switchover went through with the promotion record unwritable")
	}
	t.Logf("the switchover: %v", err)
	if !strings.Contains(err.Error(), "writes resume") {
		t.Fatalf("the switchover's error %q does not say the writes resume", err)
	}
	if _, err := failover.ReadPromotion(nil, PromotedDir(cfg)); !errors.Is(err, failover.ErrNotPromoted) {
		t.Fatalf("promotion record: %v, want none", err)
	}
	if err := p.Write(context.Background(), vols[0], make([]byte, 4096), 0); err != nil {
		t.Fatalf("a write after the abandoned switchover: %v", err)
	}
	// Replication goes on, as the abandoned switchover says: the write
	// reaches the secondary's journal.
	journaled := s.Replica().Stats().JournaledGroup
	end := time.Now().Add(30 * time.Second)
	for {
		st := s.Status()
		if st.Link == "connected" && s.Replica().Stats().JournaledGroup > journaled {
			return
		}
		if time.Now().After(end) {
			_, fenced := s.Replica().Generation()
			t.Fatalf("30s after the abandoned switchover the secondary has journaled nothing more (link %s, fenced %v, primary link %s, last error %q): "+
				"the failed promotion left it fenced, and the primary's writes are replicated nowhere",
				st.Link, fenced, p.Status().Link, p.Status().LastError)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
