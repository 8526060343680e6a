package disk

import "golang.org/x/sys/unix"

// adviseHuge asks for b, whole huge pages not yet touched, to be backed by
// huge pages (MADV_HUGEPAGE), which a kernel whose transparent huge pages
// are set to "madvise" gives only to memory so advised. Advice only: where
// it is refused, b stays in small pages.
func adviseHuge(b []byte) {
	_ = unix.Madvise(b, unix.MADV_HUGEPAGE)
}

// TakesDirect reports whether the file system of the open file fd takes
// direct I/O aligned to DirectAlign in offset and memory, as statx's
// STATX_DIOALIGN says: ext4 and XFS do; tmpfs, which takes O_DIRECT and
// goes through its page cache all the same, reports nothing.
func TakesDirect(fd uintptr) bool {
	var st unix.Statx_t
	return unix.Statx(int(fd), "", unix.AT_EMPTY_PATH, unix.STATX_DIOALIGN, &st) == nil &&
		st.Mask&unix.STATX_DIOALIGN != 0 &&
		st.Dio_offset_align != 0 && st.Dio_offset_align <= DirectAlign &&
		st.Dio_mem_align != 0 && st.Dio_mem_align <= DirectAlign
}
