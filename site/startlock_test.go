package site

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"duplex/control"
	"duplex/disk"
	"duplex/internal/testenv"
)

// slowLock is a disk whose Lock waits until held is closed: the open and
// truncation of a lock file on a disk that stopped answering.
type slowLock struct {
	disk.FS
	held chan struct{}
}

func (l slowLock) Lock(name string) (io.Closer, error) {
	<-l.held
	return l.FS.Lock(name)
}

// TestAStartWhoseLockWaitsAnswersStatus: the primary's LOCK does not come
// while its disk does not answer; once the start has waited slowDisk
// for it, status answers all the same, naming the LOCK, and the start
// goes on once the disk answers.
func TestAStartWhoseLockWaitsAnswersStatus(t *testing.T) {
	cfg := linkConfig(t)
	cfg.Primary.Secondary = testenv.FreeAddr(t)
	cfg.Primary.Control = testenv.FreeAddr(t)
	fsys := slowLock{FS: disk.OS, held: make(chan struct{})}
	opened := make(chan *Primary, 1)
	go func() {
		p, err := OpenPrimary(cfg, slog.New(slog.DiscardHandler), PrimaryOptions{FS: fsys, slowDisk: 200 * time.Millisecond})
		if err != nil {
			t.Error(err)
		}
		opened <- p
	}()
	waitFor(t, 10*time.Second, "the status to say the start waits for the LOCK", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		st, err := control.Fetch(ctx, control.Endpoint{Addr: cfg.Primary.Control})
		return err == nil && st.Starting != nil && st.Starting.Step == filepath.Join(PairStateDir(cfg), stateLockName)
	})
	close(fsys.held)
	select {
	case p := <-opened:
		if p != nil {
			p.actlog.Close()
			p.close()
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the start has not ended 10s after the LOCK came")
	}
}

// TestASecondPrimaryIsRefusedOnTheLockNotTheAddress: a second primary of
// a running one's config is refused on the LOCK, naming its holder, not
// on the control address the first one holds.
func TestASecondPrimaryIsRefusedOnTheLockNotTheAddress(t *testing.T) {
	cfg := linkConfig(t)
	cfg.Primary.Secondary = testenv.FreeAddr(t)
	cfg.Primary.Control = testenv.FreeAddr(t)
	first, err := OpenPrimary(cfg, slog.New(slog.DiscardHandler), PrimaryOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		first.actlog.Close()
		first.close()
	}()
	second, err := OpenPrimary(cfg, slog.New(slog.DiscardHandler), PrimaryOptions{})
	if err == nil {
		second.close()
		t.Fatal("a second primary opened the pair state of a running one")
	}
	if !strings.Contains(err.Error(), fmt.Sprintf("pid %d", os.Getpid())) || strings.Contains(err.Error(), "address already in use") {
		t.Errorf("the second primary's error does not name the LOCK's holder, or names the address: %v", err)
	}
}
