package disk

import (
	"testing"
	"unsafe"
)

// TestDirectBufferAlignment: a direct buffer is exactly n bytes (length and
// capacity: an append must not run past it into the slack), aligned for a
// direct write, and from a huge page's size on aligned to a huge page, so
// that the kernel can back it with huge pages.
func TestDirectBufferAlignment(t *testing.T) {
	for _, n := range []int{1, 4095, DirectAlign, 64 << 10, hugePage - 1, hugePage, hugePage + 4096, 4 << 20} {
		b := DirectBuffer(n)
		if len(b) != n || cap(b) != n {
			t.Fatalf("DirectBuffer(%d): length %d, capacity %d", n, len(b), cap(b))
		}
		want := DirectAlign
		if n >= hugePage {
			want = hugePage
		}
		if p := uintptr(unsafe.Pointer(&b[0])); p%uintptr(want) != 0 {
			t.Fatalf("DirectBuffer(%d) at %#x, not a multiple of %d", n, p, want)
		}
		for i := range b {
			b[i] = byte(i)
		}
	}
}

// A short buffer is exactly n bytes, aligned for a direct read.
func TestShortBufferAlignment(t *testing.T) {
	for _, n := range []int{1, 4095, DirectAlign, hugePage + 4096} {
		b := ShortBuffer(n)
		if len(b) != n || cap(b) != n {
			t.Fatalf("ShortBuffer(%d): length %d, capacity %d", n, len(b), cap(b))
		}
		if p := uintptr(unsafe.Pointer(&b[0])); p%DirectAlign != 0 {
			t.Fatalf("ShortBuffer(%d) at %#x, not a multiple of %d", n, p, DirectAlign)
		}
	}
}
