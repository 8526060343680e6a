package nbd

import (
	"sync"

	"duplex/internal/sizeclass"
)

// Request payloads range from 512 bytes to tens of MiB, and at queue depth
// 16+ a fresh allocation per request would dominate the garbage collector's
// work. Buffers are therefore pooled in power-of-two size classes; a request
// takes the smallest class that fits.
const (
	minBufShift = 12 // 4 KiB
	maxBufShift = 26 // 64 MiB: a 32 MiB read plus its reply header
)

var bufPools [maxBufShift - minBufShift + 1]sync.Pool

// bufClass returns the class of a buffer of n bytes, or -1 for one too
// large to keep.
func bufClass(n int) int { return sizeclass.Of(n, minBufShift, maxBufShift) }

// getBuf returns a buffer of length n. Its contents are NOT zeroed.
func getBuf(n int) *[]byte {
	c := bufClass(n)
	if c < 0 {
		b := make([]byte, n)
		return &b
	}
	if v, ok := bufPools[c].Get().(*[]byte); ok {
		*v = (*v)[:n]
		return v
	}
	b := make([]byte, n, 1<<(c+minBufShift))
	return &b
}

// putBuf recycles a buffer from getBuf. Buffers whose capacity is not a
// class size (the unpooled big ones) are left to the garbage collector.
func putBuf(b *[]byte) {
	if b == nil {
		return
	}
	n := cap(*b)
	c := bufClass(n)
	if c < 0 || n != 1<<(c+minBufShift) {
		return
	}
	*b = (*b)[:0]
	bufPools[c].Put(b)
}
