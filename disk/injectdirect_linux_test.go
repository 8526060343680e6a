package disk

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// TestInjectorRefusesDirectWritesOnly: after PassDirect an Injector's files
// offer their descriptor, and a Fault with Direct fails the writes of a
// file while it is set O_DIRECT, and only those: a file system that says
// it takes direct I/O and refuses it.
func TestInjectorRefusesDirectWritesOnly(t *testing.T) {
	dir := t.TempDir()
	in := NewInjector(nil)
	in.PassDirect()
	in.Inject(Fault{Op: OpWrite, Direct: true, Err: syscall.EINVAL})
	f, err := in.OpenFile(filepath.Join(dir, "f"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc, ok := f.(syscallConner)
	if !ok {
		t.Fatal("after PassDirect the Injector's file offers no descriptor")
	}
	if _, err := f.WriteAt(make([]byte, DirectAlign), 0); err != nil {
		t.Fatalf("a buffered write failed: %v", err)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var serr error
	rc.Control(func(fd uintptr) {
		if DirectGrain(fd) == 0 {
			serr = errors.New("no direct I/O")
			return
		}
		serr = setFlag(fd, syscall.O_DIRECT)
	})
	if serr != nil {
		t.Skipf("%s: %v", dir, serr)
	}
	if _, err := f.WriteAt(DirectBuffer(DirectAlign), 0); !errors.Is(err, syscall.EINVAL) {
		t.Fatalf("a direct write returned %v, want EINVAL", err)
	}
	if n := in.Injected(OpWrite); n != 1 {
		t.Fatalf("%d writes failed, want 1", n)
	}

	plain := NewInjector(nil)
	g, err := plain.OpenFile(filepath.Join(dir, "g"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if _, ok := g.(syscallConner); ok {
		t.Fatal("without PassDirect the Injector's file offers its descriptor: the journal would write it directly")
	}
}

// setFlag adds flag to the file status flags of fd.
func setFlag(fd uintptr, flag int) error {
	flags, err := unix.FcntlInt(fd, unix.F_GETFL, 0)
	if err != nil {
		return err
	}
	_, err = unix.FcntlInt(fd, unix.F_SETFL, flags|flag)
	return err
}
