package volume

import (
	"bytes"
	"errors"
	"path/filepath"
	"testing"
)

func TestReadWriteTrimZeroes(t *testing.T) {
	v, err := Open(filepath.Join(t.TempDir(), "v.img"), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	data := bytes.Repeat([]byte{0xab}, 64<<10)
	if err := v.WriteAt(data, 4096); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(data))
	if err := v.ReadAt(got, 4096); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read back: err %v, equal %v", err, bytes.Equal(got, data))
	}
	if err := v.Trim(4096, 8192); err != nil {
		t.Fatal(err)
	}
	if err := v.WriteZeroes(4096+8192, 4096); err != nil {
		t.Fatal(err)
	}
	if err := v.ReadAt(got, 4096); err != nil {
		t.Fatal(err)
	}
	want := append(make([]byte, 12288), data[12288:]...)
	if !bytes.Equal(got, want) {
		t.Fatal("trimmed and zeroed ranges do not read back as zeroes")
	}
	if err := v.Flush(); err != nil {
		t.Fatal(err)
	}
}

func TestOutOfRangeIsAnErrorNotAShortWrite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "v.img")
	v, err := Open(path, 8192)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	cases := []struct {
		name string
		err  error
	}{
		{"write past end", v.WriteAt(make([]byte, 4096), 6144)},
		{"read past end", v.ReadAt(make([]byte, 4096), 8000)},
		{"negative offset", v.WriteAt(make([]byte, 1), -1)},
		{"trim past end", v.Trim(4096, 8192)},
		{"zeroes past end", v.WriteZeroes(8193, 0)},
	}
	for _, c := range cases {
		if !errors.Is(c.err, ErrOutOfRange) {
			t.Errorf("%s: got %v, want ErrOutOfRange", c.name, c.err)
		}
	}
	got := make([]byte, 8192)
	if err := v.ReadAt(got, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, make([]byte, 8192)) {
		t.Fatal("a refused write changed the volume")
	}
}

func TestSizeMismatchRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "v.img")
	v, err := Open(path, 8192)
	if err != nil {
		t.Fatal(err)
	}
	v.Close()
	if _, err := Open(path, 4096); err == nil {
		t.Fatal("reopening with another size succeeded")
	}
	if _, err := Open(path, 0); err == nil {
		t.Fatal("size 0 accepted")
	}
}
