package main

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestADirTheDiskCannotHoldIsAFailure: a --dir that cannot be created for
// the disk's reason (a read-only file system, one with no room left) is
// the operation failing, exit 1, as README says of a disk's error; one
// under a file, the command's input, stays exit 2. Each names --dir and
// the path. Before: exit 2 for all of them.
func TestADirTheDiskCannotHoldIsAFailure(t *testing.T) {
	check := func(t *testing.T, path string, want int) {
		for _, cmd := range []string{"demo", "etcd"} {
			code, out, errs := runCmd(cmd, "--dir", path)
			if code != want || !strings.Contains(errs, "--dir") || !strings.Contains(errs, path) || strings.Count(errs, "\n") != 1 {
				t.Errorf("duplex %s --dir %s: exit %d, stdout %q, stderr %q; want exit %d, one line naming --dir and the path",
					cmd, path, code, out, errs, want)
			}
		}
	}
	t.Run("under a file", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "file")
		writeFile(t, file, nil, 0o644)
		check(t, filepath.Join(file, "sub"), exitUsage)
	})
	t.Run("read-only", func(t *testing.T) {
		dir := t.TempDir()
		src := filepath.Join(dir, "src")
		if err := os.Mkdir(src, 0o755); err != nil {
			t.Fatal(err)
		}
		ro := mountFor(t, filepath.Join(dir, "ro"), "a read-only bind mount", func(at string) error {
			if err := syscall.Mount(src, at, "", syscall.MS_BIND, ""); err != nil {
				return err
			}
			return syscall.Mount("", at, "", syscall.MS_BIND|syscall.MS_REMOUNT|syscall.MS_RDONLY, "")
		})
		check(t, filepath.Join(ro, "d"), exitFailure)
	})
	t.Run("full", func(t *testing.T) {
		// One inode, its root's: nothing more can be created in it.
		full := mountFor(t, filepath.Join(t.TempDir(), "full"), "a tmpfs of one inode", func(at string) error {
			return syscall.Mount("tmpfs", at, "tmpfs", 0, "size=64k,nr_inodes=1")
		})
		check(t, filepath.Join(full, "d"), exitFailure)
	})
}

// mountFor mounts what mount makes at at, a new directory, unmounted when
// the test ends. Where this process may not mount (not root, or without
// CAP_SYS_ADMIN), the test is skipped, saying so.
func mountFor(t *testing.T, at, what string, mount func(at string) error) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skipf("needs root to mount %s; run as root to check it", what)
	}
	if err := os.Mkdir(at, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := mount(at); err != nil {
		syscall.Unmount(at, syscall.MNT_DETACH)
		t.Skipf("cannot mount %s here (%v); run where root may mount to check it", what, err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(at, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", at, err)
		}
	})
	return at
}

// TestADirTheDiskFailsOnIsAFailureWhateverItsError: a --dir whose making
// fails with an error of the disk that no test here can make happen on a
// real disk (EMLINK: a directory holding as many subdirectories as its
// file system allows; ESTALE: an NFS handle gone stale; EUCLEAN) is the
// operation failing, exit 1, as a full or read-only disk is; the path's
// own faults (under a file, a directory its user may not write, a name too
// long) stay exit 2. Before: EMLINK, ESTALE and EUCLEAN exited 2, as bad
// input.
func TestADirTheDiskFailsOnIsAFailureWhateverItsError(t *testing.T) {
	defer func(m func(string, os.FileMode) error) { mkdirAll = m }(mkdirAll)
	for _, tc := range []struct {
		err  syscall.Errno
		want int
	}{
		{syscall.EMLINK, exitFailure}, {syscall.ESTALE, exitFailure}, {syscall.EUCLEAN, exitFailure},
		{syscall.ENOSPC, exitFailure}, {syscall.EIO, exitFailure},
		{syscall.ENOTDIR, exitUsage}, {syscall.EACCES, exitUsage}, {syscall.ENAMETOOLONG, exitUsage},
	} {
		path := filepath.Join(t.TempDir(), "d")
		mkdirAll = func(p string, _ os.FileMode) error { return &os.PathError{Op: "mkdir", Path: p, Err: tc.err} }
		for _, cmd := range []string{"demo", "etcd"} {
			code, out, errs := runCmd(cmd, "--dir", path)
			// Every error of a command begins with its name, exit 1 as 2.
			if code != tc.want || !strings.HasPrefix(errs, "duplex: "+cmd+": --dir") || !strings.Contains(errs, tc.err.Error()) {
				t.Errorf("duplex %s --dir failing with %v: exit %d, stdout %q, stderr %q; want exit %d, beginning with the command and --dir, naming the error",
					cmd, tc.err, code, out, errs, tc.want)
			}
		}
	}
}
