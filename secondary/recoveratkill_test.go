package secondary

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"duplex/disk"
	"duplex/history"
	"duplex/recordset"
	"duplex/volume"
)

// recoverKillEnv names the directory of a secondary a child process of
// TestRecoverAtKilledAtEachStep takes back in time, as recover --at does,
// until it is killed at the step recoverKillStepEnv names. The history's
// step length and a coupled Gate's limit are its row's
// (recoverKillIntervalEnv, recoverKillLimitEnv; 0: whole groups, no Gate).
const (
	recoverKillEnv         = "DUPLEX_SECONDARY_RECOVER_KILL_DIR"
	recoverKillStepEnv     = "DUPLEX_SECONDARY_RECOVER_KILL_STEP"
	recoverKillAtEnv       = "DUPLEX_SECONDARY_RECOVER_KILL_AT"
	recoverKillIntervalEnv = "DUPLEX_SECONDARY_RECOVER_KILL_INTERVAL"
	recoverKillLimitEnv    = "DUPLEX_SECONDARY_RECOVER_KILL_LIMIT"
)

func TestMain(m *testing.M) {
	if dir := os.Getenv(recoverKillEnv); dir != "" {
		step, _ := strconv.Atoi(os.Getenv(recoverKillStepEnv))
		at, _ := strconv.ParseInt(os.Getenv(recoverKillAtEnv), 10, 64)
		iv, _ := strconv.ParseInt(os.Getenv(recoverKillIntervalEnv), 10, 64)
		limit, _ := strconv.ParseInt(os.Getenv(recoverKillLimitEnv), 10, 64)
		c := recoverKillCase{interval: time.Duration(iv), limit: limit}
		if err := recoverKillChild(dir, c, step, at); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		return
	}
	os.Exit(m.Run())
}

// stepper counts the steps that change the disk, those of the file
// system under the durable state and the undo's writes to the volumes,
// and holds for ever the one numbered at and every one after it, once it
// printed what it is: the parent kills the process there, the step not
// taken.
type stepper struct {
	mu   sync.Mutex
	n    int
	at   int // 0: never held
	out  io.Writer
	held chan struct{}
}

func (s *stepper) step(what string) {
	s.mu.Lock()
	s.n++
	n := s.n
	if s.at == 0 || n < s.at {
		fmt.Fprintf(s.out, "step %d %s\n", n, what)
		s.mu.Unlock()
		return
	}
	if n == s.at {
		fmt.Fprintf(s.out, "held %d %s\n", n, what)
	}
	s.mu.Unlock()
	<-s.held // never closed
}

// stepFS is an FS whose changes are steps of a stepper.
type stepFS struct {
	disk.FS
	s *stepper
}

func (f stepFS) OpenFile(name string, flag int, perm fs.FileMode) (disk.File, error) {
	if flag&(os.O_CREATE|os.O_TRUNC) != 0 {
		f.s.step("create " + name)
	}
	file, err := f.FS.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return stepFile{File: file, s: f.s}, nil
}

func (f stepFS) CreateTemp(dir, pattern string) (disk.File, error) {
	f.s.step("create temp " + filepath.Join(dir, pattern))
	file, err := f.FS.CreateTemp(dir, pattern)
	if err != nil {
		return nil, err
	}
	return stepFile{File: file, s: f.s}, nil
}

func (f stepFS) Remove(name string) error {
	f.s.step("remove " + name)
	return f.FS.Remove(name)
}

func (f stepFS) Rename(oldpath, newpath string) error {
	f.s.step("rename " + oldpath + " " + newpath)
	return f.FS.Rename(oldpath, newpath)
}

func (f stepFS) MkdirAll(dir string, perm fs.FileMode) error {
	f.s.step("mkdir " + dir)
	return f.FS.MkdirAll(dir, perm)
}

func (f stepFS) SyncDir(dir string) error {
	f.s.step("fsync dir " + dir)
	return f.FS.SyncDir(dir)
}

type stepFile struct {
	disk.File
	s *stepper
}

func (f stepFile) Write(p []byte) (int, error) {
	f.s.step(fmt.Sprintf("write %d bytes to %s", len(p), f.Name()))
	return f.File.Write(p)
}

func (f stepFile) WriteAt(p []byte, off int64) (int, error) {
	f.s.step(fmt.Sprintf("write %d bytes at %d of %s", len(p), off, f.Name()))
	return f.File.WriteAt(p, off)
}

func (f stepFile) Sync() error {
	f.s.step("fsync " + f.Name())
	return f.File.Sync()
}

func (f stepFile) Datasync() error {
	f.s.step("fdatasync " + f.Name())
	return disk.Datasync(f.File)
}

func (f stepFile) Truncate(size int64) error {
	f.s.step(fmt.Sprintf("truncate %s to %d", f.Name(), size))
	return f.File.Truncate(size)
}

// stepSink is a volume an undo writes back, its writes steps.
type stepSink struct {
	history.Sink
	name string
	s    *stepper
}

func (k stepSink) WriteAt(p []byte, off int64) error {
	k.s.step(fmt.Sprintf("undo write %d bytes at %d of volume %s", len(p), off, k.name))
	return k.Sink.WriteAt(p, off)
}

func (k stepSink) WriteZeroes(off, length int64) error {
	k.s.step(fmt.Sprintf("undo zeroes %d bytes at %d of volume %s", length, off, k.name))
	return k.Sink.WriteZeroes(off, length)
}

func (k stepSink) Flush() error {
	k.s.step("flush volume " + k.name)
	return k.Sink.Flush()
}

// recoverKillCase is a row of TestRecoverAtKilledAtEachStep: groups
// 1..n, each writing pieces pieces of its own region in turn, at times
// spread over the millisecond before its time (group k's is k ms), a
// history in steps of interval, and a coupled Gate at gateAt while the
// groups are sent; the child opens the secondary behind a Gate at limit
// (0: none) and recovers to at, which reaches the point of time want.
type recoverKillCase struct {
	name     string
	pieces   int
	interval time.Duration
	gateAt   int64
	limit    int64
	at, want int64
}

const recoverKillGroups = 5

// pieceTime is the stamp of piece j of group k's pieces.
func (c recoverKillCase) pieceTime(k uint64, j int) int64 {
	ms := int64(time.Millisecond)
	return int64(k-1)*ms + int64(j+1)*ms/int64(c.pieces+1)
}

// pieceByte is what piece j of group k writes.
func pieceByte(k uint64, j int) byte { return byte(k<<4) | byte(j) }

// pieceBytes is the length of a piece.
func (c recoverKillCase) pieceBytes() uint64 { return regionBytes / uint64(c.pieces) }

// sendGroups sends groups 1..n of c's pieces.
func (c recoverKillCase) sendGroups(t *testing.T, r *gateRig) {
	t.Helper()
	for k := uint64(1); k <= recoverKillGroups; k++ {
		ts := int64(k) * int64(time.Millisecond)
		rs := &recordset.RecordSet{Session: "s", Subsystem: "ss1", Seq: k, Group: k, ReadTime: ts, Horizon: ts}
		for j := 0; j < c.pieces; j++ {
			rs.Updates = append(rs.Updates, recordset.Update{Volume: "vol1", Kind: recordset.KindWrite,
				Timestamp: c.pieceTime(k, j), Offset: k*regionBytes + uint64(j)*c.pieceBytes(), Length: c.pieceBytes(),
				Data: bytes.Repeat([]byte{pieceByte(k, j)}, int(c.pieceBytes()))})
		}
		if k == 1 && c.interval != 0 {
			// Duplex from group 1 on: a group with a pair state of its
			// own is kept whole, in one step.
			first := recordset.Marker{State: recordset.StateFirstCopy, Bytes: 1 << 20}.Update("vol1")
			first.Timestamp = 1
			end := recordset.Marker{State: recordset.StateCopyEnd}.Update("vol1")
			end.Timestamp = ts - 1
			rs.Updates = append(append([]recordset.Update{first}, rs.Updates...), end)
		}
		for i := range rs.Updates {
			rs.Updates[i].Seq = 10*k + uint64(i)
		}
		r.sendRecordSet(t, rs)
	}
}

// pieces returns the first byte of every piece of groups 1..n on v.
func (c recoverKillCase) piecesOf(t *testing.T, v *volume.Volume) []byte {
	t.Helper()
	var out []byte
	b := make([]byte, 1)
	for k := uint64(1); k <= recoverKillGroups; k++ {
		for j := 0; j < c.pieces; j++ {
			if err := v.ReadAt(b, int64(k*regionBytes+uint64(j)*c.pieceBytes())); err != nil {
				t.Fatal(err)
			}
			out = append(out, b[0])
		}
	}
	return out
}

// image is what piecesOf returns for volumes as of time ts: every piece
// stamped at or before it written.
func (c recoverKillCase) image(ts int64) []byte {
	var out []byte
	for k := uint64(1); k <= recoverKillGroups; k++ {
		for j := 0; j < c.pieces; j++ {
			b := byte(0xEE)
			if c.pieceTime(k, j) <= ts {
				b = pieceByte(k, j)
			}
			out = append(out, b)
		}
	}
	return out
}

// recoverKillConfig is the Config of the secondary in dir that the kill
// test's processes open, stopped, as recover --at does: behind a Gate at
// c's limit for a coupled session.
func recoverKillConfig(dir string, c recoverKillCase, v *volume.Volume, fsys disk.FS) Config {
	hist := historyOf(dir)
	hist.Interval = c.interval
	cfg := Config{Session: "s", Subsystems: []string{"ss1"}, Volumes: map[string]*volume.Volume{"vol1": v},
		JournalDir: filepath.Join(dir, "journal"), StatePath: filepath.Join(dir, "state.json"), History: hist, FS: fsys,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if c.limit != 0 {
		cfg.Gate = newTestGate(c.limit)
	}
	return cfg
}

// recoverKillChild does what recover --at does to the secondary in dir,
// for time at: it opens it (as c's row has it), fences it, takes it back
// and closes it, each change to the disk a step, held for ever from the
// one numbered step on (0: none). It prints each step as it takes it, and
// "done GROUP" at the end.
func recoverKillChild(dir string, c recoverKillCase, step int, at int64) error {
	w := bufio.NewWriter(os.Stdout)
	out := &flushWriter{w: w}
	st := &stepper{at: step, out: out, held: make(chan struct{})}
	v, err := volume.Open(filepath.Join(dir, "vol1.img"), 1<<20)
	if err != nil {
		return err
	}
	testUndoSink = func(name string, s history.Sink) history.Sink { return stepSink{Sink: s, name: name, s: st} }
	sec, err := Open(recoverKillConfig(dir, c, v, stepFS{FS: disk.OS, s: st}))
	if err != nil {
		return err
	}
	if _, err := sec.FenceToRecover(); err != nil {
		return err
	}
	got, err := sec.RecoverTo(at)
	if err != nil {
		return err
	}
	if err := sec.Close(); err != nil {
		return err
	}
	fmt.Fprintf(out, "done %d\n", got.Group)
	return nil
}

// flushWriter flushes each line: the parent reads a step before the kill.
type flushWriter struct {
	mu sync.Mutex
	w  *bufio.Writer
}

func (f *flushWriter) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n, err := f.w.Write(p)
	if err == nil {
		err = f.w.Flush()
	}
	return n, err
}

// copyTree copies the directory src to dst, files and directories.
func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		to := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(to, 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(to, b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// runRecoverKillChild runs a child of row c on a copy of src, in a
// directory of its own, held at step (0: never) and kills it -9 there; it
// returns the copy, the steps the child printed, the held one last, and
// whether it got to the end.
func runRecoverKillChild(t *testing.T, exe, src string, c recoverKillCase, step int, at int64) (dir string, steps []string, done bool) {
	t.Helper()
	dir = filepath.Join(t.TempDir(), fmt.Sprintf("step%d", step))
	copyTree(t, src, dir)
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), recoverKillEnv+"="+dir, fmt.Sprintf("%s=%d", recoverKillStepEnv, step),
		fmt.Sprintf("%s=%d", recoverKillAtEnv, at), fmt.Sprintf("%s=%d", recoverKillIntervalEnv, c.interval),
		fmt.Sprintf("%s=%d", recoverKillLimitEnv, c.limit))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		line := sc.Text()
		steps = append(steps, line)
		if strings.HasPrefix(line, "held ") {
			cmd.Process.Kill()
			break
		}
		if strings.HasPrefix(line, "done ") {
			done = true
		}
	}
	for sc.Scan() {
	}
	werr := cmd.Wait()
	if !done && (len(steps) == 0 || !strings.HasPrefix(steps[len(steps)-1], "held ")) {
		t.Fatalf("the child held at step %d neither got there nor to the end: %v: %s\n%s", step, werr, stderr.String(), strings.Join(steps, "\n"))
	}
	return dir, steps, done
}

// runRecoverKillWhole runs row c's child to c.at, not held, on a copy of
// base, and returns the copy and the steps it printed.
func runRecoverKillWhole(t *testing.T, exe, base string, c recoverKillCase) (string, []string) {
	t.Helper()
	dir, steps, done := runRecoverKillChild(t, exe, base, c, 0, c.at)
	if !done {
		t.Fatalf("the child run whole did not finish:\n%s", strings.Join(steps, "\n"))
	}
	return dir, steps
}

// killRecoverAtSteps runs row c's child to c.at on a copy of base killed
// at each step from first to last, and checks each it killed with check,
// in a subtest, given the copy (removed after) and the step it was held
// at.
func killRecoverAtSteps(t *testing.T, exe, base string, c recoverKillCase, first, last int, check func(t *testing.T, dir, held string)) {
	t.Helper()
	for k := first; k <= last; k++ {
		dir, steps, done := runRecoverKillChild(t, exe, base, c, k, c.at)
		if done {
			t.Logf("held at step %d: the child got to the end first", k)
			continue
		}
		held := steps[len(steps)-1]
		if !t.Run(fmt.Sprintf("step %d", k), func(t *testing.T) { check(t, dir, held) }) {
			t.Logf("killed at %s", held)
		}
		os.RemoveAll(dir)
	}
}

// checkAfterKill opens the secondary in dir after a kill, as row c's
// child does, and checks that its volumes are as of the time status
// reports, one of allowed, that the history agrees (it holds no undo past
// that point, and takes the volumes back to each of its points), and that
// recover --at works again: to want's time, then to group 1's. It returns
// the time reached on opening.
func checkAfterKill(t *testing.T, dir string, c recoverKillCase, at, want int64, allowed ...int64) int64 {
	t.Helper()
	v, err := volume.Open(filepath.Join(dir, "vol1.img"), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	sec, err := Open(recoverKillConfig(dir, c, v, nil))
	if err != nil {
		t.Fatalf("open after the kill: %v", err)
	}
	closed := false
	defer func() {
		if !closed {
			sec.Close()
		}
	}()
	st := sec.Stats()
	if !slices.Contains(allowed, st.Time) {
		t.Errorf("open after the kill: at group %d as of %v, none of the times it was at or recovered to (%v)", st.Group, time.Duration(st.Time), allowed)
	}
	if got, w := c.piecesOf(t, v), c.image(st.Time); !bytes.Equal(got, w) {
		t.Errorf("open after the kill: status says group %d as of %v, but the pieces of groups 1..%d hold % x, want % x",
			st.Group, time.Duration(st.Time), recoverKillGroups, got, w)
	}
	d := sec.appliedState()
	if partial := st.Time > d.Time; !partial && sec.hist.Beyond(history.Point{Group: d.Group, Time: d.Time}) {
		t.Errorf("open after the kill: at group %d, the history holds undo of what the volumes do not hold", st.Group)
	}
	if st.HistoryNewest != st.Time || st.HistoryOldestGroup != 1 {
		t.Errorf("open after the kill: at group %d (%v), the history window is group %d to %v", st.Group, time.Duration(st.Time),
			st.HistoryOldestGroup, time.Duration(st.HistoryNewest))
	}
	opened := st.Time
	if _, err := sec.FenceToRecover(); err != nil {
		t.Fatalf("fence after the kill: %v", err)
	}
	first := int64(time.Millisecond)
	for _, to := range [][2]int64{{at, want}, {first, first}} {
		got, err := sec.RecoverTo(to[0])
		if err != nil {
			t.Fatalf("recover --at %v again after the kill: %v", time.Duration(to[0]), err)
		}
		if got.Time != to[1] {
			t.Errorf("recover --at %v again after the kill: reached group %d as of %v, want %v", time.Duration(to[0]), got.Group,
				time.Duration(got.Time), time.Duration(to[1]))
		}
		if r, w := c.piecesOf(t, v), c.image(got.Time); !bytes.Equal(r, w) {
			t.Errorf("recover --at %v again after the kill: reports group %d as of %v, pieces % x, want % x", time.Duration(to[0]),
				got.Group, time.Duration(got.Time), r, w)
		}
	}
	closed = true
	if err := sec.Close(); err != nil {
		t.Fatal(err)
	}
	sec, err = Open(recoverKillConfig(dir, c, v, nil))
	if err != nil {
		t.Fatalf("open after recovering again: %v", err)
	}
	defer sec.Close()
	if st := sec.Stats(); st.Time != first || !bytes.Equal(c.piecesOf(t, v), c.image(first)) {
		t.Errorf("open after recovering again to group 1: at group %d as of %v, pieces % x", st.Group, time.Duration(st.Time), c.piecesOf(t, v))
	}
	return opened
}

// recoverKillBase makes, in a new directory, the secondary of row c that
// its children recover: groups 1..n sent, applied through the Gate's
// limit at gateAt for a coupled session, the rest journaled.
func recoverKillBase(t *testing.T, c recoverKillCase) string {
	t.Helper()
	base := t.TempDir()
	fillVolume(t, base)
	var gate Gate
	if c.gateAt != 0 {
		gate = newTestGate(c.gateAt)
	}
	r := openGateRigConfig(t, base, gate, func(cfg *Config) { cfg.History = recoverKillConfig(base, c, nil, nil).History })
	c.sendGroups(t, r)
	waitGate(t, "every group journaled", func() bool { return r.sec.Stats().JournaledGroup == recoverKillGroups })
	applied := uint64(recoverKillGroups)
	if c.gateAt != 0 {
		applied = uint64(c.gateAt / int64(time.Millisecond))
	}
	waitGate(t, "the groups through the limit applied", func() bool { return r.sec.Stats().Group == applied })
	r.close(t)
	return base
}

// recoverKillCases are TestRecoverAtKilledAtEachStep's rows.
var recoverKillCases = func() []recoverKillCase {
	ms := int64(time.Millisecond)
	quarter := recoverKillCase{pieces: 4, interval: 100 * time.Microsecond}
	// The Gate at the stamp of group 4's second piece: the volumes hold
	// groups 1..3 and the first half of group 4 as the child opens.
	coupled := quarter
	coupled.gateAt, coupled.limit = 3*ms, quarter.pieceTime(4, 1)
	rows := []recoverKillCase{
		{name: "whole groups", pieces: 1, at: 2 * ms, want: 2 * ms},
		// A time inside group 3's steps: the volumes are left holding
		// groups 1, 2 and the first two pieces of group 3.
		{name: "a point inside a group", pieces: 4, interval: quarter.interval, at: 2*ms + ms/2, want: quarter.pieceTime(3, 1)},
		// A point of the part of group 4 applied through the limit: its
		// second piece undone, its first kept.
		{name: "coupled, a point of the part applied", pieces: 4, interval: quarter.interval, gateAt: coupled.gateAt, limit: coupled.limit,
			at: quarter.pieceTime(4, 0), want: quarter.pieceTime(4, 0)},
		// Between group 3 and the part applied: that part undone, the
		// state file naming group 3 still.
		{name: "coupled, to the group before the part", pieces: 4, interval: quarter.interval, gateAt: coupled.gateAt, limit: coupled.limit,
			at: 3*ms + ms/20, want: 3 * ms},
		// Before the part applied: that part undone, and group 3's last
		// pieces.
		{name: "coupled, before the part applied", pieces: 4, interval: quarter.interval, gateAt: coupled.gateAt, limit: coupled.limit,
			at: 2*ms + ms/2, want: quarter.pieceTime(3, 1)},
	}
	return rows
}()

// TestRecoverAtKilledAtEachStep kills -9 a process doing what recover
// --at does (open, fence, RecoverTo, close) at each of its changes to the
// disk in turn: each write, fsync, creation, rename and removal of the
// journal, the state file, the identity and the history, and each write
// and flush of the undo to the volume, the step not taken. Each time, the
// secondary opened again must be at one point, the one its status
// reports, with no undo held past it, and recover --at run again must
// reach the point asked for, and then group 1, with the volumes at each.
// Its rows take the volumes back to whole groups, to a point inside a
// group (its steps, HistoryConfig.Interval), and, for a coupled session
// whose Gate's limit falls inside a group (the volumes hold part of it,
// which the child's open applies), to a point of that part and to one
// before it.
func TestRecoverAtKilledAtEachStep(t *testing.T) {
	if testing.Short() {
		t.Skip("kills a child process at each step")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range recoverKillCases {
		t.Run(c.name, func(t *testing.T) {
			base := recoverKillBase(t, c)
			// Opened after a kill, the volumes are where the child
			// began, at the point it recovers to, or, for a coupled
			// session killed while it undid the part of the next group,
			// at the group before that part.
			allowed := []int64{c.want, int64(recoverKillGroups) * int64(time.Millisecond)}
			if c.limit != 0 {
				allowed = []int64{c.want, c.limit, c.gateAt}
			}
			whole, steps := runRecoverKillWhole(t, exe, base, c)
			total := len(steps) - 1
			t.Logf("recover --at, run whole, takes %d steps:\n%s", total, strings.Join(steps, "\n"))
			checkAfterKill(t, whole, c, c.at, c.want, c.want)

			reached := map[time.Duration]int{}
			killRecoverAtSteps(t, exe, base, c, 1, total, func(t *testing.T, dir, _ string) {
				reached[time.Duration(checkAfterKill(t, dir, c, c.at, c.want, allowed...))]++
			})
			t.Logf("opened after the kills at: %v (time: kills)", reached)
		})
	}
}

// TestRecoverAtKilledAtEachStepOfTheRunAgain kills the recover --at of
// TestRecoverAtKilledAtEachStep once its state file names its point, at
// each step from there to the end (the volumes part-way back, the undo
// after the point not yet voided), and then kills, at each of its steps,
// a recover --at to an earlier time run again, which first finishes the
// one killed as it opens. Each time, the secondary opened again must be
// at one group, the one its status reports, and recover --at run once
// more must reach the group asked for.
func TestRecoverAtKilledAtEachStepOfTheRunAgain(t *testing.T) {
	if testing.Short() {
		t.Skip("kills child processes at each step")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ms := int64(time.Millisecond)
	c := recoverKillCases[0]
	base := recoverKillBase(t, c)

	_, steps, _ := runRecoverKillChild(t, exe, base, c, 0, 3*ms)
	first := 0
	for k, s := range steps {
		if strings.Contains(s, "rename ") && strings.HasSuffix(s, "state.json") {
			first = k + 2 // the fsync of the directory after it
		}
	}
	if first == 0 {
		t.Fatalf("no rename of the state file among the steps:\n%s", strings.Join(steps, "\n"))
	}
	kills := 0
	for k := first; k < len(steps); k++ {
		killed, _, done := runRecoverKillChild(t, exe, base, c, k, 3*ms)
		if done {
			continue
		}
		again, steps2, _ := runRecoverKillChild(t, exe, killed, c, 0, ms)
		for m := 1; m < len(steps2); m++ {
			dir, steps3, done := runRecoverKillChild(t, exe, killed, c, m, ms)
			if done {
				continue
			}
			kills++
			ok := t.Run(fmt.Sprintf("first killed at step %d, then at step %d", k, m), func(t *testing.T) {
				checkAfterKill(t, dir, c, ms, ms, 3*ms, ms, recoverKillGroups*ms)
			})
			if !ok {
				t.Logf("killed first at %s, then at %s", steps[k-1], steps3[len(steps3)-1])
			}
			os.RemoveAll(dir)
		}
		os.RemoveAll(again)
		os.RemoveAll(killed)
	}
	t.Logf("%d kills of a run again", kills)
}
