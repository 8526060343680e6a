// Command applyfloor runs the least any journal-then-apply replicator must
// do for sustained 1 MiB writes, on this machine, and counts the CPU it
// takes per applied MiB: the floor of the apply section's stream, against
// which Duplex's apply rate is read when the two CPUs, not the disk, bind.
//
// fio writes 1 MiB blocks at queue depth 4 over NBD (Duplex's NBD server,
// as in nbdfloor) to a primary volume file through the page cache, whose
// writeback an fdatasync every 64 MiB starts; each write is then sent
// whole over a loopback TCP connection (a 16-byte header and the bytes,
// one writev). The receiving side reads each payload straight into a
// block-aligned slot of a 4 MiB batch, writes the batch to a circular
// journal file and fdatasyncs it, then writes each update to a secondary
// volume file (fdatasync every 64 MiB). Nothing else: no sidefile, no
// acknowledgements, no checksums but with -crc; TCP's flow control paces
// the primary to the secondary. With -buffered the journal and the
// secondary's volume are written through the page cache (the limit's own
// pattern, the kernel's writeback counted) instead of O_DIRECT.
//
// Over fio's run, from 2 s after its start to 1 s before its end, it
// counts the bytes applied and the CPU time of the whole machine
// (/proc/stat) and of every process (/proc/PID/stat): this one, fio's,
// the kernel's threads (kworker writeback, ksoftirqd, jbd2) and the rest
// (other work on the machine).
//
//	applyfloor -dir DIR [-runtime 15s] [-buffered] [-crc] [-journals 2]
//	applyfloor -sample 150s > FILE   # the counters each second, no pipeline
package main

import (
	"bufio"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"duplex/bench/fiojson"
	"duplex/bench/harness"
	"duplex/disk"
	"duplex/nbd"
	"duplex/volume"
)

const (
	mib        = 1 << 20
	slot       = disk.DirectAlign + mib // a record: a header block and a payload of at most 1 MiB
	perBatch   = 4                      // records a batch: an fdatasync every 4 MiB
	batches    = 8                      // batches in flight between receive, journal and apply (32 MiB)
	journalLen = 64 * perBatch * slot   // the circular journal, 256 MiB of payload
	syncEvery  = 64 * mib               // a volume's fdatasync
	hdrLen     = 16
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

var (
	dir        = flag.String("dir", "", "directory for the volumes and the journal (created)")
	size       = flag.Int64("size", 1<<30, "volume size in bytes")
	runFor     = flag.Duration("runtime", 15*time.Second, "fio's run")
	buffered   = flag.Bool("buffered", false, "the journal and the secondary's volume through the page cache, not O_DIRECT")
	sums       = flag.Bool("crc", false, "a CRC-32C of each write at both ends, as a replicator checking its data takes (the primary's as the write arrives, the secondary's as it is received)")
	journals   = flag.Int("journals", 1, "batches written to the journal at once (each write then its fdatasync)")
	primaryDir = flag.String("primary-dir", "", "directory for the primary's volume, if not -dir (say /dev/shm: the primary's writes off the secondary's disk)")
	keep       = flag.Bool("keep", false, "keep the files in -dir")
	diskName   = flag.String("disk", "vda", "the disk whose writes and busy time are counted (/sys/block/DISK/stat)")
	sample     = flag.Duration("sample", 0, "run no pipeline: print the machine's and the processes' CPU ticks every second for this long (to read another stream's window, say Duplex's, afterwards)")
)

func main() {
	flag.Parse()
	if *sample > 0 {
		if err := samples(*sample); err != nil {
			fmt.Fprintln(os.Stderr, "applyfloor:", err)
			os.Exit(1)
		}
		return
	}
	if *dir == "" {
		fmt.Fprintln(os.Stderr, "applyfloor: -dir is required")
		os.Exit(2)
	}
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "applyfloor:", err)
		os.Exit(1)
	}
}

func run() error {
	if err := os.MkdirAll(*dir, 0o755); err != nil {
		return err
	}
	if !*keep {
		defer func() {
			for _, n := range []string{"primary.img", "secondary.img", "journal"} {
				os.Remove(filepath.Join(*dir, n))
			}
		}()
	}
	pd := *dir
	if *primaryDir != "" {
		pd = *primaryDir
		if !*keep {
			defer os.Remove(filepath.Join(pd, "primary.img"))
		}
	}
	prim, sec, jrn := filepath.Join(pd, "primary.img"), filepath.Join(*dir, "secondary.img"), filepath.Join(*dir, "journal")
	// Written whole first, as the bench's volumes are copies of a
	// prefilled image: no block is allocated during the run.
	for _, f := range []struct {
		path string
		n    int64
	}{{prim, *size}, {sec, *size}, {jrn, journalLen}} {
		if err := prefill(f.path, f.n); err != nil {
			return err
		}
	}

	s, err := newSecondary(sec, jrn)
	if err != nil {
		return err
	}
	sln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	go s.serve(sln)
	conn, err := net.Dial("tcp", sln.Addr().String())
	if err != nil {
		return err
	}
	v, err := volume.Open(prim, *size)
	if err != nil {
		return err
	}
	defer v.Close()
	p := &primary{v: v, conn: conn, sync: make(chan struct{}, 1)}
	go p.syncer()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &nbd.Server{Exports: p}
	go srv.Serve(ln)
	defer srv.Close()

	fio := exec.Command("fio", "--name=write-1m-qd4", "--ioengine=nbd", "--uri=nbd://"+ln.Addr().String()+"/floor",
		"--rw=write", "--bs=1M", "--iodepth=4", fmt.Sprintf("--size=%d", *size), "--time_based",
		fmt.Sprintf("--runtime=%d", int(runFor.Seconds())), "--norandommap", "--randrepeat=0",
		"--output-format=json")
	var fioOut, fioErr strings.Builder
	fio.Stdout, fio.Stderr = &fioOut, &fioErr
	if err := fio.Start(); err != nil {
		return fmt.Errorf("fio: %w", err)
	}
	start := time.Now()
	var s0, s1 snapshot
	sampled := make(chan error, 1)
	go func() {
		time.Sleep(2 * time.Second)
		var err error
		s0, err = take(s, nil)
		if err == nil {
			time.Sleep(time.Until(start.Add(*runFor - time.Second)))
			s1, err = take(s, &s0)
		}
		sampled <- err
	}()
	werr := fio.Wait()
	if err := <-sampled; err != nil {
		return err
	}
	if werr != nil {
		return fmt.Errorf("fio: %w\n%s", werr, fioErr.String())
	}
	if err := s.failed(); err != nil {
		return err
	}
	jobs, err := fiojson.Parse([]byte(fioOut.String()))
	if err != nil {
		return fmt.Errorf("fio: %w", err)
	}
	report(s0, s1)
	fmt.Printf("fio write bandwidth %.1f MiB/s\n", jobs[0].MiBps())
	return nil
}

// prefill writes n bytes to path and drops them from the page cache.
func prefill(path string, n int64) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	b := make([]byte, mib)
	for i := range b {
		b[i] = byte(i)
	}
	for off := int64(0); off < n; off += mib {
		if _, err := f.WriteAt(b, off); err != nil {
			return fmt.Errorf("prefill %s: %w", path, err)
		}
	}
	if err := syscall.Fdatasync(int(f.Fd())); err != nil {
		return fmt.Errorf("prefill %s: %w", path, err)
	}
	const fadvDontneed = 4
	_, _, _ = syscall.Syscall6(syscall.SYS_FADVISE64, f.Fd(), 0, 0, fadvDontneed, 0, 0)
	return nil
}

// primary is the NBD export: each write goes to the volume, then whole to
// the secondary.
type primary struct {
	v       *volume.Volume
	mu      sync.Mutex
	conn    net.Conn
	written int64 // under mu
	sync    chan struct{}
}

func (p *primary) Lookup(string) (nbd.Export, bool) { return p, true }
func (p *primary) Names() []string                  { return []string{"floor"} }
func (p *primary) Size() int64                      { return p.v.Size() }
func (p *primary) ReadOnly() bool                   { return false }
func (p *primary) ReadAt(b []byte, off int64) error { return p.v.ReadAt(b, off) }
func (p *primary) WriteZeroes(off, n int64) error   { return p.v.WriteZeroes(off, n) }
func (p *primary) Trim(off, n int64) error          { return p.v.Trim(off, n) }
func (p *primary) Flush() error                     { return p.v.Flush() }

func (p *primary) WriteAt(b []byte, off int64) error {
	if len(b) > mib || len(b)%disk.DirectAlign != 0 || off%disk.DirectAlign != 0 {
		return fmt.Errorf("write of %d at %d: only whole blocks up to 1 MiB", len(b), off)
	}
	if err := p.v.WriteAt(b, off); err != nil {
		return err
	}
	var h [hdrLen]byte
	binary.LittleEndian.PutUint64(h[:], uint64(off))
	binary.LittleEndian.PutUint32(h[8:], uint32(len(b)))
	if *sums {
		binary.LittleEndian.PutUint32(h[12:], crc32.Checksum(b, castagnoli))
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	bufs := net.Buffers{h[:], b}
	if _, err := bufs.WriteTo(p.conn); err != nil {
		return fmt.Errorf("send: %w", err)
	}
	if p.written += int64(len(b)); p.written >= syncEvery {
		p.written = 0
		select {
		case p.sync <- struct{}{}:
		default:
		}
	}
	return nil
}

// syncer writes the primary's volume back as a real site must, each byte
// once, so that its writeback falls in the window counted.
func (p *primary) syncer() {
	for range p.sync {
		_ = p.v.Flush()
	}
}

// batch is perBatch records laid out as they go to the journal.
type batch struct {
	buf  []byte
	offs []int64
	lens []int
}

type secondary struct {
	vol, jrn      *os.File
	free, journal chan *batch
	apply         chan *batch
	applied       atomic.Int64
	mu            sync.Mutex
	err           error
	at            int64 // the journal's next write, under mu
}

func newSecondary(vol, jrn string) (*secondary, error) {
	flags := os.O_RDWR
	if !*buffered {
		flags |= syscall.O_DIRECT
	}
	v, err := os.OpenFile(vol, flags, 0)
	if err != nil {
		return nil, err
	}
	j, err := os.OpenFile(jrn, flags, 0)
	if err != nil {
		return nil, err
	}
	s := &secondary{vol: v, jrn: j, free: make(chan *batch, batches), journal: make(chan *batch, batches), apply: make(chan *batch, batches)}
	for range batches {
		s.free <- &batch{buf: disk.DirectBuffer(perBatch * slot)}
	}
	for range *journals {
		go s.journaler()
	}
	go s.applier()
	return s, nil
}

func (s *secondary) fail(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err == nil {
		s.err = err
	}
}

func (s *secondary) failed() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// serve receives one stream: each payload read straight into its slot.
func (s *secondary) serve(ln net.Listener) {
	c, err := ln.Accept()
	if err != nil {
		s.fail(err)
		return
	}
	r := bufio.NewReaderSize(c, 64<<10)
	var h [hdrLen]byte
	for {
		b := <-s.free
		b.offs, b.lens = b.offs[:0], b.lens[:0]
		for i := range perBatch {
			if _, err := io.ReadFull(r, h[:]); err != nil {
				if !errors.Is(err, io.EOF) {
					s.fail(fmt.Errorf("receive: %w", err))
				}
				return
			}
			off, n := int64(binary.LittleEndian.Uint64(h[:])), int(binary.LittleEndian.Uint32(h[8:]))
			rec := b.buf[i*slot : (i+1)*slot]
			copy(rec[:hdrLen], h[:])
			if _, err := io.ReadFull(r, rec[disk.DirectAlign:disk.DirectAlign+n]); err != nil {
				s.fail(fmt.Errorf("receive: %w", err))
				return
			}
			if *sums && crc32.Checksum(rec[disk.DirectAlign:disk.DirectAlign+n], castagnoli) != binary.LittleEndian.Uint32(h[12:]) {
				s.fail(fmt.Errorf("receive: the write at %d fails its CRC", off))
				return
			}
			b.offs, b.lens = append(b.offs, off), append(b.lens, n)
		}
		s.journal <- b
	}
}

// journaler writes batches to the journal, each followed by an
// fdatasync. With -journals above 1 several write at once, and a batch
// may reach the applier before one received earlier: harmless for this
// stream, whose writes in flight never overlap, not for a replicator.
func (s *secondary) journaler() {
	for b := range s.journal {
		// A batch of short records still goes as one write of its slots:
		// the stream's records are all 1 MiB.
		s.mu.Lock()
		if s.at+int64(len(b.buf)) > journalLen {
			s.at = 0
		}
		at := s.at
		s.at += int64(len(b.buf))
		s.mu.Unlock()
		if _, err := s.jrn.WriteAt(b.buf, at); err != nil {
			s.fail(fmt.Errorf("journal: %w", err))
			return
		}
		if err := syscall.Fdatasync(int(s.jrn.Fd())); err != nil {
			s.fail(fmt.Errorf("journal: %w", err))
			return
		}
		s.apply <- b
	}
}

func (s *secondary) applier() {
	var since int64
	for b := range s.apply {
		for i, off := range b.offs {
			p := b.buf[i*slot+disk.DirectAlign : i*slot+disk.DirectAlign+b.lens[i]]
			if _, err := s.vol.WriteAt(p, off); err != nil {
				s.fail(fmt.Errorf("apply: %w", err))
				return
			}
			since += int64(len(p))
			s.applied.Add(int64(len(p)))
		}
		// The volume made durable before the journal's space is used
		// again: at most 64 + 32 MiB behind, in a 256 MiB journal.
		if since >= syncEvery {
			since = 0
			if err := syscall.Fdatasync(int(s.vol.Fd())); err != nil {
				s.fail(fmt.Errorf("apply: %w", err))
				return
			}
		}
		s.free <- b
	}
}

// snapshot is the counters at one instant, CPU times in clock ticks.
// The processes' are each process's CPU since the snapshot before (all of
// it for a process started since), summed by kind, added to the previous
// snapshot's sums: a process that exits between two snapshots loses only
// what it ran between them, not all it ran before (a kworker's exit made
// the kernel threads' difference negative).
type snapshot struct {
	t                         time.Time
	applied                   int64
	busy, idle, iowait, steal int64 // /proc/stat, all CPUs
	irq                       int64 // irq + softirq, /proc/stat
	self, fio, duplex         int64 // utime+stime: this process, fio's, Duplex's daemons'
	kthreads, other           int64 // the kernel's threads, every other process
	diskWritten, diskBusy     int64 // -disk's /sys/block/DISK/stat: sectors written, ms busy (io_ticks)
	procs                     map[procKey]int64
}

// procKey tells a process from a later one given the same pid.
type procKey struct {
	pid   int
	start string
}

// take reads the machine's and every process's CPU time, the processes'
// counted from prev (nil: from their start).
func take(s *secondary, prev *snapshot) (snapshot, error) {
	sn := snapshot{t: time.Now(), procs: map[procKey]int64{}}
	if prev != nil {
		sn.self, sn.fio, sn.duplex, sn.kthreads, sn.other = prev.self, prev.fio, prev.duplex, prev.kthreads, prev.other
	}
	if s != nil {
		sn.applied = s.applied.Load()
	}
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return sn, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal ...
	if len(f) < 9 {
		return sn, fmt.Errorf("/proc/stat: %q", line)
	}
	v := make([]int64, 8)
	for i := range v {
		v[i], _ = strconv.ParseInt(f[i+1], 10, 64)
	}
	sn.busy = v[0] + v[1] + v[2] + v[5] + v[6]
	sn.idle, sn.iowait, sn.irq, sn.steal = v[3], v[4], v[5]+v[6], v[7]
	if b, err := os.ReadFile("/sys/block/" + *diskName + "/stat"); err == nil {
		if f := strings.Fields(string(b)); len(f) >= 10 {
			sn.diskWritten, _ = strconv.ParseInt(f[6], 10, 64)
			sn.diskBusy, _ = strconv.ParseInt(f[9], 10, 64)
		}
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return sn, err
	}
	self := os.Getpid()
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue // gone
		}
		// comm may hold spaces: fields count from the last ')'.
		i := strings.LastIndexByte(string(b), ')')
		j := strings.IndexByte(string(b), '(')
		if i < 0 || j < 0 || j > i {
			continue
		}
		comm := string(b[j+1 : i])
		f := strings.Fields(string(b[i+1:])) // state ppid ... utime(12) stime(13)
		if len(f) < 13 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		ut, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		if len(f) < 20 {
			continue
		}
		k := procKey{pid, f[19]}
		sn.procs[k] = ut + st
		d := ut + st
		if prev != nil {
			d -= prev.procs[k]
		}
		switch {
		case pid == self:
			sn.self += d
		case comm == "fio":
			sn.fio += d
		case comm == "duplex":
			sn.duplex += d
		case pid == 2 || ppid == 2:
			sn.kthreads += d
		default:
			sn.other += d
		}
	}
	return sn, nil
}

func report(a, b snapshot) {
	const tick = 100 // USER_HZ
	win := b.t.Sub(a.t).Seconds()
	applied := float64(b.applied-a.applied) / mib
	ms := func(d int64) float64 { return float64(d) * 1000 / tick / applied }
	pct := func(d int64) float64 { return 100 * float64(d) / tick / win / float64(runtime.NumCPU()) }
	busy := ms(b.busy - a.busy)
	chain := ms(b.self-a.self) + ms(b.fio-a.fio) + ms(b.kthreads-a.kthreads) + ms(b.irq-a.irq)
	fmt.Printf("window %.1f s, applied %.1f MiB/s, %d CPUs, mode %s, load %s\n", win, applied/win, runtime.NumCPU(), mode(), harness.LoadAvg())
	fmt.Printf("CPU ms per applied MiB: whole machine busy %.3f (idle %.0f %%, iowait %.0f %%, steal %.0f %%); "+
		"this process %.3f, fio %.3f, kernel threads %.3f, irq+softirq %.3f, other processes %.3f (of them Duplex's %.3f)\n",
		busy, pct(b.idle-a.idle), pct(b.iowait-a.iowait), pct(b.steal-a.steal),
		ms(b.self-a.self), ms(b.fio-a.fio), ms(b.kthreads-a.kthreads), ms(b.irq-a.irq), ms(b.other-a.other+b.duplex-a.duplex), ms(b.duplex-a.duplex))
	fmt.Printf("disk %s: %.0f MiB/s written, busy %.0f %% of the window\n", *diskName,
		float64(b.diskWritten-a.diskWritten)*512/mib/win, float64(b.diskBusy-a.diskBusy)/10/win)
	n := float64(runtime.NumCPU()) * 1000
	fmt.Printf("ceiling %d CPU-s/s over the chain (this process + fio + kernel threads + irq): %.0f MiB/s; over the whole machine's busy time: %.0f MiB/s\n",
		runtime.NumCPU(), n/chain, n/busy)
}

func mode() string {
	m := "direct"
	if *buffered {
		m = "buffered"
	}
	if *sums {
		m += ", CRC-32C at both ends"
	}
	if *journals > 1 {
		m += fmt.Sprintf(", %d journal writes at once", *journals)
	}
	return m
}

// samples prints a snapshot a second for d: unix time, then clock ticks
// busy idle iowait steal irq self fio duplex kthreads other, then the
// disk's sectors written and ms busy.
func samples(d time.Duration) error {
	end := time.Now().Add(d)
	var prev *snapshot
	for t := time.Now(); t.Before(end); t = t.Add(time.Second) {
		time.Sleep(time.Until(t))
		sn, err := take(nil, prev)
		if err != nil {
			return err
		}
		prev = &sn
		fmt.Printf("%.3f %d %d %d %d %d %d %d %d %d %d %d %d\n", float64(sn.t.UnixMilli())/1000, sn.busy, sn.idle, sn.iowait, sn.steal,
			sn.irq, sn.self, sn.fio, sn.duplex, sn.kthreads, sn.other, sn.diskWritten, sn.diskBusy)
	}
	return nil
}
