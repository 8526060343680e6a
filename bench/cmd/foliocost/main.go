// Command foliocost measures what a copy's reads of a volume do to the users'
// small writes into it afterwards: it reads a file whole, in a chosen way,
// then times 4 KiB random pwrites into it.
//
//	go run ./bench/cmd/foliocost -file IMG -read buffered   # as a copy read before
//	go run ./bench/cmd/foliocost -file IMG -read direct     # O_DIRECT, as a copy reads now
//
// Reads: none (the file's pages were just dropped), buffered (pread through
// the page cache), buffered-dontneed (each read followed by
// posix_fadvise(DONTNEED) of its range), buffered-dontneed-all (one
// DONTNEED of the whole file after the reads), direct (O_DIRECT). Before the
// reads the file is synced and dropped from the page cache; the writes go
// through a plain descriptor, as the primary's volume writes do.
package main

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"syscall"
	"time"
	"unsafe"
)

const fadvDontneed = 4

func fadviseDontneed(f *os.File, off, n int64) error {
	if _, _, e := syscall.Syscall6(syscall.SYS_FADVISE64, f.Fd(), uintptr(off), uintptr(n), fadvDontneed, 0, 0); e != 0 {
		return e
	}
	return nil
}

func main() {
	path := flag.String("file", "", "image file (created and filled if it does not have -size bytes)")
	size := flag.Int64("size", 256<<20, "file size in bytes")
	how := flag.String("read", "buffered", "none|buffered|buffered-dontneed|buffered-dontneed-all|direct")
	chunk := flag.Int("chunk", 64<<10, "read size: a copy reads one 64 KiB region at a time")
	writes := flag.Int("writes", 20000, "4 KiB random writes to time")
	flag.Parse()
	if *path == "" {
		fmt.Fprintln(os.Stderr, "foliocost: -file is required")
		os.Exit(2)
	}
	if err := run(*path, *size, *how, *chunk, *writes); err != nil {
		fmt.Fprintln(os.Stderr, "foliocost:", err)
		os.Exit(1)
	}
}

func run(path string, size int64, how string, chunk, writes int) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil {
		return err
	} else if st.Size() != size {
		buf := make([]byte, 1<<20)
		for i := range buf {
			buf[i] = byte(rand.Uint32())
		}
		if err := f.Truncate(0); err != nil {
			return err
		}
		for off := int64(0); off < size; off += int64(len(buf)) {
			if _, err := f.WriteAt(buf[:min(int64(len(buf)), size-off)], off); err != nil {
				return err
			}
		}
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := fadviseDontneed(f, 0, 0); err != nil {
		return err
	}

	start := time.Now()
	switch how {
	case "none":
	case "buffered", "buffered-dontneed", "buffered-dontneed-all":
		buf := make([]byte, chunk)
		for off := int64(0); off < size; off += int64(chunk) {
			n := min(int64(chunk), size-off)
			if _, err := f.ReadAt(buf[:n], off); err != nil {
				return err
			}
			if how == "buffered-dontneed" {
				if err := fadviseDontneed(f, off, n); err != nil {
					return err
				}
			}
		}
		if how == "buffered-dontneed-all" {
			if err := fadviseDontneed(f, 0, 0); err != nil {
				return err
			}
		}
	case "direct":
		d, err := os.OpenFile(path, os.O_RDONLY|syscall.O_DIRECT, 0)
		if err != nil {
			return err
		}
		defer d.Close()
		raw := make([]byte, chunk+4096)
		skip := (4096 - int(uintptr(unsafe.Pointer(&raw[0]))%4096)) % 4096
		buf := raw[skip : skip+chunk]
		for off := int64(0); off < size; off += int64(chunk) {
			if _, err := d.ReadAt(buf, off); err != nil {
				return err
			}
		}
	default:
		return fmt.Errorf("unknown -read %q", how)
	}
	read := time.Since(start)

	wb := make([]byte, 4096)
	for i := range wb {
		wb[i] = byte(i)
	}
	blocks := size / 4096
	rng := rand.New(rand.NewPCG(1, 2))
	start = time.Now()
	for range writes {
		if _, err := f.WriteAt(wb, rng.Int64N(blocks)*4096); err != nil {
			return err
		}
	}
	el := time.Since(start)
	fmt.Printf("read=%-22s chunk=%-8d reads took %-8s %d writes of 4 KiB: %6.1f µs each\n",
		how, chunk, read.Round(time.Millisecond), writes, float64(el.Nanoseconds())/float64(writes)/1e3)
	return f.Sync()
}
