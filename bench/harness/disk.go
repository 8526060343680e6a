package harness

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// MountTmpfs mounts a tmpfs of size bytes at dir (created if needed), for a
// file system that a test can fill; it needs root. The returned function
// unmounts it.
func MountTmpfs(dir string, size int64) (unmount func() error, err error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("mounting a file system needs root")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%d", size), "tmpfs", dir).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("mount tmpfs at %s: %v: %s", dir, err, out)
	}
	return func() error {
		if out, err := exec.Command("umount", "-l", dir).CombinedOutput(); err != nil {
			return fmt.Errorf("umount %s: %v: %s", dir, err, out)
		}
		return nil
	}, nil
}

// fillerName is the file FillDisk writes and FreeDisk removes.
const fillerName = "duplex-filler"

// FillDisk writes a file in dir until its file system is full.
func FillDisk(dir string) error {
	f, err := os.Create(filepath.Join(dir, fillerName))
	if err != nil {
		return err
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	for {
		if _, err := f.Write(buf); err != nil {
			return nil // ENOSPC: full
		}
	}
}

// FreeDisk removes the file FillDisk wrote.
func FreeDisk(dir string) error {
	return os.Remove(filepath.Join(dir, fillerName))
}
