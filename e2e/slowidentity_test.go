package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"strings"
	"sync"
	"testing"
	"time"

	"duplex/disk"
	"duplex/transport"
	"duplex/workload"
)

// slowIdentityFS is slowSyncFS for the secondary's identity file instead
// of the journal: once armed, the fsync of each new copy of the identity
// waits until the gate opens, and the journal's are the real disk's.
type slowIdentityFS struct {
	slowSyncFS
}

func (f *slowIdentityFS) OpenFile(name string, flag int, perm fs.FileMode) (disk.File, error) {
	return f.FS.OpenFile(name, flag, perm)
}

func (f *slowIdentityFS) CreateTemp(dir, pattern string) (disk.File, error) {
	file, err := f.FS.CreateTemp(dir, pattern)
	if err != nil || !strings.HasPrefix(pattern, "identity.json") {
		return file, err
	}
	return slowSyncFile{File: file, fs: &f.slowSyncFS}, nil
}

// TestASlowIdentityFsyncKeepsTheLink: the secondary records a new primary
// process in its identity file before and after it journals the process's
// first group, and the fsync of that file takes 7 s, longer than the
// primary's silence time (5 s). The secondary is reachable and busy, not
// cut off: the link must stay up, nothing may be acknowledged before the
// group is journaled, and the secondary's status must answer meanwhile.
// Before: the secondary wrote the file under the lock that status and
// every receipt take, so it said nothing to the primary, which gave the
// link up 5 s into the fsync and redialled, and status waited as long as
// the disk.
func TestASlowIdentityFsyncKeepsTheLink(t *testing.T) {
	t.Parallel()
	const hang = 7 * time.Second
	dir := t.TempDir()
	net := transport.NewMemNetwork(1, transport.Faults{})
	fsys := &slowIdentityFS{slowSyncFS{FS: disk.OS, started: make(chan struct{}, 1), gate: make(chan struct{})}}
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
		t.Fatal("the secondary never wrote its identity for the new primary process")
	}
	began := time.Now()
	statusBlocked := false
	for time.Since(began) < hang {
		if st := p.mover.Stats(); st.Acked.Group != 0 {
			t.Fatalf("group %d acknowledged %s into the fsync of the identity before the first group", st.Acked.Group, time.Since(began).Round(time.Millisecond))
		}
		if !statusBlocked {
			stats := make(chan struct{}, 1)
			go func() { sec.sec.Stats(); stats <- struct{}{} }()
			select {
			case <-stats:
			case <-time.After(2 * time.Second):
				statusBlocked = true
				t.Errorf("the secondary's status waits on the fsync of its identity (no answer %s into it)", time.Since(began).Round(time.Millisecond))
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	release()
	fsys.armed.Store(false)
	keptTheLinkThrough(t, p, sec, a, fmt.Sprintf("a %s fsync of the secondary's identity", hang))
}
