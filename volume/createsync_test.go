package volume

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
)

// recordSyncs records the fsyncs that creating a volume issues, in order: a
// file's as "file PATH SIZE", a directory's as "dir PATH".
func recordSyncs(t *testing.T) *[]string {
	t.Helper()
	var got []string
	file, dir := syncFile, syncDir
	syncFile = func(f *os.File) error {
		st, err := f.Stat()
		if err != nil {
			return err
		}
		got = append(got, "file "+f.Name()+" "+strconv.FormatInt(st.Size(), 10))
		return file(f)
	}
	syncDir = func(d string) error {
		got = append(got, "dir "+d)
		return dir(d)
	}
	t.Cleanup(func() { syncFile, syncDir = file, dir })
	return &got
}

// A created image, its size and every directory created for it are
// durable when Open returns: the session's configuration and state say the
// volume exists, and a crash must not take it back or leave it short.
// The file is synced at its size before its name is made durable, then
// each new directory's entry, innermost first.
func TestCreateMakesTheImageAndItsDirectoriesDurable(t *testing.T) {
	got := recordSyncs(t)
	root := t.TempDir()
	path := filepath.Join(root, "a", "b", "v.img")
	v, err := Open(path, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	v.Close()
	want := []string{
		"file " + path + " 1048576",
		"dir " + filepath.Join(root, "a", "b"),
		"dir " + filepath.Join(root, "a"),
		"dir " + root,
	}
	if !slices.Equal(*got, want) {
		t.Errorf("fsyncs %q, want %q", *got, want)
	}
}

// An empty image that Open sets to the configured size has that size
// durably.
func TestSizingAnEmptyImageIsDurable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "v.img")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	got := recordSyncs(t)
	v, err := Open(path, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	v.Close()
	if want := []string{"file " + path + " 1048576"}; !slices.Equal(*got, want) {
		t.Errorf("fsyncs %q, want %q", *got, want)
	}
}
