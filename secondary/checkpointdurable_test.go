package secondary

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"duplex/apply"
	"duplex/disk"
	"duplex/recordset"
	"duplex/transport"
)

// volatileVolume is a volume whose writes reach its disk only at Flush,
// as a page-cache write does at fdatasync: the writeback started after
// each group makes nothing durable (the device's cache may still hold it,
// or the pages not be written yet). It tags each write by its first byte.
type volatileVolume struct {
	apply.Target
	st *volatileState
}

type volatileState struct {
	mu       sync.Mutex
	written  map[int64]byte // offset → tag, as the volume reads now
	durable  map[int64]byte // what a power loss leaves
	violated []string       // the checks that found a group not durable
}

func (v volatileVolume) WriteAt(p []byte, off int64) error {
	if err := v.Target.WriteAt(p, off); err != nil {
		return err
	}
	v.st.mu.Lock()
	v.st.written[off] = p[0]
	v.st.mu.Unlock()
	return nil
}

func (v volatileVolume) StartWriteback() error {
	if w, ok := v.Target.(apply.WritebackStarter); ok {
		return w.StartWriteback()
	}
	return nil
}

func (v volatileVolume) Flush() error {
	// What was written before the call is durable once it returns; writes
	// made meanwhile may or may not be, and are not counted.
	v.st.mu.Lock()
	snap := make(map[int64]byte, len(v.st.written))
	for off, tag := range v.st.written {
		snap[off] = tag
	}
	v.st.mu.Unlock()
	if err := v.Target.Flush(); err != nil {
		return err
	}
	v.st.mu.Lock()
	for off, tag := range snap {
		v.st.durable[off] = tag
	}
	v.st.mu.Unlock()
	return nil
}

// groupOffset is where group k of the test writes, tagged byte(k).
func groupOffset(k uint64) int64 { return int64(k) * durableGroupBytes }

const durableGroupBytes = 1 << 20

// checkDurable records a violation if a group through g is not durable.
func (st *volatileState) checkDurable(when string, g uint64) {
	st.mu.Lock()
	defer st.mu.Unlock()
	for k := uint64(1); k <= g; k++ {
		if tag, ok := st.durable[groupOffset(k)]; !ok || tag != byte(k) {
			st.violated = append(st.violated, fmt.Sprintf("%s through group %d: group %d not durable on the volume", when, g, k))
			return
		}
	}
}

// orderFS checks, as the secondary gives up its hold on a group (the state
// file renamed into place naming it applied; a journal segment removed or
// recycled), that the volume's disk holds the group's writes.
type orderFS struct {
	disk.FS
	state, journal string
	st             *volatileState
	checks         int // state files and segment releases checked
	released       int // segment releases checked
	mu             sync.Mutex
}

func (f *orderFS) Rename(oldpath, newpath string) error {
	if newpath == f.state {
		if st, err := apply.ReadState(oldpath); err == nil {
			f.count()
			f.st.checkDurable("state file written", st.Group)
		}
	}
	f.segmentReleased(oldpath)
	return f.FS.Rename(oldpath, newpath)
}

func (f *orderFS) Remove(name string) error {
	f.segmentReleased(name)
	return f.FS.Remove(name)
}

func (f *orderFS) count() {
	f.mu.Lock()
	f.checks++
	f.mu.Unlock()
}

// segmentReleased checks the groups of the segment path, if it is one of
// the journal's: its last group is the one before the next segment's first.
func (f *orderFS) segmentReleased(path string) {
	if filepath.Dir(path) != f.journal || filepath.Ext(path) != ".seg" {
		return
	}
	first := func(name string) (uint64, bool) {
		n, err := strconv.ParseUint(strings.TrimSuffix(name, ".seg"), 16, 64)
		return n, err == nil
	}
	mine, ok := first(filepath.Base(path))
	if !ok {
		return
	}
	entries, err := os.ReadDir(f.journal)
	if err != nil {
		return
	}
	var firsts []uint64
	for _, e := range entries {
		if n, ok := first(e.Name()); ok && filepath.Ext(e.Name()) == ".seg" && n > mine {
			firsts = append(firsts, n)
		}
	}
	if len(firsts) == 0 {
		return
	}
	f.count()
	f.mu.Lock()
	f.released++
	f.mu.Unlock()
	f.st.checkDurable("journal segment "+filepath.Base(path)+" released", slices.Min(firsts)-1)
}

// TestNothingIsCheckpointedBeforeTheVolumesHoldItDurably: the state file
// names a group applied, and the journal gives up a segment's groups, only
// once the volume's disk holds their writes (after a Flush that began
// after they were applied): a power loss after either would otherwise
// leave a volume without groups that no replay brings back. The volume here
// makes a write durable at Flush alone, not at the writeback started after
// each group.
func TestNothingIsCheckpointedBeforeTheVolumesHoldItDurably(t *testing.T) {
	st := &volatileState{written: map[int64]byte{}, durable: map[int64]byte{}}
	const groups = 70 // past the journal's first 64 MiB segment
	r := &rig{t: t, dir: t.TempDir(), sizes: map[string]int64{"a": groupOffset(groups + 1)}, subs: []string{"ss1"}}
	ofs := &orderFS{FS: disk.OS, state: filepath.Join(r.dir, "state.json"), journal: filepath.Join(r.dir, "journal"), st: st}
	r.edit = func(c *Config) {
		c.FS = ofs
		c.CheckpointEvery = 1 // a checkpoint after every group
	}
	r.open()
	t.Cleanup(r.close)
	r.sec.view.Lock()
	r.sec.targets["a"] = volatileVolume{Target: r.sec.targets["a"], st: st}
	r.sec.view.Unlock()

	conn, typ, _ := r.dial(r.hello())
	if typ != transport.TypeWelcome {
		t.Fatalf("frame type %d, want a welcome", typ)
	}
	for k := uint64(1); k <= groups; k++ {
		data := bytes.Repeat([]byte{byte(k)}, durableGroupBytes)
		sendRecordSet(t, conn, writeSet(k, int64(k)*10000, recordset.Update{Volume: "a", Kind: recordset.KindWrite,
			Offset: uint64(groupOffset(k)), Length: durableGroupBytes, Data: data}))
		if reason, acked := answers(t, conn, k-1); acked < k {
			t.Fatalf("group %d not acknowledged (refusal %q)", k, reason)
		}
	}
	waitFor(t, "every group applied", func() bool { return r.sec.Stats().Group == groups })
	waitFor(t, "a checkpoint of the last group", func() bool { return stateFileGroup(t, ofs.state) == groups })
	segs, err := fs.Glob(os.DirFS(ofs.journal), "*.seg")
	if err != nil {
		t.Fatal(err)
	}
	if len(segs) != 1 {
		t.Fatalf("journal segments %v after every group was checkpointed, want the active one only: no release was checked", segs)
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	ofs.mu.Lock()
	checks, released := ofs.checks, ofs.released
	ofs.mu.Unlock()
	if released == 0 || checks == released {
		t.Fatalf("%d checks, %d of them releases of a segment: want both a state file and a release checked", checks, released)
	}
	if len(st.violated) > 0 {
		t.Fatalf("%d of %d checks found groups not durable, the first: %s", len(st.violated), checks, st.violated[0])
	}
}
