// Command mibcost measures, on one CPU, what each part of a 1 MiB write's
// path at the primary costs a MiB in CPU time of the thread doing it: the
// socket's copy into a buffer reused (as nbdkit reads every payload into
// one) or into one of many buffers touched once per pass (as a held burst's
// sidefile buffers are), the page cache's copy of a cached file's pages
// from either, the CRC-32C of a MiB, and the sender's CPU for a MiB sent
// over a loopback TCP connection (the record sets' one trip over the link).
//
//	go run ./bench/cmd/mibcost -file IMG   # the measured thread on CPU 0, its peer on CPU 1
//
// Each figure is the thread's CPU time (CLOCK_THREAD_CPUTIME_ID) over
// -mib MiB, the median of -passes passes. The measured thread pins itself
// to -cpu and the socket's other end to -peer-cpu, so that the peer's work
// is not counted; on loopback the sender's CPU also runs the TCP receive
// path (its softirq), the receiver's only its copy out. -file's first -mib
// MiB are overwritten.
//
//	taskset -c 0 mibcost -file IMG -pieces 1024,256,128,64   # that alone
//
// -pieces measures instead the 1 MiB pwrite cut into pieces of each size,
// over the whole process (its CPU time, every thread's, and its context
// switches), on a goroutine the runtime sees in a system call that may
// block, as the volume's pwrite is: at one processor (taskset -c 0) its
// monitor thread's part is counted too.
package main

import (
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"duplex/crc32c"
)

const mib = 1 << 20

func threadCPU() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		log.Fatal(err)
	}
	return time.Duration(ts.Nano())
}

func pin(cpu int) {
	runtime.LockOSThread()
	var set unix.CPUSet
	set.Set(cpu)
	if err := unix.SchedSetaffinity(0, &set); err != nil {
		log.Fatal(err)
	}
}

// bufs returns n distinct MiB buffers, every page touched (populated).
func bufs(n int) [][]byte {
	b := make([][]byte, n)
	for i := range b {
		b[i] = make([]byte, mib)
		for j := 0; j < mib; j += 4096 {
			b[i][j] = byte(i + j)
		}
	}
	return b
}

var (
	cpu     = flag.Int("cpu", 0, "CPU of the measured thread")
	peerCPU = flag.Int("peer-cpu", 1, "CPU of the peer thread (the socket's other end)")
	n       = flag.Int("mib", 256, "MiB a pass: the burst's")
	passes  = flag.Int("passes", 7, "passes a figure, the median kept")
	file    = flag.String("file", "", "a file of at least -mib MiB for the page cache's copy (read whole first, so overwrites of cached pages)")
	pieces  = flag.String("pieces", "", "with -file: piece sizes in KiB, comma-separated (1024: whole), for the 1 MiB pwrite cut in pieces, measured at the process's processors as started (taskset -c 0: one) over all its threads, and nothing else measured")
)

// measure runs f passes times on a pinned thread and returns the median CPU
// time a MiB in µs.
func measure(name string, f func()) {
	var per []float64
	done := make(chan struct{})
	go func() {
		pin(*cpu)
		for range *passes {
			t := threadCPU()
			f()
			per = append(per, float64(threadCPU()-t)/float64(time.Microsecond)/float64(*n))
		}
		close(done)
	}()
	<-done
	slices.Sort(per)
	fmt.Printf("%-58s %7.1f µs a MiB (min %.1f, max %.1f)\n", name, per[len(per)/2], per[0], per[len(per)-1])
}

// pair returns both ends of a loopback TCP connection.
func pair() (net.Conn, net.Conn) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()
	ch := make(chan net.Conn)
	go func() {
		c, err := l.Accept()
		if err != nil {
			log.Fatal(err)
		}
		ch <- c
	}()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		log.Fatal(err)
	}
	return c, <-ch
}

// feeder writes from one hot MiB, pinned to the peer CPU, mibs MiB at a
// time, each time it is told to.
func feeder(c net.Conn, go_ chan int) {
	pin(*peerCPU)
	src := make([]byte, mib)
	for k := range go_ {
		for range k {
			if _, err := c.Write(src); err != nil {
				log.Fatal(err)
			}
		}
	}
}

// drainer reads everything, pinned to the peer CPU, into one buffer.
func drainer(c net.Conn) {
	pin(*peerCPU)
	buf := make([]byte, mib)
	for {
		if _, err := c.Read(buf); err != nil {
			return
		}
	}
}

func main() {
	flag.Parse()
	if *pieces != "" {
		measurePieces()
		return
	}
	hot := make([]byte, mib)
	for i := range hot {
		hot[i] = byte(i)
	}
	cold := bufs(*n)

	measure("copy 1 MiB, hot buffer to hot buffer", func() {
		dst := make([]byte, mib)
		for range *n {
			copy(dst, hot)
		}
	})
	measure("copy 1 MiB, hot buffer to the next of N (touched once)", func() {
		for i := range *n {
			copy(cold[i], hot)
		}
	})
	measure("CRC-32C of 1 MiB, hot", func() {
		for range *n {
			crc32c.Checksum(hot)
		}
	})
	measure("CRC-32C of 1 MiB, the next of N", func() {
		for i := range *n {
			crc32c.Checksum(cold[i])
		}
	})

	// The socket's copy: a peer on the other CPU sends, the measured thread
	// reads a MiB at a time.
	rc, wc := pair()
	feed := make(chan int)
	go feeder(wc, feed)
	recv := func(dst func(int) []byte) func() {
		return func() {
			go func() { feed <- *n }()
			for i := range *n {
				if _, err := io.ReadFull(rc, dst(i)); err != nil {
					log.Fatal(err)
				}
			}
		}
	}
	measure("recv 1 MiB from loopback TCP into one reused buffer", recv(func(int) []byte { return hot }))
	measure("recv 1 MiB from loopback TCP into the next of N", recv(func(i int) []byte { return cold[i] }))
	close(feed)
	rc.Close()
	wc.Close()

	// The sender's side: the measured thread writes, a drainer on the
	// other CPU reads.
	sc, dc := pair()
	go drainer(dc)
	measure("send 1 MiB over loopback TCP from one hot buffer", func() {
		for range *n {
			if _, err := sc.Write(hot); err != nil {
				log.Fatal(err)
			}
		}
	})
	measure("send 1 MiB over loopback TCP from the next of N", func() {
		for i := range *n {
			if _, err := sc.Write(cold[i]); err != nil {
				log.Fatal(err)
			}
		}
	})
	measure("send 1 MiB over loopback TCP, 4 writev of 256 KiB from N", func() {
		for i := range *n {
			b := net.Buffers{cold[i][:256<<10], cold[i][256<<10 : 512<<10], cold[i][512<<10 : 768<<10], cold[i][768<<10:]}
			if _, err := b.WriteTo(sc); err != nil {
				log.Fatal(err)
			}
		}
	})
	sc.Close()
	dc.Close()

	if *file == "" {
		return
	}
	f, err := os.OpenFile(*file, os.O_RDWR, 0)
	if err != nil {
		log.Fatal(err)
	}
	warm := func() {
		buf := make([]byte, mib)
		for i := range *n {
			if _, err := f.ReadAt(buf, int64(i)*mib); err != nil {
				log.Fatal(err)
			}
		}
	}
	warm()
	measure("pwrite 1 MiB over cached pages, from one hot buffer", func() {
		for i := range *n {
			if _, err := f.WriteAt(hot, int64(i)*mib); err != nil {
				log.Fatal(err)
			}
		}
	})
	measure("pwrite 1 MiB over cached pages, from the next of N", func() {
		for i := range *n {
			if _, err := f.WriteAt(cold[i], int64(i)*mib); err != nil {
				log.Fatal(err)
			}
		}
	})
	if err := f.Sync(); err != nil {
		log.Fatal(err)
	}
	f.Close()
}

// processCPU is the CPU time of every thread of the process, the runtime's
// monitor and the threads it hands the processor to included.
func processCPU() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_PROCESS_CPUTIME_ID, &ts); err != nil {
		log.Fatal(err)
	}
	return time.Duration(ts.Nano())
}

// switches is the process's context switches so far, voluntary or not.
func switches() int64 {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		log.Fatal(err)
	}
	return ru.Nvcsw + ru.Nivcsw
}

// measurePieces writes -mib MiB over the cached pages of -file, a MiB at a
// time, each MiB as pwrites of each -pieces size in turn (the sizes
// alternated pass by pass), from one hot buffer, on a goroutine not locked
// to its thread: the runtime sees each pwrite as a system call that may
// block, as it sees the volume's. Reported a MiB: the process's CPU time,
// its context switches and the wall time, medians over -passes.
func measurePieces() {
	var sizes []int
	for _, f := range strings.Split(*pieces, ",") {
		k, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || k <= 0 || k > 1024 || 1024%k != 0 {
			log.Fatalf("-pieces: %q is not a divisor of 1024 KiB", f)
		}
		sizes = append(sizes, k<<10)
	}
	if *file == "" {
		log.Fatal("-pieces needs -file")
	}
	f, err := os.OpenFile(*file, os.O_RDWR, 0)
	if err != nil {
		log.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, mib)
	for i := range *n {
		if _, err := f.ReadAt(buf, int64(i)*mib); err != nil {
			log.Fatal(err)
		}
	}
	for i := range buf {
		buf[i] = byte(i)
	}
	type sample struct{ cpu, sw, wall float64 }
	got := make([][]sample, len(sizes))
	for range *passes {
		for k, size := range sizes {
			c, w, t := processCPU(), switches(), time.Now()
			for i := range *n {
				for o := 0; o < mib; o += size {
					if _, err := f.WriteAt(buf[o:o+size], int64(i)*mib+int64(o)); err != nil {
						log.Fatal(err)
					}
				}
			}
			got[k] = append(got[k], sample{
				cpu:  float64(processCPU()-c) / float64(time.Microsecond) / float64(*n),
				sw:   float64(switches()-w) / float64(*n),
				wall: float64(time.Since(t)) / float64(time.Microsecond) / float64(*n),
			})
		}
	}
	fmt.Printf("GOMAXPROCS %d, %d MiB a pass, medians of %d passes (min-max)\n", runtime.GOMAXPROCS(0), *n, *passes)
	for k, size := range sizes {
		med := func(get func(sample) float64) string {
			v := make([]float64, len(got[k]))
			for i, s := range got[k] {
				v[i] = get(s)
			}
			slices.Sort(v)
			return fmt.Sprintf("%6.1f (%.1f-%.1f)", v[len(v)/2], v[0], v[len(v)-1])
		}
		fmt.Printf("pwrite 1 MiB as %4d KiB pieces: process CPU µs a MiB %s, switches a MiB %s, wall µs a MiB %s\n",
			size>>10, med(func(s sample) float64 { return s.cpu }), med(func(s sample) float64 { return s.sw }), med(func(s sample) float64 { return s.wall }))
	}
}
