package testenv

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// LoopDevice attaches a loop device (of the given logical block size) over a
// new file of size bytes filled with fill, and returns its path (LoopDeviceOf).
func LoopDevice(t testing.TB, size int64, blockSize int, fill byte) string {
	t.Helper()
	return LoopDeviceOf(t, bytes.Repeat([]byte{fill}, int(size)), blockSize)
}

// LoopDeviceOf attaches a loop device (of the given logical block size) over
// a new file holding data, and returns its path. The device
// is released however the test ends, a crash of the test binary included:
// the test holds it open and detaches it at once, which makes the kernel
// detach it on its last close (autoclear).
func LoopDeviceOf(t testing.TB, data []byte, blockSize int) string {
	t.Helper()
	backing := filepath.Join(t.TempDir(), "backing.img")
	if err := os.WriteFile(backing, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return LoopDeviceOn(t, backing, blockSize)
}

// LoopDeviceOn attaches a loop device (of the given logical block size)
// over the existing file backing, released as LoopDeviceOf's is, and
// returns its path: a block device whose I/O reaches whatever serves the
// file (an nbdfuse mount of a disk that fails on demand).
func LoopDeviceOn(t testing.TB, backing string, blockSize int) string {
	t.Helper()
	if os.Geteuid() != 0 {
		Missing(t, "block-device volumes are tested on loop devices, which need root: run the tests as root")
	}
	if _, err := exec.LookPath("losetup"); err != nil {
		Missing(t, "losetup not installed: apt-get install util-linux")
	}
	if _, err := os.Stat("/dev/loop-control"); err != nil {
		Missing(t, "no loop device support here: %v", err)
	}
	out, err := exec.Command("losetup", "-f", "--show", "-b", fmt.Sprint(blockSize), backing).CombinedOutput()
	if err != nil {
		t.Fatalf("losetup -f --show %s: %v\n%s", backing, err, out)
	}
	dev := strings.TrimSpace(string(out))
	hold, err := os.Open(dev)
	if err != nil {
		exec.Command("losetup", "-d", dev).Run()
		t.Fatal(err)
	}
	t.Cleanup(func() { hold.Close() })
	if out, err := exec.Command("losetup", "-d", dev).CombinedOutput(); err != nil {
		t.Fatalf("losetup -d %s (held open, so it detaches on its last close): %v\n%s", dev, err, out)
	}
	return dev
}
