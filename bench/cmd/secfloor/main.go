// Command secfloor measures the least CPU a secondary can spend per
// replicated 4 KiB random write on this machine, step by step, with
// nothing of Duplex in the way: receiving the bytes from a TCP socket,
// checksumming them (CRC-32C), journaling them in groups (a copy into an
// aligned buffer, one O_DIRECT write and one fdatasync per group), and
// writing them to a volume file at random 4 KiB offsets (through the page
// cache: one pwrite each, writeback started after every group as the
// secondary does, an fdatasync every few groups). Each step is timed by
// the CPU time of the thread doing it (getrusage RUSAGE_THREAD: user +
// system), which a loaded machine disturbs much less than wall time, and
// which leaves out the Go runtime's own threads.
//
//	go run ./bench/cmd/secfloor -dir DIR            # a 1 GiB volume file in DIR, 300 writes a group
//
// The volume step has several variants, which take turns group by group:
// the data hot (one 4 KiB buffer written over and over, as fio's psync
// job does) or cold (each write's data taken from a 256 MiB region walked
// in order, as a secondary's data arrives in frames received tens of
// milliseconds before); a group's offsets in arrival order or sorted; the
// writeback started by another thread while the next group is written (as
// the secondary's checkpointer does); and past the page cache, O_DIRECT
// from an aligned buffer, one write at a time, a group's writes
// submitted together (Linux AIO), or a group's writes made by 16
// goroutines each doing pwrite. For the direct variants the CPU is not the
// wall time they wait for the device; for the last two it is the
// process's (every thread's: the AIO variant's thread waits in
// io_getevents meanwhile, and the runtime's monitor polls while it does),
// and with -process it is the process's for every step.
package main

import (
	"flag"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"
)

// cpu is the calling thread's CPU time, or with -process the process's:
// main locks itself to its thread, so by default the runtime's other
// threads (the garbage collector, the monitor) are not counted.
func cpu() time.Duration {
	if *processCPU {
		return selfCPU()
	}
	return threadCPU()
}

// threadCPU is the calling thread's CPU time.
func threadCPU() time.Duration {
	const rusageThread = 1
	var ru syscall.Rusage
	syscall.Getrusage(rusageThread, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// selfCPU is the process's CPU time, every thread's.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func aligned(n int) []byte {
	b := make([]byte, n+4096)
	skip := int(-uintptr(unsafe.Pointer(&b[0])) & 4095)
	return b[skip : skip+n]
}

// processCPU has every step timed by the process's CPU, every thread's:
// the runtime's monitor, which polls while a thread waits in a system
// call, is part of what a way of writing costs.
var processCPU = flag.Bool("process", false, "time every step by the process's CPU, not the thread's")

func main() {
	runtime.LockOSThread()
	dir := flag.String("dir", os.TempDir(), "directory of the scratch files (on the file system measured)")
	size := flag.Int64("size", 1<<30, "volume file size")
	writes := flag.Int("writes", 60000, "4 KiB writes per step")
	group := flag.Int("group", 300, "writes per group (journal record, writeback start)")
	syncEvery := flag.Int("sync-every", 5, "groups between fdatasyncs of the volume (a checkpoint)")
	flag.Parse()
	if err := run(*dir, *size, *writes, *group, *syncEvery); err != nil {
		fmt.Fprintln(os.Stderr, "secfloor:", err)
		os.Exit(1)
	}
}

func per(d time.Duration, n int) string {
	return fmt.Sprintf("%6.2f µs", float64(d.Nanoseconds())/float64(n)/1e3)
}

func run(dir string, size int64, writes, group, syncEvery int) error {
	cold := make([]byte, 256<<20)
	for i := 0; i < len(cold); i += 8 {
		cold[i] = byte(i >> 12)
	}
	// Socket: a sender goroutine writes 1 MiB frames; the receiver reads
	// them into one buffer. Only the receiver's share is wanted, but
	// getrusage counts the process: the sender's cost is measured alone
	// first (writing into a socket whose reader discards in the kernel is
	// not possible), so the receive cost is the pair's minus a send-only
	// estimate: both are printed.
	if err := sockets(writes, cold); err != nil {
		return err
	}
	c0 := cpu()
	tab := crc32.MakeTable(crc32.Castagnoli)
	var sum uint32
	for i := range writes {
		off := (i * 4096) % len(cold)
		sum = crc32.Update(sum, tab, cold[off:off+4096])
	}
	fmt.Printf("crc32c of 4 KiB (cold data)           %s\n", per(cpu()-c0, writes))

	// Journal: one record per group, copied into an aligned buffer and
	// written O_DIRECT, then fdatasync.
	jp := filepath.Join(dir, "secfloor.journal")
	jf, err := os.OpenFile(jp, os.O_RDWR|os.O_CREATE|os.O_TRUNC|syscall.O_DIRECT, 0o600)
	if err != nil {
		return err
	}
	defer os.Remove(jp)
	jbuf := aligned(group*4096 + 4096)
	c0 = cpu()
	var joff int64
	for g := 0; g < writes/group; g++ {
		n := 0
		for i := range group {
			off := ((g*group + i) * 4096) % len(cold)
			n += copy(jbuf[n:], cold[off:off+4096])
		}
		if _, err := jf.WriteAt(jbuf[:len(jbuf)], joff); err != nil {
			return fmt.Errorf("journal: %w", err)
		}
		joff += int64(len(jbuf))
		if joff > 512<<20 {
			joff = 0
		}
		if err := syscall.Fdatasync(int(jf.Fd())); err != nil {
			return err
		}
	}
	fmt.Printf("journal: copy + O_DIRECT write + fdatasync per %d writes  %s\n", group, per(cpu()-c0, writes/group*group))
	jf.Close()

	vp := filepath.Join(dir, "secfloor.volume")
	vf, err := os.OpenFile(vp, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	defer os.Remove(vp)
	defer vf.Close()
	if st, _ := vf.Stat(); st.Size() != size {
		buf := make([]byte, 1<<20)
		for off := int64(0); off < size; off += int64(len(buf)) {
			if _, err := vf.WriteAt(buf, off); err != nil {
				return err
			}
		}
	}
	blocks := size / 4096
	rng := rand.New(rand.NewPCG(1, 2))
	hot := make([]byte, 4096)
	type mode struct {
		name                              string
		cold, sorted, direct, beside, aio bool
		// pool counts the process's CPU (every thread), not the main
		// thread's: its writes are made by other threads.
		pool bool
	}
	modes := []mode{
		{name: "hot"},
		{name: "cold", cold: true},
		{name: "hot, sorted", sorted: true},
		{name: "cold, sorted", cold: true, sorted: true},
		{name: "cold, O_DIRECT, one at a time", cold: true, direct: true},
		{name: "cold, writeback started by another thread meanwhile", cold: true, beside: true},
		{name: "cold, O_DIRECT, a group at a time (Linux AIO, process CPU)", cold: true, direct: true, aio: true},
		{name: "cold, O_DIRECT, a group at a time by 16 goroutines (process CPU)", cold: true, direct: true, pool: true},
	}
	aio, err := newAIO(group)
	if err != nil {
		return err
	}
	abuf := aligned(group * 4096)
	df, err := os.OpenFile(vp, os.O_RDWR|syscall.O_DIRECT, 0)
	if err != nil {
		return err
	}
	defer df.Close()
	dbuf := aligned(4096)
	type poolWrite struct {
		b   []byte
		off int64
	}
	poolQ := make(chan poolWrite, group)
	var poolWG sync.WaitGroup
	var poolErr atomic.Value
	for range 16 {
		go func() {
			for w := range poolQ {
				if _, err := df.WriteAt(w.b, w.off); err != nil {
					poolErr.Store(err)
				}
				poolWG.Done()
			}
		}()
	}
	defer close(poolQ)
	if err := vf.Sync(); err != nil {
		return err
	}
	fadviseDontneed(vf)
	// The modes take turns group by group, so that a change in the
	// machine's load weighs on all alike.
	type tally struct {
		write, start, sync time.Duration
		n                  int
	}
	tallies := make([]tally, len(modes))
	offs := make([]int64, group)
	var pending chan struct{}
	var besideCPU time.Duration
	for g := 0; g < writes/group*len(modes); g++ {
		m := g % len(modes)
		mode := modes[m]
		for i := range offs {
			offs[i] = rng.Int64N(blocks) * 4096
		}
		if mode.sorted {
			slices.Sort(offs)
		}
		c0 := cpu()
		if mode.pool || mode.aio {
			c0 = selfCPU()
		}
		if mode.pool {
			poolWG.Add(len(offs))
			for i, off := range offs {
				o := ((g*group + i) * 4096) % len(cold)
				copy(abuf[i*4096:(i+1)*4096], cold[o:o+4096])
				poolQ <- poolWrite{abuf[i*4096 : (i+1)*4096], off}
			}
			poolWG.Wait()
			if err, _ := poolErr.Load().(error); err != nil {
				return err
			}
			tallies[m].write += selfCPU() - c0
			tallies[m].n += group
			continue
		}
		if mode.aio {
			for i := range offs {
				o := ((g*group + i) * 4096) % len(cold)
				copy(abuf[i*4096:(i+1)*4096], cold[o:o+4096])
			}
			if err := aio.write(df, abuf, offs); err != nil {
				return err
			}
			tallies[m].write += selfCPU() - c0
			tallies[m].n += group
			continue
		}
		for i, off := range offs {
			if mode.aio {
				break
			}
			src := hot
			if mode.cold {
				o := ((g*group + i) * 4096) % len(cold)
				src = cold[o : o+4096]
			}
			if mode.direct {
				// Copied into an aligned buffer, as the volume's direct
				// writes are; no writeback follows.
				copy(dbuf, src)
				if _, err := df.WriteAt(dbuf, off); err != nil {
					return err
				}
				continue
			}
			if _, err := vf.WriteAt(src, off); err != nil {
				return err
			}
		}
		c1 := cpu()
		if mode.beside {
			// As the secondary's checkpointer does, on a thread of its
			// own, while the next group is written.
			if pending != nil {
				<-pending
				t := &tallies[m]
				t.start += besideCPU
			}
			pending = make(chan struct{})
			go func(done chan struct{}) {
				runtime.LockOSThread()
				// Its own thread's even with -process: the process's
				// would count the main thread's writes meanwhile.
				c := threadCPU()
				syncFileRange(vf)
				besideCPU = threadCPU() - c
				close(done)
			}(pending)
		} else if !mode.direct {
			if err := syncFileRange(vf); err != nil {
				return err
			}
		}
		c2 := cpu()
		if g/len(modes)%syncEvery == syncEvery-1 {
			if err := syscall.Fdatasync(int(vf.Fd())); err != nil {
				return err
			}
		}
		t := &tallies[m]
		t.write, t.start, t.sync, t.n = t.write+c1-c0, t.start+c2-c1, t.sync+cpu()-c2, t.n+group
	}
	for m, t := range tallies {
		fmt.Printf("volume (%s): pwrite %s  start writeback %s  fdatasync %s  total %s\n",
			modes[m].name, per(t.write, t.n), per(t.start, t.n), per(t.sync, t.n), per(t.write+t.start+t.sync, t.n))
	}
	return nil
}

func sockets(writes int, cold []byte) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer ln.Close()
	const frame = 1 << 20
	total := int64(writes) * 4096
	go func() {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			return
		}
		defer c.Close()
		for off := int64(0); off < total; off += frame {
			o := off % int64(len(cold))
			c.Write(cold[o : o+frame])
		}
	}()
	c, err := ln.Accept()
	if err != nil {
		return err
	}
	defer c.Close()
	buf := make([]byte, frame)
	c0 := cpu()
	for got := int64(0); got < total; {
		n, err := io.ReadFull(c, buf)
		got += int64(n)
		if err != nil {
			return err
		}
	}
	fmt.Printf("loopback TCP send + receive, 1 MiB frames, per 4 KiB  %s\n", per(cpu()-c0, writes))
	return nil
}

func fadviseDontneed(f *os.File) {
	syscall.Syscall6(syscall.SYS_FADVISE64, f.Fd(), 0, 0, 4, 0, 0)
}

func syncFileRange(f *os.File) error {
	const write = 2 // SYNC_FILE_RANGE_WRITE
	_, _, e := syscall.Syscall6(syscall.SYS_SYNC_FILE_RANGE, f.Fd(), 0, 0, write, 0, 0)
	if e != 0 {
		return e
	}
	return nil
}

// aioCtx submits a group's direct writes in one io_submit and reaps them
// in one io_getevents (Linux native AIO): the device is told of them
// together rather than one write at a time.
type aioCtx struct {
	ctx    uintptr
	iocbs  []iocb
	ptrs   []*iocb
	events []ioEvent
}

type iocb struct {
	data            uint64
	key, rwFlags    uint32
	opcode, reqprio uint16
	fd              uint32
	buf, nbytes     uint64
	offset          int64
	reserved2       uint64
	flags, resfd    uint32
}

type ioEvent struct {
	data, obj uint64
	res, res2 int64
}

func newAIO(n int) (*aioCtx, error) {
	a := &aioCtx{iocbs: make([]iocb, n), ptrs: make([]*iocb, n), events: make([]ioEvent, n)}
	if _, _, e := syscall.Syscall(syscall.SYS_IO_SETUP, uintptr(n), uintptr(unsafe.Pointer(&a.ctx)), 0); e != 0 {
		return nil, fmt.Errorf("io_setup: %w", e)
	}
	return a, nil
}

func (a *aioCtx) write(f *os.File, buf []byte, offs []int64) error {
	const pwrite = 1 // IOCB_CMD_PWRITE
	for i, off := range offs {
		a.iocbs[i] = iocb{opcode: pwrite, fd: uint32(f.Fd()), buf: uint64(uintptr(unsafe.Pointer(&buf[i*4096]))), nbytes: 4096, offset: off}
		a.ptrs[i] = &a.iocbs[i]
	}
	n, _, e := syscall.Syscall(syscall.SYS_IO_SUBMIT, a.ctx, uintptr(len(offs)), uintptr(unsafe.Pointer(&a.ptrs[0])))
	if e != 0 || int(n) != len(offs) {
		return fmt.Errorf("io_submit: %d of %d: %v", n, len(offs), e)
	}
	for got := 0; got < len(offs); {
		m, _, e := syscall.Syscall6(syscall.SYS_IO_GETEVENTS, a.ctx, uintptr(len(offs)-got), uintptr(len(offs)-got), uintptr(unsafe.Pointer(&a.events[0])), 0, 0)
		if e == syscall.EINTR {
			continue
		}
		if e != 0 {
			return fmt.Errorf("io_getevents: %w", e)
		}
		for _, ev := range a.events[:m] {
			if ev.res != 4096 {
				return fmt.Errorf("aio write: %d", ev.res)
			}
		}
		got += int(m)
	}
	runtime.KeepAlive(buf)
	return nil
}
