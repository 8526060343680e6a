//go:build !linux

package disk

func adviseHuge([]byte) {}

// TakesDirect reports false: direct I/O is used on Linux only.
func TakesDirect(uintptr) bool { return false }

// DirectGrain reports 0: direct I/O is used on Linux only.
func DirectGrain(uintptr) int { return 0 }
