//go:build !linux

package disk

// isDirect reports false: direct I/O is used on Linux only.
func isDirect(File) bool { return false }
