package secondary

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"duplex/recordset"
	"duplex/transport"
)

// copyFiles copies the regular files under src to dst, keeping the tree:
// the disk of a secondary killed at that moment (its journal and state
// file are written through, not buffered by the process).
func copyFiles(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.Walk(src, func(path string, info os.FileInfo, err error) error {
		if errors.Is(err, fs.ErrNotExist) && path != src {
			// A checkpoint's temporary file, renamed over the state file
			// after the directory was read: the copy is of the disk before
			// the rename, as a kill -9 then leaves it.
			return nil
		}
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		to := filepath.Join(dst, rel)
		if info.IsDir() {
			return os.MkdirAll(to, 0o755)
		}
		if !info.Mode().IsRegular() {
			return nil
		}
		in, err := os.Open(path)
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
		if _, err := io.Copy(out, in); err != nil {
			out.Close()
			return err
		}
		return out.Close()
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestForgottenVolumeStaysForgottenAfterAKillBeforeItsGroupsApply: a
// volume forgotten while groups that still carry its pair's markers wait
// journaled for the volumes is not brought back by their replay after a
// kill: the state file says it was forgotten, and the markers the stream
// sent before are the old pair's, not the new one's. The volume's first
// copy is under way (a consistent copy the secondary's config still has
// would refuse the primary instead): replayed, its marker would name a
// first copy the new pair never began, whose end would make the image
// the primary's.
func TestForgottenVolumeStaysForgottenAfterAKillBeforeItsGroupsApply(t *testing.T) {
	r := newRig(t, map[string]int64{"vol1": 1 << 20, "vol2": 1 << 20})
	gate := make(chan struct{})
	opened := false
	open := func() {
		if !opened {
			opened = true
			close(gate)
		}
	}
	t.Cleanup(open)
	r.sec.targets["vol1"] = gatedTarget{Target: r.sec.targets["vol1"], gate: gate}
	conn, typ, _ := r.dial(r.hello())
	if typ != transport.TypeWelcome {
		t.Fatalf("frame type %d, want a welcome", typ)
	}
	conn = conn.(settledConn).Conn // the applier waits at the gate
	sendRecordSet(t, conn, writeSet(1, 10_000, mark("vol1", recordset.StateFirstCopy), mark("vol2", recordset.StateFirstCopy), write("vol1", 0), write("vol2", 0)))
	sendRecordSet(t, conn, writeSet(2, 20_000, mark("vol1", recordset.StateCopyEnd), write("vol2", 4096)))
	if reason, acked := answers(t, conn, 1); acked < 2 {
		t.Fatalf("acknowledged through group %d, want 2 at least (refusal %q)", acked, reason)
	}

	// A primary links without vol2: the secondary forgets it, its state
	// file written before the welcome, while groups 1 and 2 still wait.
	h := r.hello()
	h.Instance = 8
	h.Volumes = []transport.VolumeInfo{{Name: "vol1", Size: 1 << 20}}
	if _, typ, _ := r.dial(h); typ != transport.TypeWelcome {
		t.Fatalf("frame type %d, want a welcome", typ)
	}
	if v := r.sec.Volume("vol2"); v.Consistent || !v.NoWholeCopy {
		t.Fatalf("forgotten, vol2 is reported %+v, want no whole copy, not consistent", v)
	}

	// Killed now: the disk as it is, opened again.
	killed := t.TempDir()
	copyFiles(t, r.dir, killed)
	r2 := &rig{t: t, dir: killed, sizes: map[string]int64{"vol1": 1 << 20, "vol2": 1 << 20}, subs: r.subs}
	r2.open()
	t.Cleanup(r2.close)
	if v := r2.sec.Volume("vol2"); v.Consistent || !v.NoWholeCopy {
		t.Errorf("after the kill, the groups journaled before the forget replayed, vol2 is reported %+v, want no whole copy, not consistent", v)
	}
	if v := r2.sec.Volume("vol1"); !v.Consistent {
		t.Errorf("after the kill, vol1 is reported %+v, want consistent", v)
	}
}
