//go:build !linux

package disk

func adviseHuge([]byte) {}

// TakesDirect reports false: direct I/O is used on Linux only.
func TakesDirect(uintptr) bool { return false }
