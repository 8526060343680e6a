package journal

import (
	"bytes"
	"hash/crc32"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"duplex/disk"
)

// TestACrashBetweenARefusedDirectWriteAndItsRewrite: a direct write of a
// record refused part way, after some of its pieces reached the disk
// directly, and a crash before the rewrite through the page cache: the
// records synced before it are all there, the partial one a torn tail.
func TestACrashBetweenARefusedDirectWriteAndItsRewrite(t *testing.T) {
	probe := t.TempDir()
	if !directSupported(t, probe) {
		t.Skipf("%s takes no direct writes", probe)
	}
	for _, skip := range []int{0, 1, 2, 3} {
		dir := t.TempDir()
		in := disk.NewInjector(nil)
		in.PassDirect()
		log := slog.New(slog.NewTextHandler(io.Discard, nil))
		j := openT(t, dir, Options{FS: in, SegmentSize: 64 << 20, MaxRecord: 16 << 20, Logger: log})
		var want [][]byte
		for i := uint64(1); i <= 6; i++ {
			data := bigPayload(i)
			if err := j.Append(i, data); err != nil {
				t.Fatal(err)
			}
			want = append(want, data)
		}
		if err := j.Sync(); err != nil {
			t.Fatal(err)
		}
		hang := make(chan struct{})
		in.Inject(disk.Fault{Op: disk.OpWrite, Direct: true, Skip: skip, Err: syscall.EINVAL})
		in.Inject(disk.Fault{Op: disk.OpWrite, Skip: skip, Hang: hang, Once: true})
		data := bigPayload(7)
		var parts [][]byte
		for p := data; len(p) > 0; p = p[min(len(p), 70000):] {
			parts = append(parts, p[:min(len(p), 70000)])
		}
		done := make(chan error, 1)
		go func() { done <- j.AppendParts(7, parts, crc32.Checksum(data, castagnoli)) }()
		deadline := time.Now().Add(10 * time.Second)
		for in.Injected(disk.OpWrite) < 2 {
			if time.Now().After(deadline) {
				t.Fatalf("skip %d: the rewrite never came", skip)
			}
			time.Sleep(time.Millisecond)
		}
		crash := t.TempDir()
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			b, err := os.ReadFile(filepath.Join(dir, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			os.WriteFile(filepath.Join(crash, e.Name()), b, 0o644)
		}
		close(hang)
		if err := <-done; err != nil {
			t.Fatalf("skip %d: append: %v", skip, err)
		}
		j.Close()
		c := openT(t, crash, Options{SegmentSize: 64 << 20, MaxRecord: 16 << 20, Logger: log})
		got := replayAll(t, c, 0)
		c.Close()
		if len(got) < len(want) {
			t.Fatalf("skip %d: the crash image holds %d records, want the %d synced", skip, len(got), len(want))
		}
		for k := range want {
			if !bytes.Equal(got[k].data, want[k]) {
				t.Fatalf("skip %d: record %d differs", skip, k+1)
			}
		}
		if len(got) > len(want) && !bytes.Equal(got[6].data, data) {
			t.Fatalf("skip %d: the partial record read back as a record", skip)
		}
		t.Logf("skip %d: %d records in the crash image", skip, len(got))
	}
}
