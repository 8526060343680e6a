package harness

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// FailingDisk is a block device (a loop device) whose reads and writes fail
// with EIO while Fail(true) holds: an nbdkit memory disk behind its error
// filter, mounted as a file by nbdfuse. It needs root, nbdkit, nbdfuse,
// fusermount3 and /dev/fuse.
type FailingDisk struct {
	// Dev is the block device.
	Dev     string
	mnt     string
	errFile string
	cmd     *exec.Cmd
	exited  chan struct{}
	hold    *os.File
}

// CanFailDisk says why NewFailingDisk cannot work here, or nil.
func CanFailDisk() error {
	if os.Geteuid() != 0 {
		return errors.New("a failing disk needs root (a loop device)")
	}
	for _, tool := range []string{"nbdkit", "nbdfuse", "fusermount3", "losetup"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("a failing disk needs %s: %w", tool, err)
		}
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		return fmt.Errorf("a failing disk needs /dev/fuse: %w", err)
	}
	if _, err := os.Stat("/dev/loop-control"); err != nil {
		return fmt.Errorf("a failing disk needs loop devices: %w", err)
	}
	return nil
}

// NewFailingDisk makes a failing disk of size bytes; dir holds its mount
// point and switch file.
func NewFailingDisk(dir string, size int64) (*FailingDisk, error) {
	if err := CanFailDisk(); err != nil {
		return nil, err
	}
	d := &FailingDisk{mnt: filepath.Join(dir, "failing-mnt"), errFile: filepath.Join(dir, "failing"), exited: make(chan struct{})}
	if err := os.MkdirAll(d.mnt, 0o755); err != nil {
		return nil, err
	}
	file := filepath.Join(d.mnt, "disk")
	d.cmd = exec.Command("nbdfuse", file, "--command", "nbdkit", "-s", "--filter=error", "memory", strconv.FormatInt(size, 10),
		"error-rate=100%", "error-file="+d.errFile, "error=EIO")
	DieWithParent(d.cmd)
	if err := d.cmd.Start(); err != nil {
		return nil, fmt.Errorf("nbdfuse: %w", err)
	}
	go func() { d.cmd.Wait(); close(d.exited) }()
	for deadline := time.Now().Add(30 * time.Second); ; {
		if st, err := os.Stat(file); err == nil && st.Size() == size {
			break
		}
		if time.Now().After(deadline) {
			d.Close()
			return nil, fmt.Errorf("nbdfuse did not mount %s in 30s", file)
		}
		time.Sleep(20 * time.Millisecond)
	}
	out, err := exec.Command("losetup", "-f", "--show", "-b", "512", file).CombinedOutput()
	if err != nil {
		d.Close()
		return nil, fmt.Errorf("losetup -f --show %s: %v: %s", file, err, out)
	}
	d.Dev = strings.TrimSpace(string(out))
	// Held open and detached at once: the loop device goes with its last
	// close, however the campaign ends.
	if d.hold, err = os.Open(d.Dev); err != nil {
		exec.Command("losetup", "-d", d.Dev).Run()
		d.Close()
		return nil, err
	}
	if out, err := exec.Command("losetup", "-d", d.Dev).CombinedOutput(); err != nil {
		d.Close()
		return nil, fmt.Errorf("losetup -d %s: %v: %s", d.Dev, err, out)
	}
	return d, nil
}

// Fail makes the disk's reads and writes fail (true) or work again.
func (d *FailingDisk) Fail(on bool) error {
	if on {
		return os.WriteFile(d.errFile, nil, 0o644)
	}
	if err := os.Remove(d.errFile); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// Close releases the loop device and unmounts the disk. The kernel may hold
// the file busy for a moment after the loop device's last close (writeback
// the failing disk refused), so the unmount is retried, then detached.
func (d *FailingDisk) Close() error {
	d.Fail(false)
	if d.hold != nil {
		d.hold.Close()
	}
	var out []byte
	var err error
	for deadline := time.Now().Add(10 * time.Second); ; {
		if out, err = exec.Command("fusermount3", "-u", d.mnt).CombinedOutput(); err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		exec.Command("fusermount3", "-u", "-z", d.mnt).Run()
		err = fmt.Errorf("fusermount3 -u %s: %v: %s", d.mnt, err, out)
	}
	select {
	case <-d.exited:
	case <-time.After(10 * time.Second):
		d.cmd.Process.Kill()
		<-d.exited
	}
	return err
}
