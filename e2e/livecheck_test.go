package e2e

import (
	"context"
	"sync"
	"testing"

	"duplex/workload"
)

// checkMovingCopy checks the dependent-write invariant on a copy that may go
// on applying groups while it is read, as the secondary does after its link
// is down: groups acknowledged before the primary died are applied after the
// acknowledgement, on the secondary's applier. Every read sees a group
// boundary, but a check takes many reads; a single pass can read a
// dependency before a group that brings it and its dependent write, and then
// the dependent write. So the holders are read first and their dependencies
// in a second pass (see workload.Image.Violations).
func checkMovingCopy(l workload.Layout, read workload.Reader) ([]workload.Violation, error) {
	holders, bad, err := workload.ReadImage(l, read)
	if err != nil {
		return nil, err
	}
	deps, _, err := workload.ReadImage(l, read)
	if err != nil {
		return nil, err
	}
	return append(bad, holders.Violations(deps, workload.Scope{})...), nil
}

// checkPinnedCopy is checkMovingCopy over a secondary's exports, where each
// connection reads the group current when it opened, so connections to
// several volumes opened one after the other may read different groups:
// the holders are read over connections open returns, then the
// dependencies over connections opened after that, each at a group no
// older than any the holders were read at.
func checkPinnedCopy(l workload.Layout, open func() (workload.Reader, func())) ([]workload.Violation, error) {
	read, done := open()
	holders, bad, err := workload.ReadImage(l, read)
	done()
	if err != nil {
		return nil, err
	}
	read, done = open()
	deps, _, err := workload.ReadImage(l, read)
	done()
	if err != nil {
		return nil, err
	}
	return append(bad, holders.Violations(deps, workload.Scope{})...), nil
}

// writeLog records acknowledged writes in order: a write that depends on
// another is issued only after that one was acknowledged, so every prefix of
// the log is a state the primary had.
type writeLog struct {
	mu     sync.Mutex
	writes []loggedWrite
}

type loggedWrite struct {
	vol int
	off int64
	p   []byte
}

func (w *writeLog) WriteAt(_ context.Context, vol int, p []byte, off int64) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.writes = append(w.writes, loggedWrite{vol, off, append([]byte(nil), p...)})
	return nil
}

// copyOf is a copy holding a prefix of the log, per volume.
type copyOf struct {
	log  *writeLog
	vols [][]byte
	at   []int // writes of the log applied, per volume
}

func newCopy(l workload.Layout, log *writeLog) *copyOf {
	c := &copyOf{log: log, at: make([]int, l.Volumes)}
	for range l.Volumes {
		c.vols = append(c.vols, make([]byte, l.BlocksPerVolume*workload.BlockSize))
	}
	return c
}

// advance applies the log through write n to volume v.
func (c *copyOf) advance(v, n int) {
	for ; c.at[v] < n && c.at[v] < len(c.log.writes); c.at[v]++ {
		w := c.log.writes[c.at[v]]
		if w.vol == v {
			copy(c.vols[v][w.off:], w.p)
		}
	}
}

func (c *copyOf) advanceAll(n int) {
	for v := range c.vols {
		c.advance(v, n)
	}
}

// TestCheckOfACopyStillApplyingGroups: a copy that applies a group between
// any two of the check's reads, each read seeing whole groups only, holds the
// dependent-write invariant at every moment; a single-pass check reports
// violations on it all the same, and the check the primary-crash test uses
// does not. That check still finds a copy where one volume lags the others.
func TestCheckOfACopyStillApplyingGroups(t *testing.T) {
	t.Parallel()
	l := workload.Layout{Volumes: 4, BlocksPerVolume: 64, Clients: 4}
	log := &writeLog{}
	if _, err := workload.Run(context.Background(), l, log, 2000, 7); err != nil {
		t.Fatal(err)
	}
	n := len(log.writes)
	moving := func() workload.Reader {
		c := newCopy(l, log)
		at := n / 8
		c.advanceAll(at)
		return func(v int, p []byte, off int64) error {
			// A group applied before every read.
			at += n / 20
			c.advanceAll(at)
			copy(p, c.vols[v][off:])
			return nil
		}
	}
	vs, err := workload.Check(l, moving())
	if err != nil {
		t.Fatal(err)
	}
	if len(vs) == 0 {
		t.Fatal("a single-pass check of a copy applying groups while it is read found no violation: the test no longer shows why the two-pass check is needed")
	}
	t.Logf("a single-pass check of a copy that is consistent at every read reports %d violations, first: %s", len(vs), vs[0])
	if vs, err := checkMovingCopy(l, moving()); err != nil || len(vs) > 0 {
		t.Fatalf("the two-pass check of a copy consistent at every read: %v, %d violations %v", err, len(vs), vs[:min(len(vs), 3)])
	}

	// Volume 0 lags the others: a torn copy.
	torn := newCopy(l, log)
	torn.advanceAll(n * 3 / 4)
	torn.at[0], torn.vols[0] = 0, make([]byte, l.BlocksPerVolume*workload.BlockSize)
	torn.advance(0, n/4)
	vs, err = checkMovingCopy(l, func(v int, p []byte, off int64) error {
		copy(p, torn.vols[v][off:])
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(vs) == 0 {
		t.Fatal("the two-pass check found no violation in a copy whose volume 0 lags the others")
	}
}
