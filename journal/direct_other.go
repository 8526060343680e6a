//go:build !linux

package journal

import "duplex/disk"

// setDirect reports false: direct writes are used on Linux only.
func setDirect(f disk.File) bool { return false }
