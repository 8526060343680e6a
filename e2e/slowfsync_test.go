package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"duplex/disk"
	"duplex/transport"
	"duplex/workload"
)

// slowSyncFS is the real disk, except that once armed an fsync of a
// journal segment waits until the gate opens, as one does on a disk that
// takes seconds to answer.
type slowSyncFS struct {
	disk.FS
	armed   atomic.Bool
	started chan struct{} // receives once per gated fsync that begins
	gate    chan struct{} // closed: every fsync goes on
}

type slowSyncFile struct {
	disk.File
	fs *slowSyncFS
}

func (f *slowSyncFS) OpenFile(name string, flag int, perm fs.FileMode) (disk.File, error) {
	file, err := f.FS.OpenFile(name, flag, perm)
	if err != nil || !strings.HasSuffix(name, ".seg") {
		return file, err
	}
	return slowSyncFile{File: file, fs: f}, nil
}

func (f slowSyncFile) Sync() error {
	if f.fs.armed.Load() {
		select {
		case f.fs.started <- struct{}{}:
		default:
		}
		<-f.fs.gate
	}
	return f.File.Sync()
}

// TestASlowJournalFsyncKeepsTheLink: the first group of a new primary
// process is journaled alone (the secondary records the process before and
// after it), and its fsync takes 7 s, longer than the primary's silence
// time (5 s). The secondary is reachable and busy, not cut off: the link
// must stay up, every record set not resent over a new one, nothing may
// be acknowledged before the fsync returns, and the secondary's status
// must answer meanwhile. Before: the receiver said
// nothing while it journaled the group, so the primary gave the link up
// 5 s into the fsync ("nothing from the secondary for 5s with record sets
// outstanding") and redialled.
func TestASlowJournalFsyncKeepsTheLink(t *testing.T) {
	t.Parallel()
	const hang = 7 * time.Second
	dir := t.TempDir()
	net := transport.NewMemNetwork(1, transport.Faults{})
	fsys := &slowSyncFS{FS: disk.OS, started: make(chan struct{}, 1), gate: make(chan struct{})}
	var once sync.Once
	release := func() { once.Do(func() { close(fsys.gate) }) }
	defer release()
	sec := startSecondary(t, dir, net, secondaryOpts{fs: fsys})
	fsys.armed.Store(true)
	p := startPrimary(t, dir, primaryOpts{interval: 10 * time.Millisecond, dialer: net})
	a := bytes.Repeat([]byte{0xa5}, workload.BlockSize)
	if err := p.WriteAt(context.Background(), 0, a, 0); err != nil {
		t.Fatal(err)
	}
	select {
	case <-fsys.started:
	case <-time.After(30 * time.Second):
		t.Fatal("the secondary never fsynced its journal")
	}
	// The primary redials at once after giving the link up, and the
	// secondary takes the new link only once the fsync returns: each
	// dial in between is a connection that never linked.
	began := time.Now()
	for time.Since(began) < hang {
		st := p.mover.Stats()
		if st.Acked.Group != 0 {
			t.Fatalf("group %d acknowledged %s into the fsync of the first group, before it returned", st.Acked.Group, time.Since(began).Round(time.Millisecond))
		}
		// Status must answer meanwhile: what answers the primary must
		// not hold the secondary's lock over the disk.
		stats := make(chan uint64, 1)
		go func() { stats <- sec.sec.Stats().JournaledGroup }()
		select {
		case g := <-stats:
			if g != 0 {
				t.Fatalf("the secondary says group %d is journaled before its fsync returned", g)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the secondary's status waits on the journal's fsync")
		}
		time.Sleep(50 * time.Millisecond)
	}
	release()
	fsys.armed.Store(false)
	keptTheLinkThrough(t, p, sec, a, fmt.Sprintf("a %s journal fsync", hang))
}

// keptTheLinkThrough checks, once the secondary's slow disk has answered
// (wait says how slow, on what), that the secondary holds a, written to
// volume 0 at offset 0 and acknowledged before the wait, and that the
// primary kept its one connection through it and sent nothing again: the
// secondary said in time that it took what it had.
func keptTheLinkThrough(t *testing.T, p *primary, sec *secondarySite, a []byte, wait string) {
	t.Helper()
	quiesce(t, p, sec)
	got := make([]byte, len(a))
	if err := sec.read(0, got, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, a) {
		t.Fatalf("the secondary does not hold the write acknowledged before %s", wait)
	}
	st := p.mover.Stats()
	t.Logf("after %s: %d connections, last error %q, %d resends", wait, st.Connects, st.LastError, st.Resends)
	if st.Connects != 1 {
		t.Errorf("the primary connected %d times over %s, want once: it gave up a secondary that was busy, not cut off (last error %q)",
			st.Connects, wait, st.LastError)
	}
	// What the secondary took is said to have arrived before the
	// primary's resend timer (500 ms) runs out: none of it is sent again.
	if st.Resends != 0 {
		t.Errorf("the primary sent record sets again %d times over %s: the secondary took them, but said so only after the primary's resend timer ran out", st.Resends, wait)
	}
}
