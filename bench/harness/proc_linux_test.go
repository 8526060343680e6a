package harness

import (
	"os"
	"syscall"
	"testing"
)

// ProcFaults counts the pages a process is given afresh: touching 8 MiB of
// new anonymous memory takes a fault a page, or one per 2 MiB where the
// kernel backs it with huge pages.
func TestProcFaultsCountsFreshPages(t *testing.T) {
	const n = 8 << 20
	m, err := syscall.Mmap(-1, 0, n, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Munmap(m)
	before, err := ProcFaults(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i += 4096 {
		m[i] = 1
	}
	after, err := ProcFaults(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if got, least := after-before, int64(n>>21); got < least {
		t.Errorf("%d faults counted for %d fresh bytes, want at least %d", got, n, least)
	}
}
