package disk

import "golang.org/x/sys/unix"

// adviseHuge asks for b, whole huge pages not yet touched, to be backed by
// huge pages (MADV_HUGEPAGE), which a kernel whose transparent huge pages
// are set to "madvise" gives only to memory so advised. Advice only: where
// it is refused, b stays in small pages.
func adviseHuge(b []byte) {
	_ = unix.Madvise(b, unix.MADV_HUGEPAGE)
}
