//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package disk

import (
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
)

var (
	errNoSpace error = syscall.ENOSPC
	errQuota   error = syscall.EDQUOT
)

// lockFile takes an exclusive, non-blocking flock on path. flock rather than
// a pid file because the kernel drops it when the process dies, so a crash
// never leaves a stale lock for recovery to trip over.
func lockFile(path string) (io.Closer, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%s: already locked by another holder", path)
		}
		return nil, fmt.Errorf("%s: lock: %w", path, err)
	}
	// Closing the descriptor drops the flock.
	return f, nil
}

func available(dir string) (int64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, fmt.Errorf("statfs %s: %w", dir, err)
	}
	return int64(st.Bavail) * int64(st.Bsize), nil
}
