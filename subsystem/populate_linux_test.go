package subsystem

import (
	"syscall"
	"testing"
	"unsafe"
)

// TestPopulateMakesPagesResident: after populate every page of a fresh
// buffer is in memory, so the socket read that fills it faults none.
func TestPopulateMakesPagesResident(t *testing.T) {
	const size = 1 << 20
	// An mmap of its own, not the Go heap: its pages are certainly not
	// resident before populate.
	b, err := syscall.Mmap(-1, 0, size, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_PRIVATE|syscall.MAP_ANON)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Munmap(b)
	page := syscall.Getpagesize()
	resident := func() int {
		vec := make([]byte, (size+page-1)/page)
		if _, _, e := syscall.Syscall(syscall.SYS_MINCORE, uintptr(unsafe.Pointer(&b[0])), size, uintptr(unsafe.Pointer(&vec[0]))); e != 0 {
			t.Fatalf("mincore: %v", e)
		}
		n := 0
		for _, v := range vec {
			n += int(v & 1)
		}
		return n
	}
	if got := resident(); got != 0 {
		t.Fatalf("before populate: %d pages resident, want 0", got)
	}
	populate(b)
	if got, want := resident(), size/page; got != want {
		t.Skipf("after populate: %d of %d pages resident: MADV_POPULATE_WRITE unsupported here (Linux < 5.14)", got, want)
	}
	populate(nil) // nothing to do, and no fault
}
