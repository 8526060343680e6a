package disk

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestRemoveLeftTempsRemovesOnlyTheAtomicWritersFiles: the temporary files
// a write cut short by a kill -9 leaves (made here by a write whose rename
// fails, its cleanup failing too) are removed, for the targets asked
// about; every other file, look-alikes included, stays.
func TestRemoveLeftTempsRemovesOnlyTheAtomicWritersFiles(t *testing.T) {
	dir := t.TempDir()
	in := NewInjector(nil)
	in.Inject(Fault{Op: OpRename, Under: dir, Err: EIO})
	in.Inject(Fault{Op: OpRemove, Under: dir, Err: EIO})
	for _, name := range []string{"pairs.json", "vol1.bitmap", "other.data"} {
		if err := WriteFileAtomic(in, filepath.Join(dir, name), []byte("new")); err == nil {
			t.Fatalf("%s: the rename did not fail", name)
		}
	}
	in.Clear()
	left, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var made []string
	for _, e := range left {
		made = append(made, e.Name())
	}
	if len(made) != 3 {
		t.Fatalf("the cut-short writes left %v, want 3 temporary files", made)
	}
	keep := []string{"pairs.json", "pairs.json.tmp", "pairs.json.tmpx", "pairs.json.tmp12a", "pairs.json.tmp12345678901",
		"pairs.json.tmp4294967296", "pairs.json.tmp1.bak", ".tmp123", "notes.tmp123", "LOCK"}
	for _, name := range keep {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("theirs"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "state.json.tmp7"), 0o755); err != nil {
		t.Fatal(err)
	}
	keep = append(keep, "state.json.tmp7")
	wanted := func(target string) bool {
		return strings.HasSuffix(target, ".json") || strings.HasSuffix(target, ".bitmap")
	}
	removed, err := RemoveLeftTemps(OS, dir, wanted)
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, name := range made {
		if !strings.HasPrefix(name, "other.data") {
			want = append(want, name)
		}
	}
	slices.Sort(removed)
	if !slices.Equal(removed, want) {
		t.Errorf("removed %v, want %v", removed, want)
	}
	for _, name := range append(keep, made...) {
		_, err := os.Stat(filepath.Join(dir, name))
		if gone := errors.Is(err, os.ErrNotExist); gone != slices.Contains(want, name) {
			t.Errorf("%s: gone %v (%v), want gone %v", name, gone, err, !gone)
		}
	}
	// Nothing left: nothing removed, no error; a missing directory neither.
	if removed, err := RemoveLeftTemps(OS, dir, wanted); err != nil || len(removed) != 0 {
		t.Errorf("again: removed %v, %v", removed, err)
	}
	if removed, err := RemoveLeftTemps(OS, filepath.Join(dir, "none"), wanted); err != nil || len(removed) != 0 {
		t.Errorf("a missing directory: removed %v, %v", removed, err)
	}
}
