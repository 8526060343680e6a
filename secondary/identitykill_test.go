package secondary

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"duplex/disk"
	"duplex/recordset"
	"duplex/transport"
)

// killStepFS is the real disk, which, while armed, copies the directory
// root before each operation that changes a file or a directory: each copy
// is what a kill -9 just before that operation leaves (whatever was written
// before it is in the page cache, and a restart reads it).
type killStepFS struct {
	disk.FS
	root, into string
	t          *testing.T

	armed atomic.Bool
	acked atomic.Uint64 // the group the primary saw acknowledged so far

	mu    sync.Mutex
	kills []killPoint
}

// killPoint is a copy killStepFS took: where, before what, and what the
// primary had seen acknowledged then.
type killPoint struct {
	dir, before string
	acked       uint64
}

func (k *killStepFS) step(what, name string) {
	if !k.armed.Load() {
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	dir := filepath.Join(k.into, fmt.Sprint(len(k.kills)))
	if err := copyKilledTree(k.root, dir); err != nil {
		k.t.Errorf("copying %s before %s %s: %v", k.root, what, name, err)
		return
	}
	rel, _ := filepath.Rel(k.root, name)
	k.kills = append(k.kills, killPoint{dir: dir, before: what + " " + rel, acked: k.acked.Load()})
}

func (k *killStepFS) OpenFile(name string, flag int, perm fs.FileMode) (disk.File, error) {
	if flag&(os.O_CREATE|os.O_TRUNC) != 0 {
		k.step("open", name)
	}
	f, err := k.FS.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return &killStepFile{File: f, fs: k}, nil
}

func (k *killStepFS) CreateTemp(dir, pattern string) (disk.File, error) {
	k.step("create", filepath.Join(dir, pattern))
	f, err := k.FS.CreateTemp(dir, pattern)
	if err != nil {
		return nil, err
	}
	return &killStepFile{File: f, fs: k}, nil
}

func (k *killStepFS) Remove(name string) error {
	k.step("remove", name)
	return k.FS.Remove(name)
}

func (k *killStepFS) Rename(oldpath, newpath string) error {
	k.step("rename", newpath)
	return k.FS.Rename(oldpath, newpath)
}

func (k *killStepFS) SyncDir(dir string) error {
	k.step("fsync dir", dir)
	return k.FS.SyncDir(dir)
}

// killStepFile offers no descriptor (SyscallConn): every write goes
// through it, and is a step.
type killStepFile struct {
	disk.File
	fs *killStepFS
}

func (f *killStepFile) Write(p []byte) (int, error) {
	f.fs.step("write", f.Name())
	return f.File.Write(p)
}

func (f *killStepFile) WriteAt(p []byte, off int64) (int, error) {
	f.fs.step("write", f.Name())
	return f.File.WriteAt(p, off)
}

func (f *killStepFile) Sync() error {
	f.fs.step("fsync", f.Name())
	return f.File.Sync()
}

func (f *killStepFile) Datasync() error {
	f.fs.step("fsync", f.Name())
	return disk.Datasync(f.File)
}

func (f *killStepFile) Truncate(size int64) error {
	f.fs.step("truncate", f.Name())
	return f.File.Truncate(size)
}

// copyKilledTree copies the regular files under src to dst, leaving holes where
// src reads zeros (journal segments are sized ahead).
func copyKilledTree(src, dst string) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // a temporary file renamed or removed meanwhile
			}
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		to := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(to, 0o755)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		return copyKilledFile(path, to)
	})
}

func copyKilledFile(from, to string) error {
	in, err := os.Open(from)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(to)
	if err != nil {
		return err
	}
	buf := make([]byte, 64<<10)
	var off int64
	for {
		n, rerr := io.ReadFull(in, buf)
		if n > 0 && !zeroed(buf[:n]) {
			if _, err := out.WriteAt(buf[:n], off); err != nil {
				out.Close()
				return err
			}
		}
		off += int64(n)
		if rerr != nil {
			break
		}
	}
	if err := out.Truncate(off); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

func zeroed(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// TestKilledAtEachStepOfANewPrimaryProcesssFirstGroup kills the secondary
// (a copy of its directory, as kill -9 leaves it) before each disk
// operation from the arrival of a new primary process's first group, which
// holds part of a record set, to its acknowledgement and after: the
// identity naming the process pending (its temporary file's create, write
// and fsync, the rename, the directory's fsync), the journal's write and
// fsync, and the identity naming it. Restarted from each, the secondary
// must hold every group the primary saw acknowledged; its identity must
// name the process exactly when the journal holds its group; and the
// process's resend of what is not journaled whole must be taken, never
// refused, leaving both writes on the volume.
func TestKilledAtEachStepOfANewPrimaryProcesssFirstGroup(t *testing.T) {
	dir := t.TempDir()
	kfs := &killStepFS{FS: disk.OS, root: filepath.Join(dir, "site"), into: filepath.Join(dir, "kills"), t: t}
	sizes := map[string]int64{"a": 1 << 20}
	r := &rig{t: t, dir: kfs.root, sizes: sizes, subs: []string{"ss1", "ss2"}}
	r.edit = func(c *Config) { c.FS = kfs }
	if err := os.MkdirAll(r.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	r.open()
	conn, typ, _ := r.dial(r.hello()) // process 7, new to the secondary
	if typ != transport.TypeWelcome {
		t.Fatalf("frame type %d, want a welcome", typ)
	}
	first, second := partlyJournaledUpdates()
	first.Data, second.Data = bytes.Repeat([]byte{0xa1}, 4096), bytes.Repeat([]byte{0xa2}, 4096)
	ss1 := subsystemSet("ss1", 1, 1_000, 4_000, first, second)
	ss2 := subsystemSet("ss2", 1, 0, 2_000) // group 1 ends at 2000: between the two
	ss2next := subsystemSet("ss2", 2, 0, 5_000)
	kfs.armed.Store(true)
	sendRecordSet(t, conn, ss1)
	sendRecordSet(t, conn, ss2)
	reason, acked := answers(t, conn, 0)
	kfs.acked.Store(acked)
	// Kill points past the acknowledgement too: the applier's and the
	// checkpointer's steps after it.
	time.Sleep(300 * time.Millisecond)
	kfs.armed.Store(false)
	if acked != 1 {
		t.Fatalf("acknowledged through group %d (refusal %q), want group 1", acked, reason)
	}
	conn.Close()
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	kfs.mu.Lock()
	kills := kfs.kills
	kfs.mu.Unlock()
	if len(kills) < 11 {
		t.Errorf("%d kill points, want at least the 5 steps of each identity write and the journal's write and fsync", len(kills))
	}

	for i, k := range kills {
		t.Run(fmt.Sprintf("%02d before %s", i, k.before), func(t *testing.T) {
			r := &rig{t: t, dir: k.dir, sizes: sizes, subs: []string{"ss1", "ss2"}}
			r.open()
			defer r.close()
			path := IdentityPath(filepath.Join(k.dir, "state.json"))
			id, err := readIdentity(disk.OS, path, WayForward)
			if err != nil {
				t.Fatal(err)
			}
			conn, typ, body := r.dial(r.hello()) // process 7 again
			if typ != transport.TypeWelcome {
				reason, _ := refusalReason(body)
				t.Fatalf("process 7 refused after the kill (%q)", reason)
			}
			welcome, err := transport.DecodePosition(body)
			if err != nil {
				t.Fatal(err)
			}
			if welcome.Group < k.acked {
				t.Fatalf("restarted at group %d: group %d, acknowledged before the kill, is lost", welcome.Group, k.acked)
			}
			want := uint64(0)
			if welcome.Group >= 1 {
				want = 7
			}
			if id.Instance != want || id.PendingInstance != 0 {
				t.Fatalf("the journal ends at group %d, yet the restarted secondary's identity names process %d (pending %d from group %d), want %d",
					welcome.Group, id.Instance, id.PendingInstance, id.PendingGroup, want)
			}
			for _, rs := range []*recordsetPair{{"ss1", ss1}, {"ss2", ss2}, {"ss2", ss2next}} {
				if rs.set.Seq > welcome.Through[rs.sub] {
					sendRecordSet(t, conn, rs.set)
				}
			}
			if reason, acked := answers(t, conn, welcome.Group); reason != "" || acked <= welcome.Group {
				t.Fatalf("process 7 resent what was not journaled whole (welcome at group %d, through %v; identity %+v): refusal %q, "+
					"acknowledged through group %d", welcome.Group, welcome.Through, id, reason, acked)
			}
			got := make([]byte, 8192)
			want2 := append(bytes.Clone(first.Data), second.Data...)
			for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
				if err := r.sec.ReadAt("a", got, 0); err == nil && bytes.Equal(got, want2) {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("volume a holds %s, want both writes (%#x, %#x)", describe(got), first.Data[0], second.Data[0])
				}
			}
		})
	}
}

type recordsetPair struct {
	sub string
	set *recordset.RecordSet
}
