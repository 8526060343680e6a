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
// until it is killed at the step recoverKillStepEnv names.
const (
	recoverKillEnv     = "DUPLEX_SECONDARY_RECOVER_KILL_DIR"
	recoverKillStepEnv = "DUPLEX_SECONDARY_RECOVER_KILL_STEP"
	recoverKillAtEnv   = "DUPLEX_SECONDARY_RECOVER_KILL_AT"
)

func TestMain(m *testing.M) {
	if dir := os.Getenv(recoverKillEnv); dir != "" {
		step, _ := strconv.Atoi(os.Getenv(recoverKillStepEnv))
		at, _ := strconv.ParseInt(os.Getenv(recoverKillAtEnv), 10, 64)
		if err := recoverKillChild(dir, step, at); err != nil {
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

// recoverKillConfig is the Config of the secondary in dir that the kill
// test's processes open, stopped, as recover --at does.
func recoverKillConfig(dir string, v *volume.Volume, fsys disk.FS) Config {
	return Config{Session: "s", Subsystems: []string{"ss1"}, Volumes: map[string]*volume.Volume{"vol1": v},
		JournalDir: filepath.Join(dir, "journal"), StatePath: filepath.Join(dir, "state.json"), History: historyOf(dir), FS: fsys,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
}

// recoverKillChild does what recover --at does to the secondary in dir,
// for time at: it opens it, fences it, takes it back and closes it, each
// change to the disk a step, held for ever from the one numbered step on
// (0: none). It prints each step as it takes it, and "done GROUP" at the
// end.
func recoverKillChild(dir string, step int, at int64) error {
	w := bufio.NewWriter(os.Stdout)
	out := &flushWriter{w: w}
	st := &stepper{at: step, out: out, held: make(chan struct{})}
	v, err := volume.Open(filepath.Join(dir, "vol1.img"), 1<<20)
	if err != nil {
		return err
	}
	testUndoSink = func(name string, s history.Sink) history.Sink { return stepSink{Sink: s, name: name, s: st} }
	sec, err := Open(recoverKillConfig(dir, v, stepFS{FS: disk.OS, s: st}))
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

// runRecoverKillChild runs a child on dir held at step (0: never) and
// kills it -9 there; it returns the steps the child printed, the held one
// last, and whether it got to the end.
func runRecoverKillChild(t *testing.T, exe, dir string, step int, at int64) (steps []string, done bool) {
	t.Helper()
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), recoverKillEnv+"="+dir, fmt.Sprintf("%s=%d", recoverKillStepEnv, step),
		fmt.Sprintf("%s=%d", recoverKillAtEnv, at))
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
	return steps, done
}

// checkAfterKill opens the secondary in dir after a kill, and checks that
// its volumes are at the group status reports, one of allowed, that the
// history agrees (it holds no undo past that group, and takes the volumes
// back to each of its points), and that recover --at works again: to
// want's time, then to group 1's. It returns the group reached on
// opening.
func checkAfterKill(t *testing.T, dir string, n int, want uint64, allowed ...uint64) uint64 {
	t.Helper()
	v, err := volume.Open(filepath.Join(dir, "vol1.img"), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	sec, err := Open(recoverKillConfig(dir, v, nil))
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
	if !slices.Contains(allowed, st.Group) {
		t.Errorf("open after the kill: at group %d, none of the groups it was at or recovered to (%v)", st.Group, allowed)
	}
	if got, w := regions(t, v, n), groupRegions(st.Group, n); !bytes.Equal(got, w) {
		t.Errorf("open after the kill: status says group %d, but the regions of groups 1..%d hold % x, want % x", st.Group, n, got, w)
	}
	if sec.hist.Beyond(history.Point{Group: st.Group, Time: st.Time}) {
		t.Errorf("open after the kill: at group %d, the history holds undo of what the volumes do not hold", st.Group)
	}
	if st.HistoryNewest != st.Time || st.HistoryOldestGroup != 1 {
		t.Errorf("open after the kill: at group %d (%v), the history window is group %d to %v", st.Group, time.Duration(st.Time),
			st.HistoryOldestGroup, time.Duration(st.HistoryNewest))
	}
	opened := st.Group
	if _, err := sec.FenceToRecover(); err != nil {
		t.Fatalf("fence after the kill: %v", err)
	}
	for _, g := range []uint64{want, 1} {
		got, err := sec.RecoverTo(int64(g) * int64(time.Millisecond))
		if err != nil {
			t.Fatalf("recover --at group %d's time again after the kill: %v", g, err)
		}
		if got.Group != g {
			t.Errorf("recover --at group %d's time again after the kill: reached group %d", g, got.Group)
		}
		if r, w := regions(t, v, n), groupRegions(got.Group, n); !bytes.Equal(r, w) {
			t.Errorf("recover --at group %d's time again after the kill: reports group %d, regions % x, want % x", g, got.Group, r, w)
		}
	}
	closed = true
	if err := sec.Close(); err != nil {
		t.Fatal(err)
	}
	sec, err = Open(recoverKillConfig(dir, v, nil))
	if err != nil {
		t.Fatalf("open after recovering again: %v", err)
	}
	defer sec.Close()
	if st := sec.Stats(); st.Group != 1 || !bytes.Equal(regions(t, v, n), groupRegions(1, n)) {
		t.Errorf("open after recovering again to group 1: at group %d, regions % x", st.Group, regions(t, v, n))
	}
	return opened
}

// TestRecoverAtKilledAtEachStep kills -9 a process doing what recover
// --at does (open, fence, RecoverTo, close) at each of its changes to the
// disk in turn: each write, fsync, creation, rename and removal of the
// journal, the state file, the identity and the history, and each write
// and flush of the undo to the volume, the step not taken. Each time, the
// secondary opened again must be at one group, the one its status reports,
// with no undo held past it, and recover --at run again must reach the
// group asked for, and then group 1, with the volumes at each.
func TestRecoverAtKilledAtEachStep(t *testing.T) {
	if testing.Short() {
		t.Skip("kills a child process at each step")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	const n = 5
	const want = 2
	at := int64(want) * int64(time.Millisecond)
	base := t.TempDir()
	fillVolume(t, base)
	r := openGateRigWith(t, base, nil, historyOf(base))
	for k := uint64(1); k <= n; k++ {
		r.sendSet(t, k, []recordset.Update{{Volume: "vol1", Kind: recordset.KindWrite, Offset: k * regionBytes, Length: regionBytes,
			Data: bytes.Repeat([]byte{byte(k)}, regionBytes)}})
	}
	waitGate(t, "every group applied", func() bool { return r.sec.Stats().Group == n })
	r.close(t)

	whole := filepath.Join(t.TempDir(), "whole")
	copyTree(t, base, whole)
	steps, done := runRecoverKillChild(t, exe, whole, 0, at)
	if !done {
		t.Fatalf("the child run whole did not finish:\n%s", strings.Join(steps, "\n"))
	}
	total := len(steps) - 1
	t.Logf("recover --at, run whole, takes %d steps:\n%s", total, strings.Join(steps, "\n"))
	checkAfterKill(t, whole, n, want, want)

	reached := map[uint64]int{}
	for k := 1; k <= total; k++ {
		dir := filepath.Join(t.TempDir(), fmt.Sprintf("step%d", k))
		copyTree(t, base, dir)
		steps, done := runRecoverKillChild(t, exe, dir, k, at)
		if done {
			t.Logf("held at step %d: the child got to the end first", k)
			continue
		}
		held := steps[len(steps)-1]
		ok := t.Run(fmt.Sprintf("step %d", k), func(t *testing.T) {
			reached[checkAfterKill(t, dir, n, want, want, n)]++
		})
		if !ok {
			t.Logf("killed at %s", held)
		}
		os.RemoveAll(dir)
	}
	t.Logf("opened after the kills at: %v (group: kills)", reached)
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
	const n = 5
	ms := int64(time.Millisecond)
	base := t.TempDir()
	fillVolume(t, base)
	r := openGateRigWith(t, base, nil, historyOf(base))
	for k := uint64(1); k <= n; k++ {
		r.sendSet(t, k, []recordset.Update{{Volume: "vol1", Kind: recordset.KindWrite, Offset: k * regionBytes, Length: regionBytes,
			Data: bytes.Repeat([]byte{byte(k)}, regionBytes)}})
	}
	waitGate(t, "every group applied", func() bool { return r.sec.Stats().Group == n })
	r.close(t)

	whole := filepath.Join(t.TempDir(), "whole")
	copyTree(t, base, whole)
	steps, _ := runRecoverKillChild(t, exe, whole, 0, 3*ms)
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
		killed := filepath.Join(t.TempDir(), "killed")
		copyTree(t, base, killed)
		if _, done := runRecoverKillChild(t, exe, killed, k, 3*ms); done {
			continue
		}
		again := filepath.Join(t.TempDir(), "again")
		copyTree(t, killed, again)
		steps2, _ := runRecoverKillChild(t, exe, again, 0, ms)
		for m := 1; m < len(steps2); m++ {
			dir := filepath.Join(t.TempDir(), "dir")
			copyTree(t, killed, dir)
			steps3, done := runRecoverKillChild(t, exe, dir, m, ms)
			if done {
				continue
			}
			kills++
			ok := t.Run(fmt.Sprintf("first killed at step %d, then at step %d", k, m), func(t *testing.T) {
				checkAfterKill(t, dir, n, 1, 3, 1, n)
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
