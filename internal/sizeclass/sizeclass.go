// Package sizeclass sizes pooled buffers in power-of-two classes, for the
// pools that keep request and update buffers from one use to the next.
package sizeclass

import "math/bits"

// Of returns the class of a buffer of n bytes among the classes
// 1<<minShift (class 0) through 1<<maxShift: the smallest that holds n, or
// -1 when n is larger than 1<<maxShift.
func Of(n, minShift, maxShift int) int {
	if n <= 1<<minShift {
		return 0
	}
	shift := bits.Len(uint(n - 1))
	if shift > maxShift {
		return -1
	}
	return shift - minShift
}
