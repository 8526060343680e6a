package subsystem

import (
	"bytes"
	"context"
	"os"
	"syscall"
	"testing"
	"unsafe"
)

// residentPages counts the pages of the file at path that are in the page
// cache.
func residentPages(t *testing.T, path string) int {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	m, err := syscall.Mmap(int(f.Fd()), 0, int(st.Size()), syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Munmap(m)
	pg := os.Getpagesize()
	vec := make([]byte, (len(m)+pg-1)/pg)
	if _, _, e := syscall.Syscall(syscall.SYS_MINCORE, uintptr(unsafe.Pointer(&m[0])), uintptr(len(m)), uintptr(unsafe.Pointer(&vec[0]))); e != 0 {
		t.Fatalf("mincore %s: %v", path, e)
	}
	n := 0
	for _, b := range vec {
		n += int(b & 1)
	}
	return n
}

func dropPageCache(t *testing.T, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	const fadvDontneed = 4
	if _, _, e := syscall.Syscall6(syscall.SYS_FADVISE64, f.Fd(), 0, 0, fadvDontneed, 0, 0); e != 0 {
		t.Fatalf("fadvise %s: %v", path, e)
	}
}

// A copy's read must not leave the volume in the page cache: a long
// sequential read there is read ahead into large folios, and every later
// small write of the users into one of them costs many times a write into a
// small one.
func TestCopyLeavesVolumeOutOfPageCache(t *testing.T) {
	f := newFixture(t, 64<<20)
	ctx := context.Background()
	v := f.vols["v0"]
	data := bytes.Repeat([]byte{0x5a}, volSize)
	if err := f.ss.Write(ctx, "v0", data, 0); err != nil {
		t.Fatal(err)
	}
	us, _, _ := f.ss.Drain()
	releaseAll(f.side, us)
	if err := v.Flush(); err != nil {
		t.Fatal(err)
	}
	dropPageCache(t, v.Path())
	if n := residentPages(t, v.Path()); n != 0 {
		t.Skipf("%d pages of the volume stay in the page cache after fadvise(DONTNEED): cannot tell", n)
	}
	if err := f.ss.Copy(ctx, "v0", 0, volSize); err != nil {
		t.Fatal(err)
	}
	us, _, _ = f.ss.Drain()
	if len(us) != 1 || !bytes.Equal(us[0].Data, data) {
		t.Fatalf("copy drained %d updates, want 1 carrying the volume's content", len(us))
	}
	releaseAll(f.side, us)
	if n := residentPages(t, v.Path()); n != 0 {
		t.Fatalf("after a copy of the whole volume %d of its %d pages are in the page cache, want 0", n, volSize/os.Getpagesize())
	}
}
