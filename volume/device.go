package volume

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// openDevice opens the block device at path exclusively, for a volume of its
// own size; a configured size (non-zero) must equal it.
func openDevice(path string, size int64) (*Volume, error) {
	// O_EXCL without O_CREAT claims a block device: the open fails with
	// EBUSY while the device is mounted or claimed by another exclusive
	// opener, and nothing else can claim it while it is a volume here.
	f, err := os.OpenFile(path, os.O_RDWR|syscall.O_EXCL, 0)
	if errors.Is(err, syscall.EBUSY) {
		return nil, fmt.Errorf("volume %s: block device in use (mounted, part of a device-mapper or RAID device, or opened exclusively by another program): %w", path, err)
	}
	if err != nil {
		return nil, fmt.Errorf("volume %s: %w", path, err)
	}
	v, err := deviceVolume(path, f, size)
	if err != nil {
		f.Close()
		return nil, err
	}
	return v, nil
}

func deviceVolume(path string, f *os.File, size int64) (*Volume, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("volume %s: %w", path, err)
	}
	if !isBlockDevice(st.Mode()) {
		return nil, fmt.Errorf("volume %s: no longer a block device", path)
	}
	v := newVolume(path, f, 0)
	v.device = true
	var have uint64
	if err := v.control(func(fd int) error { return ioctlPtr(fd, unix.BLKGETSIZE64, unsafe.Pointer(&have)) }); err != nil {
		return nil, fmt.Errorf("volume %s: device size (BLKGETSIZE64): %w", path, err)
	}
	var bs int
	if err := v.control(func(fd int) (err error) { bs, err = unix.IoctlGetInt(fd, unix.BLKSSZGET); return err }); err != nil {
		return nil, fmt.Errorf("volume %s: logical block size (BLKSSZGET): %w", path, err)
	}
	switch {
	case have == 0:
		return nil, fmt.Errorf("volume %s: the block device is empty (0 bytes)", path)
	case size != 0 && uint64(size) != have:
		return nil, wrongSize("volume %s: the block device is %d bytes, configured size is %d: leave size out of the config to take the device's", path, have, size)
	case bs <= 0 || bs&(bs-1) != 0:
		return nil, fmt.Errorf("volume %s: logical block size %d", path, bs)
	}
	v.size, v.blockSize = int64(have), int64(bs)
	return v, nil
}

func ioctlPtr(fd int, req uint, arg unsafe.Pointer) error {
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), uintptr(req), uintptr(arg)); e != 0 {
		return e
	}
	return nil
}

// zeroDevice makes [off, off+length) of a block device read back as zeroes.
// The device's operations take whole logical blocks, so the ends of a range
// that does not start or end on a block boundary are written as zeroes.
//
// fallocate(PUNCH_HOLE) on a block device is a write-zeroes that may
// deallocate (the kernel does not fall back to writing: it fails with
// EOPNOTSUPP where the device cannot); BLKZEROOUT zeroes the range however
// the kernel can, writing zeroes if it must. Both drop the range from the
// page cache, which the writes share. A device that refuses one is not asked
// again. keepAllocated (ZeroAllocated) skips the hole punch, which may
// deallocate: BLKZEROOUT asks the kernel not to unmap the range
// (BLKDEV_ZERO_NOUNMAP).
func (v *Volume) zeroDevice(off, length int64, keepAllocated bool) error {
	bs := v.blockSize
	start := (off + bs - 1) / bs * bs
	end := (off + length) / bs * bs
	if start >= end {
		return v.writeZeroes(off, length)
	}
	if start > off {
		if err := v.writeZeroes(off, start-off); err != nil {
			return err
		}
	}
	if off+length > end {
		if err := v.writeZeroes(end, off+length-end); err != nil {
			return err
		}
	}
	if !keepAllocated && !v.noPunch.Load() {
		err := v.control(func(fd int) error {
			return unix.Fallocate(fd, unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, start, end-start)
		})
		if err == nil {
			return nil
		}
		if !unsupported(err) {
			return fmt.Errorf("volume %s: zero [%d, +%d) (fallocate): %w", v.path, start, end-start, err)
		}
		v.noPunch.Store(true)
	}
	if !v.noZeroout.Load() {
		r := [2]uint64{uint64(start), uint64(end - start)}
		err := v.control(func(fd int) error { return ioctlPtr(fd, unix.BLKZEROOUT, unsafe.Pointer(&r)) })
		if err == nil {
			return nil
		}
		if !unsupported(err) {
			return fmt.Errorf("volume %s: zero [%d, +%d) (BLKZEROOUT): %w", v.path, start, end-start, err)
		}
		v.noZeroout.Store(true)
	}
	return v.writeZeroes(start, end-start)
}

// unsupported reports whether err says the device or kernel cannot do an
// operation at all, rather than that it failed.
func unsupported(err error) bool {
	return errors.Is(err, syscall.EOPNOTSUPP) || errors.Is(err, syscall.EINVAL) ||
		errors.Is(err, syscall.ENOTTY) || errors.Is(err, syscall.ENOSYS)
}
