package disk

import "unsafe"

// DirectAlign is the alignment of a direct write's offset, length and
// buffer that the journal and the volumes use: the page, which covers
// every logical block size up to it.
const DirectAlign = 4096

// hugePage is the size of a transparent huge page (x86-64, arm64 with 4 KiB
// pages).
const hugePage = 2 << 20

// DirectBuffer returns n bytes of memory for direct writes: aligned to
// DirectAlign, and from hugePage bytes on aligned to a huge page and backed
// by huge pages where the kernel gives them (advised, see adviseHuge). A
// direct write pins every page of its buffer for the device: a 4 MiB write
// from small pages pinned 1,024 of them, 230–320 µs of CPU, and from huge
// pages 2, 100–130 µs, with the device taking the larger segments faster.
// Go's heap does not move objects, so the alignment lasts.
func DirectBuffer(n int) []byte {
	align := DirectAlign
	if n >= hugePage {
		align = hugePage
	}
	b := make([]byte, n+align)
	skip := int(-uintptr(unsafe.Pointer(&b[0])) & uintptr(align-1))
	b = b[skip : skip+n : skip+n]
	if n >= hugePage {
		adviseHuge(b[:n&^(hugePage-1)])
	}
	return b
}

// DirectBufferBytes is the memory DirectBuffer(n) takes: n and the
// alignment it is made with, which bounds on buffers kept must count.
func DirectBufferBytes(n int) int {
	if n >= hugePage {
		return n + hugePage
	}
	return n + DirectAlign
}

// ShortBuffer returns n bytes aligned to DirectAlign for a buffer dropped
// after one direct read: not advised as huge pages as DirectBuffer's are,
// since the advice outlives the buffer, staying with memory Go's heap
// reuses for other objects, and a lone read gains little from it.
func ShortBuffer(n int) []byte {
	b := make([]byte, n+DirectAlign)
	skip := int(-uintptr(unsafe.Pointer(&b[0])) & uintptr(DirectAlign-1))
	return b[skip : skip+n : skip+n]
}
