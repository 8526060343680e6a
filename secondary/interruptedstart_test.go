package secondary

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"strings"
	"sync"
	"testing"

	"duplex/consistency"
	"duplex/disk"
	"duplex/journal"
	"duplex/recordset"
)

// TestStartInterruptedDuringReplay: a secondary asked to stop while it
// replays its journal stops at a group boundary of the replay without
// applying the rest, and leaves the journal and the state file as they
// were: the next start replays every group, and the volumes end as if
// nothing had interrupted it.
func TestStartInterruptedDuringReplay(t *testing.T) {
	t.Run("before it", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel() // the stop came before the replay began
		testInterruptedStart(t, ctx, nil)
	})
	t.Run("part-way through applying", func(t *testing.T) {
		// The stop comes while the replay applies the groups: once the
		// second pass over the journal (the first follows the pair states)
		// has read a few blocks of it.
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		fsys := &readCounter{FS: disk.OS, at: 12, passes: 2, hit: cancel}
		testInterruptedStart(t, ctx, fsys)
		if !fsys.fired() {
			t.Error("the replay never read far enough to be stopped part-way")
		}
	})
}

// readCounter calls hit once the passes-th reading of a journal segment has
// read at blocks.
type readCounter struct {
	disk.FS
	at, passes int
	hit        func()
	mu         sync.Mutex
	opens      int
	reads      int
	done       bool
}

func (c *readCounter) fired() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.done
}

func (c *readCounter) OpenFile(name string, flag int, perm fs.FileMode) (disk.File, error) {
	f, err := c.FS.OpenFile(name, flag, perm)
	if err != nil || flag != os.O_RDONLY || !strings.HasSuffix(name, ".seg") {
		return f, err
	}
	c.mu.Lock()
	c.opens++
	counted := c.opens == c.passes
	c.mu.Unlock()
	if !counted {
		return f, nil
	}
	return &countedFile{File: f, c: c}, nil
}

type countedFile struct {
	disk.File
	c *readCounter
}

func (f *countedFile) ReadAt(p []byte, off int64) (int, error) {
	f.c.mu.Lock()
	f.c.reads++
	fire := f.c.reads == f.c.at
	if fire {
		f.c.done = true
	}
	f.c.mu.Unlock()
	if fire {
		f.c.hit()
	}
	return f.File.ReadAt(p, off)
}

func testInterruptedStart(t *testing.T, ctx context.Context, fsys disk.FS) {
	const (
		groups = 8
		chunk  = 256 << 10
	)
	r := newRig(t, map[string]int64{"a": 1 << 20})
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	j, err := journal.Open(r.config().JournalDir, journal.Options{MaxRecord: MaxGroupBytes})
	if err != nil {
		t.Fatal(err)
	}
	want := make([]byte, 1<<20)
	for n := uint64(1); n <= groups; n++ {
		data := bytes.Repeat([]byte{byte(n)}, chunk)
		off := int64(n-1) % 4 * chunk
		copy(want[off:], data)
		g := &consistency.Group{Number: n, Time: int64(n) * 1000, Through: map[string]uint64{"ss1": n},
			Updates: []recordset.Update{{Volume: "a", Kind: recordset.KindWrite, Offset: uint64(off), Length: chunk,
				Timestamp: int64(n)*1000 - 1, Seq: n, Data: data}}}
		enc, err := consistency.EncodeGroup(nil, rigSession, g)
		if err != nil {
			t.Fatal(err)
		}
		if err := j.Append(n, enc); err != nil {
			t.Fatal(err)
		}
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	statePath := r.config().StatePath
	stateBefore, err := os.ReadFile(statePath)
	if err != nil {
		t.Fatal(err)
	}

	r.openVolumes()
	cfg := r.config()
	cfg.Context, cfg.FS = ctx, fsys
	if sec, err := Open(cfg); !errors.Is(err, ErrInterrupted) {
		if err == nil {
			sec.Close()
		}
		t.Fatalf("Open with its context ended: %v, want ErrInterrupted", err)
	} else {
		t.Logf("interrupted: %v", err)
	}
	if after, err := os.ReadFile(statePath); err != nil || !bytes.Equal(after, stateBefore) {
		t.Errorf("an interrupted start changed the state file (%v):\n%s\nthen\n%s", err, stateBefore, after)
	}
	for _, v := range r.vols {
		v.Close()
	}

	r.open() // the next start replays everything
	if pos := r.sec.Position(); pos.Group != groups {
		t.Fatalf("after the next start: at group %d, want %d", pos.Group, groups)
	}
	got := make([]byte, 1<<20)
	if err := r.sec.ReadAt("a", got, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Error("after the next start the volume is not what the journaled groups wrote")
	}
}
