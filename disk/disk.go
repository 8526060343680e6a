// Package disk is the file system under the method's durable state: the
// secondary's journal and apply state (step g), and at the primary the
// activity log and the pair state, write through FS rather than package os.
//
// The point is the failures. A real disk fills up, returns EIO from a write
// or an fsync, and after a failed fsync may have dropped the dirty pages it
// could not write, so a later fsync that succeeds proves nothing. OS is the
// default and passes every call to the operating system; Injector wraps an FS
// and fails the Nth operation of a kind (a write, an fsync, a create, a
// rename...) on chosen paths with the error a disk gives, until the test
// clears the fault, in the spirit of pebble's vfs/errorfs. Tests use it to
// reach every error path of the durable steps and check what the method
// promises there: nothing acknowledged is lost, and nothing is acknowledged
// that is not durable.
//
// Volumes are not here: they are the data being replicated, not the
// method's own records, and their faults surface through apply.Target.
package disk

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// File is an open file of an FS.
type File interface {
	io.Reader
	io.ReaderAt
	io.Writer
	io.WriterAt
	io.Closer
	Sync() error
	Truncate(size int64) error
	Stat() (fs.FileInfo, error)
	Name() string
}

// FS is the part of a file system the durable state needs.
type FS interface {
	OpenFile(name string, flag int, perm fs.FileMode) (File, error)
	// CreateTemp creates a new file in dir as os.CreateTemp does.
	CreateTemp(dir, pattern string) (File, error)
	Remove(name string) error
	Rename(oldpath, newpath string) error
	MkdirAll(dir string, perm fs.FileMode) error
	Stat(name string) (fs.FileInfo, error)
	ReadDir(dir string) ([]fs.DirEntry, error)
	// SyncDir fsyncs a directory, making the creations, removals and
	// renames of its entries durable.
	SyncDir(dir string) error
	// Lock takes an exclusive lock on the file name (creating it) that
	// lasts until the returned Closer is closed or the process dies; it
	// fails at once if another holder has it.
	Lock(name string) (io.Closer, error)
	// Available is the number of bytes that an unprivileged writer can
	// still allocate on the file system holding dir.
	Available(dir string) (int64, error)
}

// OS is the operating system's file system.
var OS FS = osFS{}

// Or returns fsys, or OS when fsys is nil: the zero value of an options
// struct selects the real disk.
func Or(fsys FS) FS {
	if fsys == nil {
		return OS
	}
	return fsys
}

type osFS struct{}

func (osFS) OpenFile(name string, flag int, perm fs.FileMode) (File, error) {
	f, err := os.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return f, nil
}

func (osFS) CreateTemp(dir, pattern string) (File, error) {
	f, err := os.CreateTemp(dir, pattern)
	if err != nil {
		return nil, err
	}
	return f, nil
}

func (osFS) Remove(name string) error                    { return os.Remove(name) }
func (osFS) Rename(oldpath, newpath string) error        { return os.Rename(oldpath, newpath) }
func (osFS) MkdirAll(dir string, perm fs.FileMode) error { return os.MkdirAll(dir, perm) }
func (osFS) Stat(name string) (fs.FileInfo, error)       { return os.Stat(name) }
func (osFS) ReadDir(dir string) ([]fs.DirEntry, error)   { return os.ReadDir(dir) }
func (osFS) Lock(name string) (io.Closer, error)         { return lockFile(name) }
func (osFS) Available(dir string) (int64, error)         { return available(dir) }

func (osFS) SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// ReadFile reads a whole file.
func ReadFile(fsys FS, name string) ([]byte, error) {
	f, err := fsys.OpenFile(name, os.O_RDONLY, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(f)
}

// WriteFileAtomic replaces path with data so that a reader, or a restart
// after a crash, sees the old content or the new, never a mix: a temporary
// file in the same directory is written, fsynced, closed and renamed over
// path, and the directory is fsynced.
func WriteFileAtomic(fsys FS, path string, data []byte) error {
	return WriteFileAtomicUnless(context.Background(), fsys, path, data)
}

// WriteFileAtomicUnless is WriteFileAtomic that does not rename once
// given up (ctx ended): a save whose disk stopped answering, given up at a
// stop, must not replace the file when the disk answers again, after a
// later save, or a later run's.
func WriteFileAtomicUnless(ctx context.Context, fsys FS, path string, data []byte) error {
	dir := filepath.Dir(path)
	tmp, err := fsys.CreateTemp(dir, filepath.Base(path)+tempInfix+"*")
	if err != nil {
		return unreplaced{fmt.Errorf("write %s: %w", path, err)}
	}
	name := tmp.Name()
	renamed := false
	defer func() {
		if !renamed {
			fsys.Remove(name)
		}
	}()
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return unreplaced{fmt.Errorf("write %s: %w", path, err)}
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return unreplaced{fmt.Errorf("write %s: fsync: %w", path, err)}
	}
	if err := tmp.Close(); err != nil {
		return unreplaced{fmt.Errorf("write %s: %w", path, err)}
	}
	if err := ctx.Err(); err != nil {
		return unreplaced{fmt.Errorf("write %s: given up: %w", path, err)}
	}
	if err := fsys.Rename(name, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	renamed = true
	if err := fsys.SyncDir(dir); err != nil {
		return fmt.Errorf("write %s: fsync dir: %w", path, err)
	}
	return nil
}

// unreplaced is an error of WriteFileAtomic from before its rename.
type unreplaced struct{ error }

func (e unreplaced) Unwrap() error { return e.error }

// Unreplaced reports whether err is WriteFileAtomic's from before it
// renamed anything over the path, which then holds what it held before.
// A failed rename, or the directory's fsync after it, may have replaced
// it (or will, once the disk writes the directory).
func Unreplaced(err error) bool {
	var u unreplaced
	return errors.As(err, &u)
}

// tempInfix joins a target's name and the random digits os.CreateTemp
// puts for the "*" in the names of WriteFileAtomic's temporary files:
// TARGET.tmpDIGITS, the digits a uint32 in decimal.
const tempInfix = ".tmp"

// leftTemp returns the target whose temporary file name would be, as
// WriteFileAtomic names them; ok false for any other name.
func leftTemp(name string) (target string, ok bool) {
	i := strings.LastIndex(name, tempInfix)
	if i <= 0 {
		return "", false
	}
	digits := name[i+len(tempInfix):]
	if digits == "" || strings.TrimLeft(digits, "0123456789") != "" {
		return "", false
	}
	if _, err := strconv.ParseUint(digits, 10, 32); err != nil {
		return "", false
	}
	return name[:i], true
}

// RemoveLeftTemps removes from dir the temporary files of WriteFileAtomic
// (TARGET.tmpDIGITS, regular files) whose target of accepts, and returns
// their names. A write is cut short there only by the end of its process
// (kill -9, a crash): its deferred removal never runs, and nothing ever
// reads or removes the file. Call it only while no write to dir is under
// way, with the lock that keeps other writers out held. Nothing else is
// touched: a name of another shape, or a directory, stays. A missing dir
// has nothing to remove.
func RemoveLeftTemps(fsys FS, dir string, of func(target string) bool) ([]string, error) {
	entries, err := fsys.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("temporary files left in %s: %w", dir, err)
	}
	var removed []string
	var errs []error
	for _, e := range entries {
		target, ok := leftTemp(e.Name())
		if !ok || !e.Type().IsRegular() || !of(target) {
			continue
		}
		if err := fsys.Remove(filepath.Join(dir, e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, e.Name())
	}
	if len(errs) > 0 {
		return removed, fmt.Errorf("temporary files left in %s: %w", dir, errors.Join(errs...))
	}
	return removed, nil
}

// IsFull reports whether err says the file system is out of space (or
// quota): the operator frees space, nothing in the data is wrong.
func IsFull(err error) bool {
	return errors.Is(err, errNoSpace) || errors.Is(err, errQuota)
}
