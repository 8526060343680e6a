// Command wsysceiling measures the whole-system ceiling of replication by
// journal then apply for 4 KiB random writes on this machine: the IOPS
// fio reaches against nbdkit's file plugin (unreplicated) while, on the
// same CPUs, the least work any such replicator adds for each of those
// writes runs beside it at the same rate. Its ratio to fio against nbdkit
// alone is what no replicator that journals at the secondary and then
// applies can beat here: the IOPS nbdkit's writes leave the replication
// work room for.
//
//	wsysceiling -dir DIR -mode plain      # fio against nbdkit alone
//	wsysceiling -dir DIR -mode ceiling    # the same, with the replicator's work beside it
//
// The replicator's work is two processes of this binary (Go, as Duplex,
// with its runtime monitor kept awake as Duplex's daemons keep it):
//
//   - a sender, which every interval (20 ms, Duplex's default) reads how
//     many bytes nbdkit has passed to pwrite(2) so far (/proc/PID/io,
//     wchar: nbdkit's socket replies are send(2)s and not counted there)
//     and sends that many new 4 KiB writes in one batch over loopback
//     TCP: a 16-byte header each (offset, length, CRC-32C) and the 4 KiB
//     payload, in writev(2) calls straight from its buffer of captured
//     data (64 MiB, filled and checksummed at its start: a primary that
//     checksums at capture pays that per write, not counted here), then
//     reads the receiver's acknowledgement of each batch. It does not
//     capture the writes (nbdkit has them): their number per second is
//     nbdkit's, 20 ms later, and their offsets random over the volume as
//     fio's;
//   - a receiver, which reads each batch straight into an aligned buffer
//     (no copy in user space), checks each payload's CRC-32C, writes the
//     batch as received as one journal record (one O_DIRECT pwrite into a
//     prefilled journal file used as a ring) and fdatasyncs the journal,
//     acknowledges the batch, and writes each payload into the volume file
//     at its offset (one pwrite each, through the page cache). With
//     -checkpoint D it also makes the volume durable every D
//     (sync_file_range then fdatasync, as a journal's reuse needs); by
//     default it leaves the writeback to the kernel, after the run, as
//     nbdkit's writes are: the least a replicator can do in the run.
//
// Every run starts nbdkit afresh on a prefilled 1 GiB image and, as the
// write section of bench/cmd/perf does, first syncs the directory's file
// system, then syncs the image and drops it from the page cache (and the
// receiver's volume), with -cache cached then reads both back whole in
// single pages (perf's -write-cache cached); fio runs the write section's
// job (nbd engine, randwrite 4k, QD16, 20 s after 2 s of ramp,
// --norandommap --randrepeat=0). Nothing is pinned. The run prints one
// line and appends it as JSON to DIR/runs.jsonl: fio's IOPS; the CPU
// seconds per write (over fio's writes, ramp included, as perf counts
// them) of nbdkit, the sender and the receiver (utime + stime, from
// /proc/PID/stat and the exited processes' rusage); the whole machine's
// busy, idle and iowait time per write (/proc/stat); the disks' write
// requests per write and busy share (/proc/diskstats); and the writes the
// sender sent against fio's (ramp included: the two should agree within a
// batch or two).
package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"hash/crc32"
	"io"
	"maps"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"duplex/bench/fiojson"
	"duplex/bench/harness"
	"duplex/internal/sysmon"
)

const (
	block     = 4096
	recHeader = 16 // offset u64, length u32, CRC-32C u32
	batchHdr  = 16 // magic u32, count u32, sequence u64
	magic     = 0x57534345
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func main() {
	if len(os.Args) > 1 && (os.Args[1] == "send" || os.Args[1] == "recv") {
		sysmon.KeepAwake()
		var err error
		if os.Args[1] == "send" {
			err = sender(os.Args[2:])
		} else {
			err = receiver(os.Args[2:])
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "wsysceiling %s: %v\n", os.Args[1], err)
			os.Exit(1)
		}
		return
	}
	dir := flag.String("dir", "/tmp/wsysceiling", "directory of the image, the volume and the journal (created, prefilled once)")
	mode := flag.String("mode", "ceiling", "plain (fio against nbdkit), ceiling (the replicator's work beside it) or wrap (run the command given after the flags, and name the other work that ran meanwhile)")
	size := flag.Int64("size", 1<<30, "image and volume size")
	runtime := flag.Duration("runtime", 20*time.Second, "fio's measured time")
	ramp := flag.Duration("ramp", 2*time.Second, "fio's ramp time")
	interval := flag.Duration("interval", 20*time.Millisecond, "the sender's batch interval")
	checkpoint := flag.Duration("checkpoint", 0, "make the receiver's volume durable this often (0: leave it to the kernel)")
	label := flag.String("label", "", "a label for the run's record")
	eager := flag.Bool("eager", false, "with -checkpoint: checkpoint from a goroutine of the receiver's own, beside the applier, which starts the writeback of each batch once applied (sync_file_range) and makes the volume durable every -checkpoint, as Duplex's secondary does; without it the applier checkpoints itself, between batches")
	direct := flag.Bool("direct", false, "the receiver writes its volume with O_DIRECT, 32 writes at a time, past the page cache (no writeback to start; -checkpoint then only fdatasyncs)")
	rate := flag.Int("rate", 0, "fio's writes a second at most (--rate_iops; 0: as fast as it can): a receiver that keeps up at a rate shows that rate sustainable")
	floor := flag.String("floor", "", "serve the image by this nbdfloor binary (Duplex's NBD server, nothing behind it) instead of nbdkit")
	cache := flag.String("cache", "dropped", "the image's and the volume's state at the run's start: dropped (synced and dropped from the page cache) or cached (then read whole in single pages, as perf's -write-cache cached)")
	flag.Parse()
	if *mode == "wrap" {
		if err := wrap(flag.Args()); err != nil {
			fmt.Fprintln(os.Stderr, "wsysceiling:", err)
			os.Exit(1)
		}
		return
	}
	if *cache != "dropped" && *cache != "cached" {
		fmt.Fprintf(os.Stderr, "wsysceiling: -cache %q: dropped or cached\n", *cache)
		os.Exit(2)
	}
	how := strconv.FormatBool(*eager)
	if *direct {
		how = "direct"
	}
	if err := run(*dir, *mode, *label, *floor, *cache, how, *rate, *size, *runtime, *ramp, *interval, *checkpoint); err != nil {
		fmt.Fprintln(os.Stderr, "wsysceiling:", err)
		os.Exit(1)
	}
}

type result struct {
	Server                      string
	Label, Mode, Load           string
	Start                       time.Time
	IOPS, Writes, Sent          float64
	NbdkitUS, SenderUS, RecvUS  float64 // CPU µs per write
	FioUS, OtherUS              float64 // fio's; the machine's busy time besides these four
	Others                      string  // the other processes that used most of it
	BusyUS, IdleUS, IowaitUS    float64 // whole machine, µs per write
	SoftirqUS, StealUS          float64 // irq and softirq (part of busy); steal (not)
	IdlePct, IowaitPct, WallS   float64
	Checkpoint, Interval, Cache string
	// DiskWrites is the write requests the disks completed per write,
	// DiskBusy the share of the run some disk had requests in flight
	// (/proc/diskstats, whole disks): a checkpointing receiver's
	// writeback, which nbdkit's run leaves to after it.
	DiskWrites, DiskBusy       float64
	JournalMiB, ReceiverGroups float64
	// Behind is the most writes the sender had sent that the receiver had
	// not yet journaled, seen at a batch's sending; DrainS the seconds from
	// fio's end until the receiver had applied every write. A receiver
	// that falls behind does part of the run's work after it, which the
	// run's IOPS do not pay for: a replicator must then pace the writes.
	Behind, DrainS                float64
	Rate                          int    // fio's --rate_iops, 0 for none
	How                           string // the receiver's checkpoint: false (between batches), true (eager) or direct
	SenderExit, ReceiverExitError string
}

func run(dir, mode, label, floor, cache, how string, rate int, size int64, runtime, ramp, interval, checkpoint time.Duration) error {
	// perWrite is the bytes the server passes to write(2) and pwrite(2)
	// for each write it serves: nbdkit replies by send(2), Duplex's NBD
	// server by write(2) or writev(2), 16 bytes a reply.
	server, perWrite := "nbdkit", block
	if floor != "" {
		server, perWrite = "nbdfloor", block+16
	}
	if mode != "plain" && mode != "ceiling" {
		return fmt.Errorf("mode %q: plain, ceiling or wrap", mode)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	image, volume, journal := filepath.Join(dir, "nbdkit.img"), filepath.Join(dir, "volume.img"), filepath.Join(dir, "journal")
	for _, f := range []struct {
		path string
		size int64
	}{{image, size}, {volume, size}, {journal, 512 << 20}} {
		if err := prefill(f.path, f.size); err != nil {
			return err
		}
	}
	// Nothing an earlier run (or another program) left dirty is written
	// back during this one, as in perf's write section.
	if err := harness.SyncFS(dir); err != nil {
		return err
	}
	for _, f := range []string{image, volume} {
		if err := harness.DropCache(f); err != nil {
			return err
		}
		// Cached: the writes land in pages the cache holds, as in perf's
		// write section with -write-cache cached (a dropped page's first
		// touch is the host's fault to serve on this machine), read
		// without readahead so that the pages are single ones, as a
		// volume written 4 KiB at a time holds them.
		if cache == "cached" {
			if err := warmPages(f); err != nil {
				return err
			}
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	port, err := freePort()
	if err != nil {
		return err
	}
	nbdkit := exec.CommandContext(ctx, "nbdkit", "-f", "--exit-with-parent", "-i", "127.0.0.1", "-p", port, "file", image)
	if floor != "" {
		nbdkit = exec.CommandContext(ctx, floor, "-listen", "127.0.0.1:"+port, "-file", image)
	}
	nbdkit.Stderr = os.Stderr
	if err := nbdkit.Start(); err != nil {
		return fmt.Errorf("nbdkit: %w", err)
	}
	defer func() { nbdkit.Process.Signal(syscall.SIGTERM); nbdkit.Wait() }()
	if err := waitListen("127.0.0.1:" + port); err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	var send, recv *exec.Cmd
	var sendOut, recvOut strings.Builder
	if mode == "ceiling" {
		recv = exec.Command(self, "recv", volume, journal, checkpoint.String(), how)
		recv.Stderr = os.Stderr
		recv.Stdout = &recvOut
		// The receiver writes its address to a pipe of its own (fd 3),
		// read once, before the run.
		pr, pw, err := os.Pipe()
		if err != nil {
			return err
		}
		recv.ExtraFiles = []*os.File{pw}
		if err := recv.Start(); err != nil {
			return fmt.Errorf("receiver: %w", err)
		}
		pw.Close()
		line, err := bufio.NewReader(pr).ReadString('\n')
		pr.Close()
		if err != nil {
			return fmt.Errorf("receiver's port: %w", err)
		}
		send = exec.Command(self, "send", strings.TrimSpace(line), strconv.Itoa(nbdkit.Process.Pid), interval.String(), strconv.FormatInt(size, 10), strconv.Itoa(perWrite))
		send.Stderr = os.Stderr
		send.Stdout = &sendOut
		if err := send.Start(); err != nil {
			return fmt.Errorf("sender: %w", err)
		}
		defer func() {
			if send.ProcessState == nil {
				send.Process.Kill()
				send.Wait()
			}
			if recv.ProcessState == nil {
				recv.Process.Kill()
				recv.Wait()
			}
		}()
		time.Sleep(300 * time.Millisecond) // the sender's buffer filled, the link up
	}
	pids := []int{nbdkit.Process.Pid}
	if mode == "ceiling" {
		pids = append(pids, send.Process.Pid, recv.Process.Pid)
	}
	cpu0 := make([]time.Duration, len(pids))
	for i, p := range pids {
		if cpu0[i], err = procCPU(p); err != nil {
			return err
		}
	}
	res := result{Server: server, Label: label, Mode: mode, Load: harness.LoadAvg(), Start: time.Now().UTC(), Checkpoint: checkpoint.String(), Interval: interval.String(), Cache: cache, Rate: rate, How: how}
	out := filepath.Join(dir, fmt.Sprintf("fio-%s-%d.json", mode, time.Now().Unix()))
	args := []string{"--output-format=json", "--output=" + out,
		"--name=randwrite-4k-qd16", "--ioengine=nbd", "--uri=nbd://127.0.0.1:" + port + "/", "--rw=randwrite", "--bs=4k",
		"--iodepth=16", fmt.Sprintf("--size=%d", size), "--time_based", fmt.Sprintf("--runtime=%d", int(runtime.Seconds())),
		"--norandommap", "--randrepeat=0", fmt.Sprintf("--ramp_time=%d", int(ramp.Seconds()))}
	if rate > 0 {
		args = append(args, fmt.Sprintf("--rate_iops=%d", rate))
	}
	all0 := allCPU()
	w0, err := wchar(nbdkit.Process.Pid)
	if err != nil {
		return err
	}
	d0, m0, t0 := readDisks(), readStat(), time.Now()
	fio := exec.Command("fio", args...)
	if b, err := fio.CombinedOutput(); err != nil {
		return fmt.Errorf("fio: %v\n%s", err, b)
	}
	m1, t1, d1 := readStat(), time.Now(), readDisks()
	all1 := allCPU()
	w1, err := wchar(nbdkit.Process.Pid)
	if err != nil {
		return err
	}
	cpuNbd, err := procCPU(pids[0])
	if err != nil {
		return err
	}
	jobs, err := fiojson.ParseFile(out)
	if err != nil {
		return err
	}
	os.Remove(out)
	res.IOPS = jobs[0].IOPS
	// Every write of the run, the ramp's too: the bytes nbdkit wrote.
	res.Writes = float64(w1-w0) / float64(perWrite)
	per := func(d time.Duration) float64 { return d.Seconds() / res.Writes * 1e6 }
	res.NbdkitUS = per(cpuNbd - cpu0[0])
	res.WallS = t1.Sub(t0).Seconds()
	res.DiskWrites, res.DiskBusy = (d1.writes-d0.writes)/res.Writes, (d1.busy-d0.busy)/res.WallS
	res.FioUS = per(rusage(fio))
	res.Others = topOthers(all0, all1, res.Writes, append([]int{fio.Process.Pid}, pids...), nil)
	res.BusyUS, res.IdleUS, res.IowaitUS = (m1.busy-m0.busy)/res.Writes*1e6, (m1.idle-m0.idle)/res.Writes*1e6, (m1.iowait-m0.iowait)/res.Writes*1e6
	res.SoftirqUS, res.StealUS = (m1.softirq-m0.softirq)/res.Writes*1e6, (m1.steal-m0.steal)/res.Writes*1e6
	all := (m1.busy + m1.idle + m1.iowait + m1.steal) - (m0.busy + m0.idle + m0.iowait + m0.steal)
	res.IdlePct, res.IowaitPct = 100*(m1.idle-m0.idle)/all, 100*(m1.iowait-m0.iowait)/all
	if mode == "ceiling" {
		// The sender ships what nbdkit wrote up to now, then stops; the
		// receiver applies the rest and exits at the link's end.
		send.Process.Signal(syscall.SIGTERM)
		send.Wait()
		recv.Wait()
		res.DrainS = time.Since(t1).Seconds()
		res.SenderUS = per(rusage(send) - cpu0[1])
		res.RecvUS = per(rusage(recv) - cpu0[2])
		res.SenderExit = strings.TrimSpace(sendOut.String())
		res.ReceiverExitError = strings.TrimSpace(recvOut.String())
		fmt.Sscanf(res.SenderExit, "sent %g behind %g", &res.Sent, &res.Behind)
		fmt.Sscanf(res.ReceiverExitError, "groups %g journal_mib %g", &res.ReceiverGroups, &res.JournalMiB)
	}
	res.OtherUS = res.BusyUS - res.FioUS - res.NbdkitUS - res.SenderUS - res.RecvUS
	fmt.Printf("%s %s %s load %s: IOPS %.0f, writes %.0f sent %.0f (receiver behind at most %.0f, drained %.2f s after fio); µs CPU a write: fio %.2f nbdkit %.2f sender %.2f receiver %.2f other %.2f; machine busy %.2f (irq+softirq %.2f) idle %.2f iowait %.2f steal %.2f µs a write (idle %.1f %%, iowait %.1f %%); disk writes %.2f a write, disk busy %.0f %%; cache %s; others: %s\n",
		server, mode, label, res.Load, res.IOPS, res.Writes, res.Sent, res.Behind, res.DrainS, res.FioUS, res.NbdkitUS, res.SenderUS, res.RecvUS, res.OtherUS, res.BusyUS, res.SoftirqUS, res.IdleUS, res.IowaitUS, res.StealUS, res.IdlePct, res.IowaitPct,
		res.DiskWrites, 100*res.DiskBusy, cache, res.Others)
	f, err := os.OpenFile(filepath.Join(dir, "runs.jsonl"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	return json.NewEncoder(f).Encode(res)
}

// prefill writes a file whole once, as the write section's image is
// (fio's psync 1 MiB writes, then an fsync), so that runs write over
// allocated blocks.
func prefill(path string, size int64) error {
	if st, err := os.Stat(path); err == nil && st.Size() == size {
		return nil
	}
	b, err := exec.Command("fio", "--name=prefill", "--ioengine=psync", "--rw=write", "--bs=1M",
		fmt.Sprintf("--size=%d", size), "--filename="+path, "--end_fsync=1").CombinedOutput()
	if err != nil {
		return fmt.Errorf("prefill %s: %v\n%s", path, err, b)
	}
	return nil
}

// warmPages reads the whole file into the page cache with readahead off,
// which reads what is asked for into single pages (readahead's own reads
// make large folios, into which a 4 KiB write costs many times more).
func warmPages(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	const fadvRandom = 1
	if _, _, e := syscall.Syscall6(syscall.SYS_FADVISE64, f.Fd(), 0, 0, fadvRandom, 0, 0); e != 0 {
		return fmt.Errorf("fadvise %s: %w", path, e)
	}
	buf := make([]byte, 1<<20)
	for off := int64(0); ; off += int64(len(buf)) {
		n, err := f.ReadAt(buf, off)
		if err == io.EOF || n == 0 {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read %s: %w", path, err)
		}
	}
}

// disks is the write requests the whole disks have completed so far, and
// the seconds some disk had requests in flight (summed over disks).
type disks struct{ writes, busy float64 }

// readDisks reads /proc/diskstats' whole disks (not partitions, loop, RAM,
// device-mapper or NBD devices, whose requests land on a disk beneath
// them or on none), as perf's write section counts them.
func readDisks() disks {
	var d disks
	b, err := os.ReadFile("/proc/diskstats")
	if err != nil {
		return d
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 13 || slices.ContainsFunc([]string{"loop", "ram", "zram", "dm-", "md", "nbd"}, func(p string) bool { return strings.HasPrefix(f[2], p) }) {
			continue
		}
		if _, err := os.Stat("/sys/block/" + f[2]); err != nil {
			continue
		}
		w, _ := strconv.ParseFloat(f[7], 64)
		t, _ := strconv.ParseFloat(f[12], 64)
		d.writes += w
		d.busy += t / 1e3
	}
	return d
}

func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	_, p, _ := net.SplitHostPort(l.Addr().String())
	return p, nil
}

func waitListen(addr string) error {
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return nil
		}
	}
	return fmt.Errorf("nbdkit did not listen on %s", addr)
}

// procCPU is a process's utime + stime so far (10 ms ticks).
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	u, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(u+st) * 10 * time.Millisecond, nil
}

// allCPU is every process's utime + stime so far, by pid: where the
// machine's busy time went besides the run's own processes (kernel
// threads, other work on the machine).
func allCPU() map[int]procTime {
	m := map[int]procTime{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		s := string(b)
		i, j := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if i < 0 || j < i {
			continue
		}
		f := strings.Fields(s[j+2:])
		if len(f) < 13 {
			continue
		}
		u, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		m[pid] = procTime{s[i+1 : j], time.Duration(u+st) * 10 * time.Millisecond}
	}
	return m
}

type procTime struct {
	comm string
	cpu  time.Duration
}

// topOthers names the processes besides skip that used the most CPU
// between two allCPU readings, by command, in µs a write.
func topOthers(a, b map[int]procTime, writes float64, skip []int, skipComm []string) string {
	byComm := map[string]time.Duration{}
	for pid, t := range b {
		if slices.Contains(skip, pid) || slices.Contains(skipComm, t.comm) {
			continue
		}
		if d := t.cpu - a[pid].cpu; d > 0 {
			byComm[t.comm] += d
		}
	}
	comms := slices.Collect(maps.Keys(byComm))
	slices.SortFunc(comms, func(x, y string) int { return int(byComm[y] - byComm[x]) })
	var out []string
	for _, c := range comms[:min(len(comms), 6)] {
		out = append(out, fmt.Sprintf("%s %.2f", c, byComm[c].Seconds()/writes*1e6))
	}
	return strings.Join(out, ", ")
}

func rusage(c *exec.Cmd) time.Duration {
	return c.ProcessState.UserTime() + c.ProcessState.SystemTime()
}

// stat's busy is user, nice, system, irq and softirq time; steal (the
// hypervisor running something else on this virtual machine's CPUs) is
// apart: neither work of this machine nor idle time it could use.
type stat struct{ busy, idle, iowait, softirq, steal float64 }

// readStat is both CPUs' time by state from /proc/stat, in seconds.
func readStat() stat {
	var m stat
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return m
	}
	line, _, _ := strings.Cut(string(b), "\n")
	for i, s := range strings.Fields(line)[1:9] {
		v, _ := strconv.ParseFloat(s, 64)
		switch i {
		case 3:
			m.idle = v / 100
		case 4:
			m.iowait = v / 100
		case 7:
			m.steal = v / 100
		case 5, 6:
			m.softirq += v / 100
			m.busy += v / 100
		default:
			m.busy += v / 100
		}
	}
	return m
}

// wchar is the bytes a process has passed to write(2) and pwrite(2) so
// far: for nbdkit's file plugin, 4 KiB for each write it served (its
// replies go out by send(2), which is not counted).
func wchar(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "wchar: "); ok {
			return strconv.ParseInt(v, 10, 64)
		}
	}
	return 0, fmt.Errorf("/proc/%d/io: no wchar", pid)
}

// wrap runs a command (the perf driver's Duplex round) and says what the
// machine did meanwhile besides it: the processes of other work that took
// CPU time, so that a round disturbed by them is known.
func wrap(args []string) error {
	a, m0, t0 := allCPU(), readStat(), time.Now()
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	err := cmd.Run()
	b, m1 := allCPU(), readStat()
	wall := time.Since(t0).Seconds()
	// In CPU-seconds of the whole wrapped run, not per write.
	fmt.Printf("wrap: %.0f s, busy %.1f idle %.1f iowait %.1f steal %.1f CPU-s; others (CPU ms a second): %s\n", wall,
		m1.busy-m0.busy, m1.idle-m0.idle, m1.iowait-m0.iowait, m1.steal-m0.steal,
		topOthers(a, b, wall*1e3, []int{cmd.Process.Pid}, []string{"fio", "nbdkit", "duplex", "perf"}))
	return err
}

// sender: ADDR SERVER-PID INTERVAL SIZE BYTES-A-WRITE.
func sender(args []string) error {
	if len(args) != 5 {
		return errors.New("usage: send ADDR PID INTERVAL SIZE BYTES-A-WRITE")
	}
	perWrite, _ := strconv.ParseInt(args[4], 10, 64)
	pid, _ := strconv.Atoi(args[1])
	interval, err := time.ParseDuration(args[2])
	if err != nil {
		return err
	}
	size, _ := strconv.ParseInt(args[3], 10, 64)
	// The captured data: cold, as a sidefile's, each block's checksum
	// taken once here (a primary checksums at capture).
	const ring = 64 << 20
	data := make([]byte, ring)
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	for i := 0; i < ring; i += 8 {
		binary.LittleEndian.PutUint64(data[i:], rng.Uint64())
	}
	sums := make([]uint32, ring/block)
	for i := range sums {
		sums[i] = crc32.Checksum(data[i*block:(i+1)*block], castagnoli)
	}
	conn, err := net.Dial("tcp", args[0])
	if err != nil {
		return err
	}
	defer conn.Close()
	acks := make(chan error, 1)
	// acked is the last batch the receiver journaled; upTo[i] the writes
	// sent up to batch i+1.
	var acked atomic.Uint64
	var upTo []int64
	go func() {
		var b [8]byte
		for {
			if _, err := io.ReadFull(conn, b[:]); err != nil {
				acks <- err
				return
			}
			acked.Store(binary.LittleEndian.Uint64(b[:]))
		}
	}()
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM)
	last, err := wchar(pid)
	if err != nil {
		return err
	}
	var seq uint64
	var sent, behind int64
	next := 0 // the ring's next block
	blocks := size / block
	var hdrs []byte
	var bufs net.Buffers
	ship := func() error {
		now, err := wchar(pid)
		if err != nil {
			return err
		}
		n := int((now - last) / perWrite)
		if n <= 0 {
			return nil
		}
		last += int64(n) * perWrite
		if cap(hdrs) < batchHdr+n*recHeader {
			hdrs = make([]byte, batchHdr+2*n*recHeader)
		}
		h := hdrs[:batchHdr+n*recHeader]
		seq++
		binary.LittleEndian.PutUint32(h[0:], magic)
		binary.LittleEndian.PutUint32(h[4:], uint32(n))
		binary.LittleEndian.PutUint64(h[8:], seq)
		bufs = append(bufs[:0], h[:batchHdr])
		for i := range n {
			r := h[batchHdr+i*recHeader : batchHdr+(i+1)*recHeader]
			binary.LittleEndian.PutUint64(r[0:], uint64(rng.Int64N(blocks))*block)
			binary.LittleEndian.PutUint32(r[8:], block)
			binary.LittleEndian.PutUint32(r[12:], sums[next])
			bufs = append(bufs, r, data[next*block:(next+1)*block])
			next = (next + 1) % len(sums)
		}
		sent += int64(n)
		upTo = append(upTo, sent)
		if a := acked.Load(); a > 0 {
			behind = max(behind, sent-upTo[a-1])
		} else {
			behind = max(behind, sent)
		}
		_, err = bufs.WriteTo(conn)
		return err
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			if err := ship(); err != nil {
				return err
			}
		case <-stop:
			if err := ship(); err != nil {
				return err
			}
			conn.(*net.TCPConn).CloseWrite()
			// The receiver closes once it has journaled and applied
			// every batch.
			if err := <-acks; err != io.EOF {
				return err
			}
			fmt.Printf("sent %d behind %d\n", sent, behind)
			return nil
		case err := <-acks:
			return fmt.Errorf("link: %w", err)
		}
	}
}

// receiver: VOLUME JOURNAL CHECKPOINT; its listening port is written to
// file descriptor 3.
func receiver(args []string) error {
	if len(args) != 4 {
		return errors.New("usage: recv VOLUME JOURNAL CHECKPOINT EAGER")
	}
	eager, direct := args[3] == "true", args[3] == "direct"
	checkpoint, err := time.ParseDuration(args[2])
	if err != nil {
		return err
	}
	vol, err := os.OpenFile(args[0], os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer vol.Close()
	jf, err := os.OpenFile(args[1], os.O_RDWR|syscall.O_DIRECT, 0)
	if err != nil {
		return err
	}
	defer jf.Close()
	st, err := jf.Stat()
	if err != nil {
		return err
	}
	jsize := st.Size()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	portFile := os.NewFile(3, "port")
	fmt.Fprintln(portFile, ln.Addr().String())
	portFile.Close()
	conn, err := ln.Accept()
	ln.Close()
	if err != nil {
		return err
	}
	defer conn.Close()
	buf := aligned(8 << 20)
	var joff int64
	var groups, journaled int64
	lastCkpt := time.Now()
	// The eager checkpointer: the applier goes on with the next batch
	// while the last one's pages are written back and the volume made
	// durable, so that it waits on the disk only when the writeback's
	// queue is full.
	kick, ckErr := make(chan struct{}, 1), make(chan error, 1)
	go func() {
		if !eager {
			ckErr <- nil
			return
		}
		var err error
		for range kick {
			if err != nil {
				continue
			}
			const write = 2 // SYNC_FILE_RANGE_WRITE
			syscall.Syscall6(syscall.SYS_SYNC_FILE_RANGE, vol.Fd(), 0, 0, write, 0, 0)
			if time.Since(lastCkpt) >= checkpoint {
				if e := syscall.Fdatasync(int(vol.Fd())); e != nil {
					err = fmt.Errorf("volume: %w", e)
				}
				lastCkpt = time.Now()
			}
		}
		ckErr <- err
	}()
	var dvol *os.File
	var slots []byte
	if direct {
		if dvol, err = os.OpenFile(args[0], os.O_RDWR|syscall.O_DIRECT, 0); err != nil {
			return err
		}
		defer dvol.Close()
	}
	var ack [8]byte
	for {
		if _, err := io.ReadFull(conn, buf[:batchHdr]); err != nil {
			if err == io.EOF {
				break
			}
			return err
		}
		if binary.LittleEndian.Uint32(buf[0:]) != magic {
			return errors.New("bad batch header")
		}
		n := int(binary.LittleEndian.Uint32(buf[4:]))
		seq := binary.LittleEndian.Uint64(buf[8:])
		rec := batchHdr + n*(recHeader+block)
		jlen := (rec + block - 1) / block * block
		if jlen > len(buf) {
			buf = aligned(2 * jlen)
			binary.LittleEndian.PutUint32(buf[0:], magic)
			binary.LittleEndian.PutUint32(buf[4:], uint32(n))
			binary.LittleEndian.PutUint64(buf[8:], seq)
		}
		if _, err := io.ReadFull(conn, buf[batchHdr:rec]); err != nil {
			return err
		}
		for i := range n {
			r := buf[batchHdr+i*(recHeader+block):]
			if crc32.Checksum(r[recHeader:recHeader+block], castagnoli) != binary.LittleEndian.Uint32(r[12:]) {
				return fmt.Errorf("batch %d write %d: bad checksum", seq, i)
			}
		}
		if joff+int64(jlen) > jsize {
			joff = 0
		}
		if _, err := jf.WriteAt(buf[:jlen], joff); err != nil {
			return fmt.Errorf("journal: %w", err)
		}
		if err := syscall.Fdatasync(int(jf.Fd())); err != nil {
			return fmt.Errorf("journal: %w", err)
		}
		joff += int64(jlen)
		journaled += int64(jlen)
		binary.LittleEndian.PutUint64(ack[:], seq)
		if _, err := conn.Write(ack[:]); err != nil {
			return err
		}
		if direct {
			if err := applyDirect(dvol, buf, n, &slots); err != nil {
				return err
			}
			groups++
			if checkpoint > 0 && time.Since(lastCkpt) >= checkpoint {
				if err := syscall.Fdatasync(int(dvol.Fd())); err != nil {
					return fmt.Errorf("volume: %w", err)
				}
				lastCkpt = time.Now()
			}
			continue
		}
		for i := range n {
			r := buf[batchHdr+i*(recHeader+block):]
			if _, err := vol.WriteAt(r[recHeader:recHeader+block], int64(binary.LittleEndian.Uint64(r))); err != nil {
				return fmt.Errorf("volume: %w", err)
			}
		}
		groups++
		if eager && checkpoint > 0 {
			select {
			case kick <- struct{}{}:
			default: // one is asked for already
			}
			continue
		}
		if checkpoint > 0 && time.Since(lastCkpt) >= checkpoint {
			const write = 2 // SYNC_FILE_RANGE_WRITE
			syscall.Syscall6(syscall.SYS_SYNC_FILE_RANGE, vol.Fd(), 0, 0, write, 0, 0)
			if err := syscall.Fdatasync(int(vol.Fd())); err != nil {
				return fmt.Errorf("volume: %w", err)
			}
			lastCkpt = time.Now()
		}
	}
	close(kick)
	if err := <-ckErr; err != nil {
		return err
	}
	fmt.Printf("groups %d journal_mib %.1f\n", groups, float64(journaled)/(1<<20))
	return nil
}

// applyDirect writes a batch's payloads to the volume past the page cache,
// 32 at a time (one goroutine, so one thread in pwrite, each), each first
// copied to an aligned slot: in the batch they follow 16-byte headers.
func applyDirect(dvol *os.File, buf []byte, n int, slots *[]byte) error {
	if len(*slots) < n*block {
		*slots = aligned(2 * n * block)
	}
	s := *slots
	for i := range n {
		r := buf[batchHdr+i*(recHeader+block):]
		copy(s[i*block:(i+1)*block], r[recHeader:recHeader+block])
	}
	const workers = 32
	per := (n + workers - 1) / workers
	errs := make(chan error, workers)
	started := 0
	for lo := 0; lo < n; lo += per {
		hi := min(n, lo+per)
		started++
		go func() {
			var err error
			for i := lo; i < hi && err == nil; i++ {
				off := int64(binary.LittleEndian.Uint64(buf[batchHdr+i*(recHeader+block):]))
				if _, e := dvol.WriteAt(s[i*block:(i+1)*block], off); e != nil {
					err = fmt.Errorf("volume: %w", e)
				}
			}
			errs <- err
		}()
	}
	var first error
	for range started {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return first
}

func aligned(n int) []byte {
	b := make([]byte, n+block)
	skip := int(-uintptr(unsafe.Pointer(&b[0])) & (block - 1))
	return b[skip : skip+n]
}
