package disk

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
)

// Op is a kind of file-system operation that an Injector can fail.
type Op int

const (
	OpWrite    Op = iota // Write or WriteAt on a file
	OpSync               // Sync of a file
	OpSyncDir            // SyncDir
	OpCreate             // OpenFile with O_CREATE, CreateTemp, MkdirAll
	OpRemove             // Remove
	OpRename             // Rename
	OpTruncate           // Truncate of a file
	OpRead               // Read or ReadAt on a file
	opCount
)

var opNames = [...]string{"write", "fsync", "fsync dir", "create", "remove", "rename", "truncate", "read"}

func (o Op) String() string {
	if o < 0 || o >= opCount {
		return fmt.Sprintf("op(%d)", int(o))
	}
	return opNames[o]
}

// The errors a disk gives, for Fault.Err.
var (
	ENOSPC error = syscall.ENOSPC
	EIO    error = syscall.EIO
)

// Fault describes operations an Injector fails.
type Fault struct {
	Op Op
	// Under limits the fault to paths in this directory or file; "" is
	// every path.
	Under string
	// Skip is how many matching operations succeed before the first one
	// fails: Skip 0 fails the next one.
	Skip int
	// Err is returned by the failing operations (default EIO).
	Err error
	// Once fails a single operation; otherwise every matching operation
	// fails from then on until Clear, as a full disk stays full.
	Once bool
	// Hang, if not nil, makes the matching operations wait until it is
	// closed and then go on, with no error: a disk that stopped answering
	// and answers again. Err is then not used.
	Hang <-chan struct{}
	// Direct limits the fault to reads and writes of files opened or set
	// O_DIRECT, which an Injector's files are only after PassDirect: with
	// Err EINVAL, a file system that says it takes direct I/O (statx) and
	// refuses it.
	Direct bool
}

// Injector is an FS that passes operations to another FS and fails those
// that match its faults. Its methods are safe for concurrent use.
type Injector struct {
	fs FS

	mu       sync.Mutex
	faults   []*armed
	injected [opCount]int
	direct   bool // PassDirect
}

type armed struct {
	Fault
	seen  int
	fired bool
}

// NewInjector wraps fsys (OS when nil).
func NewInjector(fsys FS) *Injector { return &Injector{fs: Or(fsys)} }

// Inject adds a fault.
func (in *Injector) Inject(f Fault) {
	if f.Err == nil {
		f.Err = EIO
	}
	if f.Under != "" {
		f.Under = filepath.Clean(f.Under)
	}
	in.mu.Lock()
	in.faults = append(in.faults, &armed{Fault: f})
	in.mu.Unlock()
}

// PassDirect makes the files the Injector opens from then on offer the
// operating system's descriptor of the files they wrap (SyscallConn), as
// OS's files do, so the journal and the volumes write them directly
// (O_DIRECT) where the file system takes that, and a Fault with Direct
// reaches those writes. Without it they are written through the page
// cache.
func (in *Injector) PassDirect() {
	in.mu.Lock()
	in.direct = true
	in.mu.Unlock()
}

// Clear removes every fault: the disk works again (space was freed).
func (in *Injector) Clear() {
	in.mu.Lock()
	in.faults = nil
	in.mu.Unlock()
}

// Injected returns how many operations of kind op were failed, so a test can
// check that its fault fired.
func (in *Injector) Injected(op Op) int {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.injected[op]
}

// check returns the error to fail op on path with, or nil; it waits
// first while a Hang fault holds op.
func (in *Injector) check(op Op, path string) error {
	return in.checkFile(op, path, nil)
}

// checkFile is check of an operation on file, which a Fault with Direct
// matches only while it is set O_DIRECT (nil: never).
func (in *Injector) checkFile(op Op, path string, file File) error {
	hang, err := in.match(op, path, file)
	if hang != nil {
		<-hang
	}
	return err
}

func (in *Injector) match(op Op, path string, file File) (<-chan struct{}, error) {
	in.mu.Lock()
	defer in.mu.Unlock()
	path = filepath.Clean(path)
	for _, f := range in.faults {
		if f.Op != op || !under(path, f.Under) {
			continue
		}
		if f.Direct && (file == nil || !isDirect(file)) {
			continue
		}
		if f.Once && f.fired {
			continue
		}
		if f.seen < f.Skip {
			f.seen++
			continue
		}
		f.fired = true
		in.injected[op]++
		if f.Hang != nil {
			return f.Hang, nil
		}
		return nil, f.Err
	}
	return nil, nil
}

func under(path, dir string) bool {
	return dir == "" || path == dir || strings.HasPrefix(path, dir+string(filepath.Separator))
}

func pathErr(op Op, path string, err error) error {
	return &fs.PathError{Op: op.String(), Path: path, Err: err}
}

func (in *Injector) OpenFile(name string, flag int, perm fs.FileMode) (File, error) {
	if flag&os.O_CREATE != 0 {
		if err := in.check(OpCreate, name); err != nil {
			return nil, pathErr(OpCreate, name, err)
		}
	}
	f, err := in.fs.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return in.wrap(f), nil
}

// wrap is f as the Injector hands it out: with its descriptor after
// PassDirect, where f has one.
func (in *Injector) wrap(f File) File {
	in.mu.Lock()
	direct := in.direct
	in.mu.Unlock()
	if sc, ok := f.(syscallConner); ok && direct {
		return &directInjectFile{injectFile: injectFile{File: f, in: in}, sc: sc}
	}
	return &injectFile{File: f, in: in}
}

type syscallConner interface {
	SyscallConn() (syscall.RawConn, error)
}

// directInjectFile is an injectFile that offers its file's descriptor.
type directInjectFile struct {
	injectFile
	sc syscallConner
}

func (f *directInjectFile) SyscallConn() (syscall.RawConn, error) { return f.sc.SyscallConn() }

func (in *Injector) CreateTemp(dir, pattern string) (File, error) {
	if err := in.check(OpCreate, filepath.Join(dir, pattern)); err != nil {
		return nil, pathErr(OpCreate, filepath.Join(dir, pattern), err)
	}
	f, err := in.fs.CreateTemp(dir, pattern)
	if err != nil {
		return nil, err
	}
	return in.wrap(f), nil
}

func (in *Injector) Remove(name string) error {
	if err := in.check(OpRemove, name); err != nil {
		return pathErr(OpRemove, name, err)
	}
	return in.fs.Remove(name)
}

func (in *Injector) Rename(oldpath, newpath string) error {
	if err := in.check(OpRename, newpath); err != nil {
		return &fs.PathError{Op: "rename", Path: oldpath + " " + newpath, Err: err}
	}
	return in.fs.Rename(oldpath, newpath)
}

func (in *Injector) MkdirAll(dir string, perm fs.FileMode) error {
	if err := in.check(OpCreate, dir); err != nil {
		return pathErr(OpCreate, dir, err)
	}
	return in.fs.MkdirAll(dir, perm)
}

func (in *Injector) SyncDir(dir string) error {
	if err := in.check(OpSyncDir, dir); err != nil {
		return pathErr(OpSyncDir, dir, err)
	}
	return in.fs.SyncDir(dir)
}

func (in *Injector) Stat(name string) (fs.FileInfo, error)     { return in.fs.Stat(name) }
func (in *Injector) ReadDir(dir string) ([]fs.DirEntry, error) { return in.fs.ReadDir(dir) }
func (in *Injector) Lock(name string) (io.Closer, error)       { return in.fs.Lock(name) }
func (in *Injector) Available(dir string) (int64, error)       { return in.fs.Available(dir) }

type injectFile struct {
	File
	in *Injector
}

func (f *injectFile) Write(p []byte) (int, error) {
	if err := f.in.checkFile(OpWrite, f.Name(), f.File); err != nil {
		return 0, pathErr(OpWrite, f.Name(), err)
	}
	return f.File.Write(p)
}

func (f *injectFile) WriteAt(p []byte, off int64) (int, error) {
	if err := f.in.checkFile(OpWrite, f.Name(), f.File); err != nil {
		return 0, pathErr(OpWrite, f.Name(), err)
	}
	return f.File.WriteAt(p, off)
}

func (f *injectFile) Read(p []byte) (int, error) {
	if err := f.in.checkFile(OpRead, f.Name(), f.File); err != nil {
		return 0, pathErr(OpRead, f.Name(), err)
	}
	return f.File.Read(p)
}

func (f *injectFile) ReadAt(p []byte, off int64) (int, error) {
	if err := f.in.checkFile(OpRead, f.Name(), f.File); err != nil {
		return 0, pathErr(OpRead, f.Name(), err)
	}
	return f.File.ReadAt(p, off)
}

func (f *injectFile) Sync() error {
	if err := f.in.check(OpSync, f.Name()); err != nil {
		return pathErr(OpSync, f.Name(), err)
	}
	return f.File.Sync()
}

// Datasync fails as Sync does: to the journal it is the same promise.
func (f *injectFile) Datasync() error {
	if err := f.in.check(OpSync, f.Name()); err != nil {
		return pathErr(OpSync, f.Name(), err)
	}
	return Datasync(f.File)
}

func (f *injectFile) Truncate(size int64) error {
	if err := f.in.check(OpTruncate, f.Name()); err != nil {
		return pathErr(OpTruncate, f.Name(), err)
	}
	return f.File.Truncate(size)
}
