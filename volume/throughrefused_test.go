package volume

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
)

// TestWriteThroughRefusedDirectFallsBackToThePageCache: a file system that
// says it takes direct I/O and refuses a direct write (EINVAL) is a way of
// writing to give up, not a failed disk: WriteThrough writes the run
// again, whole, through the page cache, and every later one so, and Flush
// (fdatasync) covers them as it covers any write. The volume's direct
// writes are on a descriptor of their own, not the journal's path, and
// already fall back so: this pins it.
func TestWriteThroughRefusedDirectFallsBackToThePageCache(t *testing.T) {
	v, err := Open(filepath.Join(t.TempDir(), "v.img"), 16<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	var logs bytes.Buffer
	v.SetLogger(slog.New(slog.NewTextHandler(&logs, nil)))
	if v.directWriteFile() == nil {
		t.Skip("the file system refuses O_DIRECT: no direct write to refuse")
	}
	var refused atomic.Int64
	realWrite := directWriteV
	directWriteV = func(f *os.File, b [][]byte, off int64) (int64, error) {
		if refused.Add(1) == 2 {
			// Part of the run reached the disk before the refusal.
			if n, err := realWrite(f, b, off); err != nil {
				return n, err
			}
		}
		return 0, &os.PathError{Op: "write", Path: f.Name(), Err: syscall.EINVAL}
	}
	defer func() { directWriteV = realWrite }()

	want := make([]byte, 8<<20)
	for i := range want {
		want[i] = byte(i*7 + 1)
	}
	for _, off := range []int64{0, 8 << 20} {
		if err := v.WriteThrough([][]byte{want[:5000], want[5000:]}, off); err != nil {
			t.Fatalf("WriteThrough at %d on a file system refusing direct writes: %v", off, err)
		}
	}
	if refused.Load() == 0 {
		t.Fatal("no direct write was made to refuse")
	}
	if !v.noDirectWrite.Load() {
		t.Error("the volume goes on trying direct writes the file system refuses")
	}
	// Said once, as the journal says its own: an operator who measures
	// writes slower than the device's learns why.
	if n := strings.Count(logs.String(), "refused a direct write"); n != 1 {
		t.Errorf("the volume's log says %d times that the file system refused a direct write, want once:\n%s", n, logs.String())
	} else if !strings.Contains(logs.String(), "v.img") || !strings.Contains(logs.String(), "page cache") {
		t.Errorf("the volume's log does not name the volume and the page cache: %s", logs.String())
	}
	if err := v.Flush(); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(want))
	for _, off := range []int64{0, 8 << 20} {
		if err := v.ReadThrough(got, off); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("the run at %d does not read back as written", off)
		}
	}
}
