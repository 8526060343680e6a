// Package freeport reserves loopback ports for listeners that a daemon binds
// later: the addresses the tests and the benchmark harness write into a
// session's config before starting its sites, and that a site killed and
// started again, or rejoined, binds once more.
//
// Closing a socket bound to port 0 and binding its port again races with
// every process on the machine: the kernel hands that port to the next one
// that binds port 0 or connects anywhere, and CI runs every package's tests
// at once. So the ports come from below the kernel's ephemeral range (above
// it where the range starts too low), which the kernel never hands out by
// itself, and each is reserved by a lock file
// (flock) that every picker, in any process, respects. The lock ends with
// the process, however it ends (kill -9 included), so a file left behind by
// a dead picker reserves nothing: the next picker locks it again. The files
// stay, empty, one per port ever picked, at most one per port of the range.
package freeport

import (
	"fmt"
	mrand "math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
)

// Dir holds the lock files: in /tmp, whatever TMPDIR says, since every
// picker on the machine must lock the same files (pam_tmpdir gives each
// user a TMPDIR of their own, a job runner may give each job one). Where
// /tmp cannot hold it, Addrs uses TMPDIR's (a sandbox without a /tmp of
// its own). The name predates this package: pickers built before it (the
// benchmark harness of older binaries) lock the same files.
var Dir = filepath.Join("/tmp", dirName)

const dirName = "duplex-harness-ports"

var (
	mu       sync.Mutex
	reserved []*os.File // locked for the life of the process
)

// Addrs returns n distinct free loopback addresses ("127.0.0.1:PORT"),
// each reserved against every other picker for the life of the process.
// A port some other program holds is skipped.
func Addrs(n int) ([]string, error) {
	base, top := Range()
	if top-base < 4*n {
		eph, ephHi := EphemeralRange()
		return nil, fmt.Errorf("free addresses: ports %d-%d outside the ephemeral range %d-%d leave no room for %d", base, top, eph, ephHi, n)
	}
	mu.Lock()
	defer mu.Unlock()
	if err := os.MkdirAll(Dir, 0o777); err != nil {
		alt := filepath.Join(os.TempDir(), dirName)
		if alt == Dir || os.MkdirAll(alt, 0o777) != nil {
			return nil, fmt.Errorf("free addresses: the lock directory: %w", err)
		}
		Dir = alt
	}
	dir, err := openLockDir(Dir)
	if err != nil {
		return nil, fmt.Errorf("free addresses: %w", err)
	}
	defer syscall.Close(dir)
	var out []string
	var lastErr error
	for tries := 0; len(out) < n; tries++ {
		if tries > 100*n+1000 {
			return nil, fmt.Errorf("free addresses: found %d of %d free ports in %d-%d (last error: %v)", len(out), n, base, top, lastErr)
		}
		port := base + mrand.IntN(top-base+1)
		f, err := openLockFile(dir, strconv.Itoa(port))
		if err != nil {
			lastErr = err
			continue
		}
		if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) != nil {
			f.Close() // reserved by another picker, or by this one
			continue
		}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			lastErr = err
			f.Close() // some other program holds it
			continue
		}
		ln.Close()
		reserved = append(reserved, f)
		out = append(out, addr)
	}
	return out, nil
}

// openLockDir opens the lock directory, which must be one: in /tmp any user
// may have made the name first, and a symlink there would have a picker
// running as root (CI) make its target world-writable, and make files
// wherever the symlinks planted in it point. Its owner makes it shared by
// every user's pickers, as /tmp is, and sticky as /tmp is: a lock file held
// by one user's picker cannot be removed by another's (the next picker
// would lock a new file of that name, and both hold the port).
func openLockDir(path string) (int, error) {
	fd, err := syscall.Open(path, syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("the lock directory %s (a directory, not a symlink): %w", path, err)
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err == nil && int(st.Uid) == os.Geteuid() {
		syscall.Fchmod(fd, syscall.S_ISVTX|0o777)
	}
	return fd, nil
}

// openLockFile opens the lock file name in the lock directory dir, making
// it if there is none, and never through a symlink. Read-only is enough for
// flock, and opens another user's file; an existing file is opened without
// O_CREAT, which fs.protected_regular refuses for another user's file in a
// sticky directory.
func openLockFile(dir int, name string) (*os.File, error) {
	const flags = syscall.O_RDONLY | syscall.O_NOFOLLOW | syscall.O_CLOEXEC
	fd, err := syscall.Openat(dir, name, flags, 0)
	if err == syscall.ENOENT {
		fd, err = syscall.Openat(dir, name, flags|syscall.O_CREAT, 0o644)
	}
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: filepath.Join(Dir, name), Err: err}
	}
	return os.NewFile(uintptr(fd), filepath.Join(Dir, name)), nil
}

// Range returns the ports Addrs picks from: the 16384 below the kernel's
// ephemeral range, and none below 16384 (where the well-known services
// listen). A range that starts too low to leave minRoom below it (some
// hosts widen it to 1024-60999) leaves the ports above it, if more.
func Range() (lo, hi int) {
	eph, ephHi := EphemeralRange()
	lo, hi = max(16384, eph-16384), eph-1
	if room := hi - lo + 1; room < minRoom && 65535-ephHi > room {
		return ephHi + 1, 65535
	}
	return lo, hi
}

// minRoom is the fewest ports below the ephemeral range that Range takes
// before it looks above.
const minRoom = 1024

// rangeFile holds the kernel's ephemeral range (a variable for the tests).
var rangeFile = "/proc/sys/net/ipv4/ip_local_port_range"

// EphemeralRange returns the kernel's range of ports for port 0 and
// outgoing connections.
func EphemeralRange() (lo, hi int) {
	lo, hi = 32768, 60999
	if b, err := os.ReadFile(rangeFile); err == nil {
		var l, h int
		if n, _ := fmt.Sscan(string(b), &l, &h); n == 2 && l > 0 && h >= l {
			lo, hi = l, h
		}
	}
	return lo, hi
}
