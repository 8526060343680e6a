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
func TakesDirect(fd uintptr) bool { return DirectGrain(fd) != 0 }

// DirectGrain is the finest alignment, in memory, offset and length, of
// the pieces of a vectored direct write to fd that its file system takes
// (the larger of statx's dio_mem_align and dio_offset_align: 512 on most
// devices), or 0 where TakesDirect is false. A piece so aligned can be
// written from wherever it lies in memory, not copied into a buffer
// aligned to DirectAlign first.
func DirectGrain(fd uintptr) int {
	var st unix.Statx_t
	if unix.Statx(int(fd), "", unix.AT_EMPTY_PATH, unix.STATX_DIOALIGN, &st) != nil ||
		st.Mask&unix.STATX_DIOALIGN == 0 ||
		st.Dio_offset_align == 0 || st.Dio_offset_align > DirectAlign ||
		st.Dio_mem_align == 0 || st.Dio_mem_align > DirectAlign {
		return 0
	}
	return int(max(st.Dio_offset_align, st.Dio_mem_align))
}
