//go:build !linux

package journal

import "duplex/disk"

// setDirect reports 0: direct writes are used on Linux only.
func setDirect(f disk.File) int { return 0 }

// oDirect is 0: reads bypass the page cache on Linux only.
const oDirect = 0

// keepDirect reports false: reads bypass the page cache on Linux only.
func keepDirect(f disk.File) bool { return false }

// setBuffered does nothing: no file is written directly.
func setBuffered(f disk.File) error { return nil }
