package history

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"

	"duplex/disk"
)

// removals records, of the removals a reset makes, which a crash may
// still take back: those no fsync of the directory has covered since.
type removals struct {
	disk.FS
	dir  string
	done bool     // the removals are over: the journal is opened again
	ops  []string // a removed file's name, or "" for an fsync of dir
}

func (r *removals) Remove(name string) error {
	if !r.done && filepath.Dir(name) == r.dir {
		r.ops = append(r.ops, filepath.Base(name))
	}
	return r.FS.Remove(name)
}

func (r *removals) SyncDir(dir string) error {
	if !r.done && dir == r.dir && len(r.ops) > 0 {
		r.ops = append(r.ops, "")
	}
	return r.FS.SyncDir(dir)
}

func (r *removals) OpenFile(name string, flag int, perm os.FileMode) (disk.File, error) {
	if len(r.ops) > 0 {
		r.done = true
	}
	return r.FS.OpenFile(name, flag, perm)
}

// A crash in the middle of a reset (Gap, Reset) leaves the directory with
// any of the removals made since its last fsync taken back. Every such
// state must open, and hold the undo of the newest groups only, as Trim
// leaves it: a history missing a segment in the middle fails to open
// (the journal refuses a hole) or, read past the hole, would undo some
// groups and not the ones between them.
func TestACrashDuringAResetLeavesTheNewestGroups(t *testing.T) {
	for _, name := range []string{"Gap", "Reset"} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			rec := &removals{FS: disk.OS, dir: dir}
			// Segments of 1 MiB, each holding two groups' undo of 512 KiB.
			l, err := Open(dir, Options{Window: time.Hour, MaxBytes: 16 << 20, FS: rec})
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			vol := &mem{bytes.Repeat([]byte{7}, 4<<20)}
			srcs := map[string]Source{"v": vol}
			const groups = 7
			for g := uint64(1); g <= groups; g++ {
				if err := l.Capture(Header{Group: g, Time: int64(g)}, []Range{{"v", g * 512 << 10, 512 << 10}}, srcs); err != nil {
					t.Fatal(err)
				}
			}
			before := t.TempDir()
			copyDir(t, dir, before)
			rec.ops, rec.done = nil, false
			if name == "Gap" {
				err = l.Gap(Header{Group: groups + 1, Time: groups + 1})
			} else {
				err = l.Reset()
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(rec.ops) == 0 {
				t.Fatal("the reset removed nothing")
			}
			synced := 0 // rec.ops[:synced] an fsync of the directory covered
			for i, op := range rec.ops {
				if op == "" {
					synced = i + 1
					continue
				}
				durable, pending := nonEmpty(rec.ops[:synced]), nonEmpty(rec.ops[synced:i+1])
				// Every subset of the pending removals may have reached the disk.
				for mask := 0; mask < 1<<len(pending); mask++ {
					gone := map[string]bool{}
					for _, n := range durable {
						gone[n] = true
					}
					for k, n := range pending {
						if mask&(1<<k) != 0 {
							gone[n] = true
						}
					}
					crashed := t.TempDir()
					copyDir(t, before, crashed)
					for n := range gone {
						if err := os.Remove(filepath.Join(crashed, n)); err != nil {
							t.Fatal(err)
						}
					}
					checkNewest(t, crashed, groups, gone)
				}
			}
		})
	}
}

func nonEmpty(ops []string) []string {
	var out []string
	for _, op := range ops {
		if op != "" {
			out = append(out, op)
		}
	}
	return out
}

// checkNewest opens the history in dir and checks that the groups it holds
// the undo of are the newest of 1 to groups, with none missing between.
func checkNewest(t *testing.T, dir string, groups uint64, gone map[string]bool) {
	t.Helper()
	l, err := Open(dir, Options{Window: time.Hour, MaxBytes: 16 << 20})
	if err != nil {
		t.Errorf("with %v removed: %v", gone, err)
		return
	}
	defer l.Close()
	held := false
	for g := uint64(1); g <= groups; g++ {
		switch has := l.Has(g); {
		case has:
			held = true
		case held:
			t.Errorf("with %v removed: the history holds the undo of a group before %d and not of %d", gone, g, g)
		}
	}
}

func copyDir(t *testing.T, from, to string) {
	t.Helper()
	des, err := os.ReadDir(from)
	if err != nil {
		t.Fatal(err)
	}
	for _, de := range des {
		if de.Name() == "LOCK" {
			continue
		}
		b, err := os.ReadFile(filepath.Join(from, de.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(to, de.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
