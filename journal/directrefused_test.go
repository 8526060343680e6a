package journal

import (
	"bytes"
	"errors"
	"hash/crc32"
	"log/slog"
	"strings"
	"syscall"
	"testing"

	"duplex/disk"
)

// TestRefusedDirectWritesFallBackToThePageCache: a file system that says
// it takes direct I/O (statx reports a grain) and then refuses a direct
// write with EINVAL is written through the page cache from then on, the
// refused write made again that way: the journal goes on, every record
// reads back as written after a reopen whose direct reads are refused
// too, and Sync still covers every record (a failed one after the
// fallback leaves none it did not cover).
func TestRefusedDirectWritesFallBackToThePageCache(t *testing.T) {
	probe := t.TempDir()
	if !directSupported(t, probe) {
		t.Skipf("%s takes no direct writes", probe)
	}
	for _, tc := range []struct {
		name string
		skip int // direct writes let through before the refusals
	}{
		{"first write refused", 0},
		{"refused part way", 7},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			in := disk.NewInjector(nil)
			in.PassDirect()
			in.Inject(disk.Fault{Op: disk.OpWrite, Direct: true, Skip: tc.skip, Err: syscall.EINVAL})
			var logs bytes.Buffer
			log := slog.New(slog.NewTextHandler(&logs, nil))
			j := openT(t, dir, Options{FS: in, SegmentSize: 1 << 20, MaxRecord: 16 << 20, Logger: log})
			var want [][]byte
			add := func(i uint64) {
				t.Helper()
				data := bigPayload(i)
				var parts [][]byte
				for p := data; len(p) > 0; p = p[min(len(p), 70000):] {
					parts = append(parts, p[:min(len(p), 70000)])
				}
				if err := j.AppendParts(i, parts, crc32.Checksum(data, castagnoli)); err != nil {
					t.Fatalf("append %d on a file system refusing direct writes: %v", i, err)
				}
				want = append(want, data)
			}
			for i := uint64(1); i <= 30; i++ {
				add(i)
				if i%3 == 0 {
					if err := j.Sync(); err != nil {
						t.Fatalf("sync after %d: %v", i, err)
					}
				}
			}
			if err := j.Sync(); err != nil {
				t.Fatal(err)
			}
			if in.Injected(disk.OpWrite) == 0 {
				t.Fatal("no direct write was refused: the journal wrote none")
			}
			if n := strings.Count(logs.String(), "refused a direct write"); n != 1 {
				t.Errorf("the journal logged the refusal %d times over %d segments, want once:\n%s", n, len(segFiles(t, dir)), logs.String())
			}
			// A Sync after the fallback still fsyncs what it covers: one that
			// fails leaves the record it did not cover out of the journal.
			in.Inject(disk.Fault{Op: disk.OpSync, Err: disk.EIO, Once: true})
			add(31)
			if err := j.Sync(); !errors.Is(err, disk.EIO) {
				t.Fatalf("Sync with its fsync failing returned %v", err)
			}
			want = want[:len(want)-1]
			j.Close()

			// Reopened on a file system that refuses direct reads too.
			in.Inject(disk.Fault{Op: disk.OpRead, Direct: true, Err: syscall.EINVAL})
			j = openT(t, dir, Options{FS: in, SegmentSize: 1 << 20, MaxRecord: 16 << 20, Logger: log})
			defer j.Close()
			if in.Injected(disk.OpRead) == 0 {
				t.Fatal("Open read the last segment with no direct read refused")
			}
			got := replayAll(t, j, 0)
			if len(got) != len(want) {
				t.Fatalf("replayed %d records, want %d", len(got), len(want))
			}
			for k := range got {
				if got[k].index != uint64(k+1) || !bytes.Equal(got[k].data, want[k]) {
					t.Fatalf("record %d (index %d) differs", k+1, got[k].index)
				}
			}
			add(31)
			if err := j.Sync(); err != nil {
				t.Fatalf("append after the reopen: %v", err)
			}
		})
	}
}
