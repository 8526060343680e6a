package actlog

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// ReadMarks sees what the next Open would recover, and leaves the log as
// it was.
func TestReadMarksIsWhatOpenRecovers(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "al")
	if got, err := ReadMarks(nil, path); err != nil || len(got) != 0 {
		t.Fatalf("ReadMarks of no log: %v, %v; want nothing marked", got, err)
	}
	sizes := map[string]int64{"a": 8 << 20, "b": 2 << 20}
	l, _, err := Open(path, sizes, DefaultRegion)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Mark("a", 3<<20, 4096); err != nil {
		t.Fatal(err)
	}
	if err := l.Stick("b", 0, 4096); err != nil {
		t.Fatal(err)
	}
	// Not closed: a kill -9.
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ReadMarks(nil, path)
	if err != nil {
		t.Fatal(err)
	}
	after, _ := os.ReadFile(path)
	if string(before) != string(after) {
		t.Error("ReadMarks changed the log")
	}
	_, want, err := Open(path, sizes, DefaultRegion)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("ReadMarks: %v; Open recovers %v", got, want)
	}
	if err := os.WriteFile(path, []byte("DXAL garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadMarks(nil, path); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("ReadMarks of a log with no valid slot: %v, want ErrCorrupt", err)
	}
}
