//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package disk

import (
	"errors"
	"io"
	"math"
	"os"
)

var (
	errNoSpace = errors.New("no space left on device")
	errQuota   = errors.New("disk quota exceeded")
)

// lockFile only creates the lock file where flock is unavailable: nothing
// then stops two processes from opening one journal.
func lockFile(path string) (io.Closer, error) {
	return os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
}

// available does not know: the start check passes and a full disk shows
// as write errors.
func available(dir string) (int64, error) { return math.MaxInt64, nil }
