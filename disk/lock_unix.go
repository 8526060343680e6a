//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package disk

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"syscall"
)

var (
	errNoSpace error = syscall.ENOSPC
	errQuota   error = syscall.EDQUOT
)

// lockFile takes an exclusive, non-blocking flock on path. flock rather than
// a pid file because the kernel drops it when the process dies, so a crash
// never leaves a stale lock for recovery to trip over. The holder writes its
// pid into the file, only so that a refused process can name it: the flock
// alone decides.
func lockFile(path string) (io.Closer, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder := "another process"
		if b, rerr := io.ReadAll(io.LimitReader(f, 32)); rerr == nil {
			if pid, perr := strconv.Atoi(strings.TrimSpace(string(b))); perr == nil && pid > 0 {
				holder = fmt.Sprintf("pid %d", pid)
			}
		}
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%s: already locked by %s", path, holder)
		}
		return nil, fmt.Errorf("%s: lock: %w", path, err)
	}
	// Not synced: after a crash the lock is free, and a stale pid names no
	// holder of it.
	if err := f.Truncate(0); err == nil {
		f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return flocked{f}, nil
}

// flocked is a file lockFile holds the flock of.
type flocked struct{ *os.File }

// Close lets the flock go, then closes the file. Closing alone lets it go
// only once every descriptor of the open file is closed, and a child the
// process forks holds a copy of each from its fork to its exec: a stop
// followed at once by a start in the same process (a restart, a
// promotion) was refused the lock its own stop had just let go.
func (l flocked) Close() error {
	uerr := syscall.Flock(int(l.Fd()), syscall.LOCK_UN)
	if err := l.File.Close(); err != nil {
		return err
	}
	if uerr != nil {
		return fmt.Errorf("%s: unlock: %w", l.Name(), uerr)
	}
	return nil
}

func available(dir string) (int64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, fmt.Errorf("statfs %s: %w", dir, err)
	}
	return int64(st.Bavail) * int64(st.Bsize), nil
}
