package apply

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"duplex/consistency"
	"duplex/disk"
	"duplex/recordset"
	"duplex/volume"
)

// memTarget is an in-memory volume that records what was done to it.
type memTarget struct {
	img     []byte
	ops     int
	flushes int
	failAt  int // fail the failAt-th operation (1-based); 0 never
}

var errInjected = errors.New("injected failure")

func newMem(size int) *memTarget { return &memTarget{img: make([]byte, size)} }

func (m *memTarget) op() error {
	m.ops++
	if m.failAt != 0 && m.ops == m.failAt {
		return errInjected
	}
	return nil
}

func (m *memTarget) WriteAt(p []byte, off int64) error {
	if err := m.op(); err != nil {
		return err
	}
	if off < 0 || off+int64(len(p)) > int64(len(m.img)) {
		return volume.ErrOutOfRange
	}
	copy(m.img[off:], p)
	return nil
}

func (m *memTarget) zero(off, n int64) error {
	if err := m.op(); err != nil {
		return err
	}
	if off < 0 || n < 0 || off+n > int64(len(m.img)) {
		return volume.ErrOutOfRange
	}
	clear(m.img[off : off+n])
	return nil
}

func (m *memTarget) WriteZeroes(off, n int64) error { return m.zero(off, n) }
func (m *memTarget) Trim(off, n int64) error        { return m.zero(off, n) }
func (m *memTarget) Flush() error {
	m.flushes++
	return nil
}

func write(vol string, off uint64, ts int64, data string) recordset.Update {
	return recordset.Update{Volume: vol, Kind: recordset.KindWrite, Offset: off, Length: uint64(len(data)), Timestamp: ts, Data: []byte(data)}
}

func zeroes(kind recordset.Kind, vol string, off, n uint64, ts int64) recordset.Update {
	return recordset.Update{Volume: vol, Kind: kind, Offset: off, Length: n, Timestamp: ts}
}

func group(us ...recordset.Update) *consistency.Group {
	var t int64
	for i := range us {
		us[i].Seq = uint64(i + 1)
		t = max(t, us[i].Timestamp)
	}
	return &consistency.Group{Number: 1, Time: t, Updates: us}
}

func TestGroupAppliesInTimestampOrder(t *testing.T) {
	for _, tc := range []struct {
		name string
		us   []recordset.Update
		want string
	}{
		{"later write wins", []recordset.Update{write("v", 0, 1, "aaaaaaaa"), write("v", 2, 2, "BBB")}, "aaBBBaaa"},
		{"later covers earlier", []recordset.Update{write("v", 2, 1, "BBB"), write("v", 0, 2, "aaaaaaaa")}, "aaaaaaaa"},
		{"exact overwrite", []recordset.Update{write("v", 0, 1, "11111111"), write("v", 0, 2, "22222222"), write("v", 0, 3, "33333333")}, "33333333"},
		{"zeroes after write", []recordset.Update{write("v", 0, 1, "aaaaaaaa"), zeroes(recordset.KindZeroes, "v", 2, 3, 2)}, "aa\x00\x00\x00aaa"},
		{"trim after write", []recordset.Update{write("v", 0, 1, "aaaaaaaa"), zeroes(recordset.KindTrim, "v", 0, 8, 2)}, "\x00\x00\x00\x00\x00\x00\x00\x00"},
		{"write after zeroes", []recordset.Update{zeroes(recordset.KindZeroes, "v", 0, 8, 1), write("v", 4, 2, "zz")}, "\x00\x00\x00\x00zz\x00\x00"},
		{"exact zeroes over write", []recordset.Update{write("v", 0, 1, "aaaaaaaa"), zeroes(recordset.KindZeroes, "v", 0, 8, 2)}, "\x00\x00\x00\x00\x00\x00\x00\x00"},
		{"exact write over zeroes", []recordset.Update{zeroes(recordset.KindTrim, "v", 0, 8, 1), write("v", 0, 2, "abcdefgh")}, "abcdefgh"},
		{"copy kind", []recordset.Update{{Volume: "v", Kind: recordset.KindCopy, Offset: 1, Length: 2, Timestamp: 1, Data: []byte("cc")}}, "\x00cc\x00\x00\x00\x00\x00"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newMem(8)
			if err := Group(group(tc.us...), map[string]Target{"v": m}); err != nil {
				t.Fatal(err)
			}
			if got := string(m.img); got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
			if m.flushes != 1 {
				t.Fatalf("%d flushes, want 1", m.flushes)
			}
		})
	}
}

// The same on real volume files, where zeroes and trims punch holes.
func TestGroupOnVolumes(t *testing.T) {
	dir := t.TempDir()
	const size = 1 << 20
	vols := map[string]Target{}
	files := map[string]*volume.Volume{}
	for _, n := range []string{"a", "b"} {
		v, err := volume.Open(filepath.Join(dir, n+".img"), size)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { v.Close() })
		vols[n], files[n] = v, v
	}
	block := bytes.Repeat([]byte{0xab}, 3*4096)
	g := group(
		recordset.Update{Volume: "a", Kind: recordset.KindWrite, Offset: 4096, Length: uint64(len(block)), Timestamp: 1, Data: block},
		recordset.Update{Volume: "b", Kind: recordset.KindWrite, Offset: 0, Length: 4, Timestamp: 2, Data: []byte("bbbb")},
		zeroes(recordset.KindTrim, "a", 8192, 4096, 3),
		zeroes(recordset.KindZeroes, "a", 4096, 100, 4),
	)
	if err := Group(g, vols); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 4*4096)
	if err := files["a"].ReadAt(got, 0); err != nil {
		t.Fatal(err)
	}
	want := make([]byte, 4*4096)
	copy(want[4096:], block)
	clear(want[8192 : 8192+4096])
	clear(want[4096 : 4096+100])
	if !bytes.Equal(got, want) {
		t.Fatalf("volume a differs at byte %d", diffAt(got, want))
	}
	b := make([]byte, 4)
	files["b"].ReadAt(b, 0)
	if string(b) != "bbbb" {
		t.Fatalf("volume b holds %q", b)
	}
}

func diffAt(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// randomGroup makes updates that often hit exactly the same range as an
// earlier one (which Group folds), often partly overlap (which it must
// not fold) and often start where the last ended (which it joins into one
// vectored write).
func randomGroup(rng *rand.Rand, size int) *consistency.Group {
	type rangeOf struct {
		vol    string
		off, n uint64
	}
	var ranges []rangeOf
	var us []recordset.Update
	for i := range 1 + rng.IntN(40) {
		var r rangeOf
		if prev := len(us) - 1; prev >= 0 && us[prev].Offset+us[prev].Length < uint64(size) && rng.IntN(3) == 0 {
			// Where the last update ended, as a sequential writer goes on.
			r.vol, r.off = us[prev].Volume, us[prev].Offset+us[prev].Length
			r.n = uint64(rng.IntN(min(64, size-int(r.off)) + 1))
			ranges = append(ranges, r)
		} else if len(ranges) > 0 && rng.IntN(2) == 0 {
			r = ranges[rng.IntN(len(ranges))]
		} else {
			r.vol = []string{"x", "y"}[rng.IntN(2)]
			r.n = uint64(rng.IntN(64))
			r.off = uint64(rng.IntN(size - int(r.n) + 1))
			ranges = append(ranges, r)
		}
		ts := int64(i + 1)
		switch rng.IntN(4) {
		case 0:
			us = append(us, zeroes(recordset.KindZeroes, r.vol, r.off, r.n, ts))
		case 1:
			us = append(us, zeroes(recordset.KindTrim, r.vol, r.off, r.n, ts))
		default:
			data := make([]byte, r.n)
			for j := range data {
				data[j] = byte(1 + rng.IntN(255))
			}
			us = append(us, recordset.Update{Volume: r.vol, Kind: recordset.KindWrite, Offset: r.off, Length: r.n, Timestamp: ts, Data: data})
		}
	}
	return group(us...)
}

// Folding exactly superseded updates leaves the bytes that applying every
// update in order leaves; and applying a group twice leaves the same bytes as
// once.
func TestFoldingAndIdempotence(t *testing.T) {
	const size = 256
	for seed := range uint64(500) {
		rng := rand.New(rand.NewPCG(seed, 99))
		g := randomGroup(rng, size)
		// Start from random content, as a secondary volume would have.
		start := map[string][]byte{}
		targets := map[string]*memTarget{}
		vols := map[string]Target{}
		for _, n := range []string{"x", "y"} {
			m := newMem(size)
			for i := range m.img {
				m.img[i] = byte(rng.IntN(256))
			}
			start[n] = bytes.Clone(m.img)
			targets[n], vols[n] = m, m
		}
		if err := Group(g, vols); err != nil {
			t.Fatal(err)
		}
		want := map[string][]byte{}
		for n, img := range start {
			want[n] = bytes.Clone(img)
		}
		for _, u := range g.Updates {
			img := want[u.Volume]
			if u.Kind.HasData() {
				copy(img[u.Offset:], u.Data)
			} else {
				clear(img[u.Offset : u.Offset+u.Length])
			}
		}
		for n := range want {
			if !bytes.Equal(targets[n].img, want[n]) {
				t.Fatalf("seed %d: volume %s differs from applying every update in order at byte %d", seed, n, diffAt(targets[n].img, want[n]))
			}
		}
		once := map[string][]byte{}
		for n, m := range targets {
			once[n] = bytes.Clone(m.img)
		}
		if err := Group(g, vols); err != nil {
			t.Fatal(err)
		}
		for n := range once {
			if !bytes.Equal(targets[n].img, once[n]) {
				t.Fatalf("seed %d: applying the group again changed volume %s at byte %d", seed, n, diffAt(targets[n].img, once[n]))
			}
		}
	}
}

// vecTarget is a memTarget that also writes vectors, counting them.
type vecTarget struct {
	*memTarget
	vectors [][]int // the buffer lengths of each WriteVAt
}

func (v *vecTarget) WriteVAt(bufs [][]byte, off int64) error {
	var lens []int
	for _, b := range bufs {
		if err := v.WriteAt(b, off); err != nil {
			return err
		}
		off += int64(len(b))
		lens = append(lens, len(b))
	}
	v.vectors = append(v.vectors, lens)
	return nil
}

// Applied through vectored writes, random groups leave the bytes applying
// every update in order leaves.
func TestVectoredApplyMatchesOrder(t *testing.T) {
	const size = 256
	joined := 0
	for seed := range uint64(500) {
		rng := rand.New(rand.NewPCG(seed, 7))
		g := randomGroup(rng, size)
		vols := map[string]Target{}
		plain := map[string]Target{}
		vecs := map[string]*vecTarget{}
		mems := map[string]*memTarget{}
		for _, n := range []string{"x", "y"} {
			a, b := newMem(size), newMem(size)
			for i := range a.img {
				a.img[i] = byte(rng.IntN(256))
			}
			copy(b.img, a.img)
			vecs[n], mems[n] = &vecTarget{memTarget: a}, b
			vols[n], plain[n] = vecs[n], b
		}
		if err := Group(g, vols); err != nil {
			t.Fatal(err)
		}
		if err := Group(g, plain); err != nil {
			t.Fatal(err)
		}
		for n := range vecs {
			for _, v := range vecs[n].vectors {
				joined = max(joined, len(v))
			}
			if !bytes.Equal(vecs[n].img, mems[n].img) {
				t.Fatalf("seed %d: volume %s applied with vectors differs at byte %d", seed, n, diffAt(vecs[n].img, mems[n].img))
			}
		}
	}
	if joined < 3 {
		t.Fatalf("the random groups never joined more than %d writes in a vector: the test checks nothing", joined)
	}
}

// Adjacent writes to one volume, one after the other in the group, are one
// vectored write; another volume's update, a gap or a zeroing ends it.
func TestAdjacentWritesAreOneVector(t *testing.T) {
	a, b := &vecTarget{memTarget: newMem(32)}, &vecTarget{memTarget: newMem(32)}
	g := group(
		write("a", 0, 1, "aa"),
		write("a", 2, 2, "bbb"),
		write("a", 5, 3, "c"), // a: one vector of 3
		write("b", 0, 4, "x"),
		write("a", 6, 5, "d"), // b's write between: a new vector
		write("a", 8, 6, "e"), // gap: a new vector
		zeroes(recordset.KindZeroes, "a", 9, 1, 7),
		write("a", 10, 8, "ff"), // after the zeroing: a new vector
	)
	if err := Group(g, map[string]Target{"a": a, "b": b}); err != nil {
		t.Fatal(err)
	}
	if got, want := fmt.Sprint(a.vectors), "[[2 3 1] [1] [1] [2]]"; got != want {
		t.Errorf("volume a written as vectors %s, want %s", got, want)
	}
	if got, want := string(a.img[:12]), "aabbbcd\x00e\x00ff"; got != want {
		t.Errorf("volume a holds %q, want %q", got, want)
	}
}

// Folding skips only what is covered exactly; it really does skip: each
// superseded update costs no write.
func TestFoldingSkipsExactlySuperseded(t *testing.T) {
	m := newMem(16)
	g := group(
		write("v", 0, 1, "aaaa"),
		write("v", 0, 2, "bbbb"), // supersedes 1
		write("v", 2, 3, "cc"),   // overlaps, not exact
		write("v", 0, 4, "dddd"), // supersedes 2
		write("v", 0, 5, "eee"),  // different length: not exact
	)
	if err := Group(g, map[string]Target{"v": m}); err != nil {
		t.Fatal(err)
	}
	if got, want := string(m.img[:4]), "eeed"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	if m.ops != 3 {
		t.Fatalf("%d operations, want 3 (two folded)", m.ops)
	}
}

func TestGroupMissingVolume(t *testing.T) {
	a := newMem(8)
	g := group(write("a", 0, 1, "xx"), write("missing", 0, 2, "yy"))
	err := Group(g, map[string]Target{"a": a})
	if err == nil {
		t.Fatal("group with an update for a missing volume applied without error")
	}
}

// A group is the unit of consistency: when it cannot be applied because a
// volume is missing, which is known before anything is written, none of it
// should reach the other volumes, or the secondary holds a state that never
// existed at the primary.
func TestGroupMissingVolumeWritesNothing(t *testing.T) {
	a := newMem(8)
	g := group(write("a", 0, 1, "xx"), write("missing", 0, 2, "yy"))
	if err := Group(g, map[string]Target{"a": a}); err == nil {
		t.Fatal("no error")
	}
	if a.ops != 0 {
		t.Errorf("volume a was written (%d operations, now %q) although the group could not be applied", a.ops, a.img)
	}
}

func TestGroupPropagatesErrors(t *testing.T) {
	m := newMem(8)
	m.failAt = 2
	g := group(write("v", 0, 1, "a"), write("v", 1, 2, "b"), write("v", 2, 3, "c"))
	err := Group(g, map[string]Target{"v": m})
	if !errors.Is(err, errInjected) {
		t.Fatalf("err = %v, want the target's error", err)
	}
	if m.flushes != 0 {
		t.Fatalf("flushed after a failed write")
	}
	bad := group(recordset.Update{Volume: "v", Kind: 99, Length: 1, Timestamp: 1})
	if err := Group(bad, map[string]Target{"v": newMem(8)}); err == nil {
		t.Fatal("unknown kind applied")
	}
	// A target that refuses a range fails the group.
	if err := Group(group(write("v", 7, 1, "xy")), map[string]Target{"v": newMem(8)}); !errors.Is(err, volume.ErrOutOfRange) {
		t.Fatalf("out of range: %v", err)
	}
}

// Every volume the group touched is flushed, and only those.
func TestGroupFlushesTouchedVolumes(t *testing.T) {
	a, b, c := newMem(8), newMem(8), newMem(8)
	g := group(write("a", 0, 1, "x"), write("b", 0, 2, "y"), write("b", 0, 3, "z"))
	if err := Group(g, map[string]Target{"a": a, "b": b, "c": c}); err != nil {
		t.Fatal(err)
	}
	if a.flushes != 1 || b.flushes != 1 || c.flushes != 0 {
		t.Fatalf("flushes a=%d b=%d c=%d, want 1 1 0", a.flushes, b.flushes, c.flushes)
	}
	if err := Group(&consistency.Group{Number: 2, Time: 5}, map[string]Target{"a": a}); err != nil {
		t.Fatalf("empty group: %v", err)
	}
}

func TestStateRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")
	for _, st := range []State{
		{Session: "s", Group: 1, Time: 12345, Through: map[string]uint64{"ss1": 3, "ss2": 4}},
		{Session: "payroll", Group: 1 << 60, Time: -7, Through: map[string]uint64{}},
		{Session: "s", Group: 2, Time: 1_700_000_000_000_000_001, Through: map[string]uint64{"a": 1<<64 - 1}},
	} {
		if err := WriteState(path, st); err != nil {
			t.Fatal(err)
		}
		got, err := ReadState(path)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, st) {
			t.Fatalf("got %+v, want %+v", got, st)
		}
	}
	// Nothing but the state file is left behind.
	entries, err := os.ReadDir(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name() != "state.json" {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Fatalf("directory holds %v, want only state.json", names)
	}
}

func TestReadStateMissingIsZero(t *testing.T) {
	st, err := ReadState(filepath.Join(t.TempDir(), "nothing.json"))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(st, State{}) {
		t.Fatalf("got %+v, want the zero State", st)
	}
}

func TestReadStateGarbage(t *testing.T) {
	dir := t.TempDir()
	for name, content := range map[string]string{
		"garbage":    "\x00\x01not json",
		"truncated":  `{"session":"s","applied_group":4`,
		"empty":      "",
		"wrong type": `{"session":"s","applied_group":"four"}`,
	} {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if st, err := ReadState(path); err == nil {
			t.Errorf("%s: ReadState = %+v, want an error", name, st)
		}
	}
	if _, err := ReadState(dir); err == nil {
		t.Error("ReadState of a directory succeeded")
	}
}

// A crash between creating the temporary file and renaming it leaves a
// temporary file next to the state: ReadState returns the old state, and
// the next WriteState is not disturbed by it.
func TestStateIgnoresLeftoverTempFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state.json")
	old := State{Session: "s", Group: 5, Time: 50, Through: map[string]uint64{"a": 2}}
	if err := WriteState(path, old); err != nil {
		t.Fatal(err)
	}
	leftover := filepath.Join(dir, "state.json.tmp123456")
	if err := os.WriteFile(leftover, []byte(`{"session":"s","applied_group":6,"consistency_time_ns":60,"thr`), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := ReadState(path)
	if err != nil || !reflect.DeepEqual(got, old) {
		t.Fatalf("ReadState with a leftover temp file = %+v, %v; want %+v", got, err, old)
	}
	next := State{Session: "s", Group: 6, Time: 60, Through: map[string]uint64{"a": 3}}
	if err := WriteState(path, next); err != nil {
		t.Fatal(err)
	}
	if got, err := ReadState(path); err != nil || !reflect.DeepEqual(got, next) {
		t.Fatalf("after the next write: %+v, %v; want %+v", got, err, next)
	}
}

// The file always holds a whole state: a reader never sees a mix, whatever
// moment it reads at.
func TestWriteStateAtomicForReaders(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")
	through := map[string]uint64{}
	for i := range 200 {
		through[fmt.Sprintf("subsystem-%03d", i)] = uint64(i)
	}
	if err := WriteState(path, State{Session: "s", Group: 0, Through: through}); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	errc := make(chan error, 1)
	go func() {
		defer close(errc)
		for {
			select {
			case <-done:
				return
			default:
			}
			st, err := ReadState(path)
			if err != nil {
				errc <- err
				return
			}
			if st.Session != "s" || len(st.Through) != 200 || st.Time != int64(st.Group)*10 {
				errc <- fmt.Errorf("read a mixed state: group %d time %d, %d subsystems", st.Group, st.Time, len(st.Through))
				return
			}
		}
	}()
	for g := range uint64(100) {
		if err := WriteState(path, State{Session: "s", Group: g, Time: int64(g) * 10, Through: through}); err != nil {
			t.Fatal(err)
		}
	}
	close(done)
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

func TestWriteFileAtomicFailsInMissingDir(t *testing.T) {
	if err := WriteFileAtomic(filepath.Join(t.TempDir(), "no", "such", "dir", "f"), []byte("x")); err == nil {
		t.Fatal("write into a missing directory succeeded")
	}
}

// A state file write that fails (a full disk, a failed fsync or rename)
// leaves the previous state whole: a restart replays from it.
func TestWriteStateFaultKeepsPreviousState(t *testing.T) {
	for _, op := range []disk.Op{disk.OpCreate, disk.OpWrite, disk.OpSync, disk.OpRename, disk.OpSyncDir} {
		t.Run(op.String(), func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "state.json")
			old := State{Session: "s", Group: 7, Time: 70, Through: map[string]uint64{"ss1": 3}}
			if err := WriteState(path, old); err != nil {
				t.Fatal(err)
			}
			in := disk.NewInjector(nil)
			in.Inject(disk.Fault{Op: op, Under: dir, Err: disk.ENOSPC})
			err := WriteStateFS(in, path, State{Session: "s", Group: 8, Time: 80, Through: map[string]uint64{"ss1": 4}})
			if !disk.IsFull(err) || !strings.Contains(err.Error(), path) {
				t.Fatalf("WriteStateFS with a failing %s: %v, want ENOSPC naming %s", op, err, path)
			}
			if in.Injected(op) == 0 {
				t.Fatalf("no %s failed", op)
			}
			got, err := ReadStateFS(in, path)
			if err != nil {
				t.Fatal(err)
			}
			if op == disk.OpSyncDir {
				// The rename happened; only its durability is unknown.
				return
			}
			if got.Group != old.Group || got.Time != old.Time {
				t.Fatalf("state after a failed write: %+v, want %+v", got, old)
			}
		})
	}
}

// A marker changes no byte: it neither writes its range nor supersedes a
// write of the same range in its group.
func TestMarkersChangeNothing(t *testing.T) {
	m := newMem(32)
	mk := recordset.Marker{State: recordset.StateCopyEnd}.Update("v")
	mk.Timestamp = 2
	g := group(write("v", 0, 1, "0123456789abcdef"), mk)
	if err := Group(g, map[string]Target{"v": m}); err != nil {
		t.Fatal(err)
	}
	if got, want := string(m.img[:16]), "0123456789abcdef"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	if m.ops != 1 {
		t.Fatalf("%d operations, want 1 (the write)", m.ops)
	}
}
