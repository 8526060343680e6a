package disk

import "os"

// Datasync makes f's data durable, with the metadata needed to read it back
// (its size, where its blocks are), but not its times: fdatasync where the
// operating system has it, Sync otherwise. A file overwritten in place
// (a recycled journal segment) then costs the device's cache flush alone,
// where an fsync would also commit the file system's journal for the
// modification time every write changes. A File with its own Datasync
// method (an Injector's) is asked for it; any other File is synced.
func Datasync(f File) error {
	switch f := f.(type) {
	case interface{ Datasync() error }:
		return f.Datasync()
	case *os.File:
		return fdatasync(f)
	}
	return f.Sync()
}
