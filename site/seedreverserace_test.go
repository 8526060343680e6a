package site

import (
	"bytes"
	"context"
	"io"
	"io/fs"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"duplex/disk"
	"duplex/transport"
)

// pausedFS pauses the first Stat (or, with mkdir, MkdirAll) of path,
// after it is done, until released is closed: a start whose disk is slow
// between that step and the next.
type pausedFS struct {
	disk.FS
	path     string
	mkdir    bool
	once     sync.Once
	statted  chan struct{}
	released chan struct{}
}

func newPausedFS(path string, mkdir bool) *pausedFS {
	return &pausedFS{FS: disk.OS, path: path, mkdir: mkdir, statted: make(chan struct{}), released: make(chan struct{})}
}

func (f *pausedFS) pause(name string) {
	if name == f.path {
		f.once.Do(func() {
			close(f.statted)
			<-f.released
		})
	}
}

func (f *pausedFS) Stat(name string) (fs.FileInfo, error) {
	fi, err := f.FS.Stat(name)
	if !f.mkdir {
		f.pause(name)
	}
	return fi, err
}

func (f *pausedFS) MkdirAll(name string, perm fs.FileMode) error {
	err := f.FS.MkdirAll(name, perm)
	if f.mkdir {
		f.pause(name)
	}
	return err
}

// TestSeedReverseLeavesARunningReversePrimarysPairState starts two
// primaries of the reverse direction at once: one looks for the pair
// state before the other made it, and is slow to go on; the other makes
// it, runs and takes a write. The slow one must not make the pair state
// again over it (it fails on the LOCK after): the write's region, which
// the old primary's rejoin copies, would be forgotten, and the old
// primary keep its stale data there after the rejoin.
func TestSeedReverseLeavesARunningReversePrimarysPairState(t *testing.T) {
	const mib = 1 << 20
	cfg := rejoinConfig(t)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	_, _, prim, stopSec, stopPrim := linkSites(t, cfg, quiet, SecondaryOptions{})
	waitFor(t, time.Minute, "every pair duplex", func() bool { return allPairsDuplex(prim.Status()) })
	stopPrim()
	stopSec()
	pr, _, _, err := Promote(context.Background(), cfg, quiet, nil)
	if err != nil {
		t.Fatal(err)
	}
	rev, err := cfg.Reversed()
	if err != nil {
		t.Fatal(err)
	}
	pairsPath := filepath.Join(ReverseDir(cfg), "pairs.json")
	slow := newPausedFS(pairsPath, false)
	slowDone := make(chan error, 1)
	go func() { slowDone <- seedReverse(cfg, rev, pr, slow) }()
	<-slow.statted

	b, stopB := openReversed(t, cfg, quiet, transport.NewMemNetwork(2, transport.Faults{}))
	if err := b.Write(context.Background(), "vol3", bytes.Repeat([]byte{3}, 4096), 2*mib); err != nil {
		t.Fatal(err)
	}
	stopB()

	close(slow.released)
	if err := <-slowDone; err != nil {
		t.Logf("the slow start's seeding: %v", err)
	}
	b, err = OpenReversePrimary(cfg, quiet, linkOptions(transport.NewMemNetwork(3, transport.Faults{})))
	if err != nil {
		t.Fatal(err)
	}
	defer b.close()
	bm, err := b.pairs.Changed("vol3")
	if err != nil {
		t.Fatal(err)
	}
	if _, off, _, ok := bm.Next(0); !ok || off > 2*mib || off+int64(bm.Region()) <= 2*mib {
		t.Errorf("vol3's changed regions after a second start looked for the pair state before the first made it: "+
			"%d regions, first at %d (found %v); want the region at 2 MiB the running site wrote (the second start made the pair state again over it)",
			bm.Count(), off, ok)
	}
}

// TestPromotedSiteRefusedOnceTheReversePrimaryMadeItsPairState starts
// the promoted site and the primary of the reverse direction at once: the
// promoted site looks for the reverse pair state before the other made
// it, and is slow to take the changed regions' LOCK; the other makes the
// pair state, runs and stops. The promoted site must then be refused:
// the changed regions are the reverse pair state's from then on, and
// writes it marked in the promotion's alone would be left out of the
// old primary's rejoin.
func TestPromotedSiteRefusedOnceTheReversePrimaryMadeItsPairState(t *testing.T) {
	cfg := rejoinConfig(t)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	_, _, prim, stopSec, stopPrim := linkSites(t, cfg, quiet, SecondaryOptions{})
	waitFor(t, time.Minute, "every pair duplex", func() bool { return allPairsDuplex(prim.Status()) })
	stopPrim()
	stopSec()
	if _, _, _, err := Promote(context.Background(), cfg, quiet, nil); err != nil {
		t.Fatal(err)
	}
	slow := newPausedFS(PromotedDir(cfg), true)
	type opened struct {
		p   *Promoted
		err error
	}
	slowDone := make(chan opened, 1)
	go func() {
		p, err := OpenPromoted(cfg, quiet, PromotedOptions{FS: slow})
		slowDone <- opened{p, err}
	}()
	<-slow.statted

	_, stopB := openReversed(t, cfg, quiet, transport.NewMemNetwork(2, transport.Faults{}))
	stopB()

	close(slow.released)
	o := <-slowDone
	if o.err == nil {
		o.p.close()
		t.Fatal("the promoted site opened after the primary of the reverse direction made its pair state " +
			"(it looked for the pair state before, and took the LOCK after): want it refused")
	}
	t.Logf("refused: %v", o.err)
}
