package main

import (
	"os"
	"strconv"
	"strings"
	"time"
)

// machineStat is what the whole machine did up to a moment: the CPU time of
// both CPUs by state, from /proc/stat, and the writes and busy time of its
// disks, from /proc/diskstats. The whole-system runs read it before and after
// each run, so that a run whose server and fio leave the CPUs idle (waiting
// for the disk, for a timer, for each other) says so, which the CPU time of
// the processes alone cannot.
type machineStat struct {
	// busy leaves out steal (the host's use of these CPUs), which no
	// process here spends.
	busy, idle, iowait, steal float64 // CPU seconds, all CPUs
	writes                    float64 // write requests completed by the disks
	ioTicks                   float64 // seconds some disk had requests in flight, summed over disks
	ok                        bool
}

// readMachine reads the machine's counters; a counter it cannot read leaves
// ok false, and the run's figures are then left out rather than wrong.
func readMachine() machineStat {
	var m machineStat
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return m
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return m
	}
	const hz = 100 // USER_HZ: /proc/stat counts in 1/100 s on Linux
	for i, s := range f[1:9] {
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return m
		}
		switch i {
		case 3:
			m.idle = v / hz
		case 4:
			m.iowait = v / hz
		case 7:
			m.steal = v / hz
		default:
			m.busy += v / hz
		}
	}
	b, err = os.ReadFile("/proc/diskstats")
	if err != nil {
		return m
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 13 || !wholeDisk(f[2]) {
			continue
		}
		w, err1 := strconv.ParseFloat(f[7], 64)
		t, err2 := strconv.ParseFloat(f[12], 64)
		if err1 != nil || err2 != nil {
			return m
		}
		m.writes += w
		m.ioTicks += t / 1e3
	}
	m.ok = true
	return m
}

// wholeDisk says whether a /proc/diskstats device is a disk the runs' files
// may land on: one /sys/block lists (not a partition), and not a loop, RAM,
// device-mapper or NBD device, whose requests are also counted on the disk
// beneath them or are not a disk's at all.
func wholeDisk(name string) bool {
	for _, p := range []string{"loop", "ram", "zram", "dm-", "md", "nbd"} {
		if strings.HasPrefix(name, p) {
			return false
		}
	}
	_, err := os.Stat("/sys/block/" + name)
	return err == nil
}

// machineUse is a run's share of the machine: idle and iowait as a share of
// all CPU time, and disk writes per I/O of the run.
type machineUse struct {
	idle, iowait   float64 // shares of all CPU time over the run
	steal          float64 // share of all CPU time the host took
	busyPerIO      float64 // CPU seconds of the whole machine (steal left out) per I/O
	writesPerIO    float64
	diskBusy       float64 // share of the run some disk was busy (summed over disks)
	ok             bool
	paced          float64 // Duplex: µs of pacing delay per write
	peak           float64 // Duplex: largest sidefile seen, bytes
	sidefileWaited float64 // Duplex: µs waited for sidefile space per write
}

func (a machineStat) use(b machineStat, wall time.Duration, ios float64) machineUse {
	all := (b.busy - a.busy) + (b.idle - a.idle) + (b.iowait - a.iowait) + (b.steal - a.steal)
	if !a.ok || !b.ok || all <= 0 || ios <= 0 {
		return machineUse{}
	}
	return machineUse{idle: (b.idle - a.idle) / all, iowait: (b.iowait - a.iowait) / all,
		steal: (b.steal - a.steal) / all, busyPerIO: (b.busy - a.busy) / ios,
		writesPerIO: (b.writes - a.writes) / ios, diskBusy: (b.ioTicks - a.ioTicks) / wall.Seconds(), ok: true}
}

// runEnv is what the machine did around one pinned run besides the server
// and fio: CPU time the host took from each CPU (steal), the page cache's
// dirty and written-back pages, which a run on a virtual machine sharing its
// disk meets whatever the server under test does.
type runEnv struct {
	steal                 [2]float64 // seconds, CPU 0 and CPU 1
	dirty, writeback      float64    // bytes, at the read
	written               float64    // bytes written back since boot
	freePages             float64    // bytes free, at the read
	ok                    bool
	cpu0Busy, cpu0IdleIow float64 // CPU 0's busy and idle+iowait seconds
	cpu1Busy, cpu1Idle    float64 // CPU 1's, likewise
}

// readRunEnv reads /proc/stat's per-CPU steal and /proc/vmstat's page cache
// counters; a counter it cannot read leaves ok false.
func readRunEnv() runEnv {
	var e runEnv
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return e
	}
	const hz = 100
	seen := 0
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 9 || (f[0] != "cpu0" && f[0] != "cpu1") {
			continue
		}
		i := int(f[0][3] - '0')
		var v [8]float64
		for k := range v {
			if v[k], err = strconv.ParseFloat(f[k+1], 64); err != nil {
				return e
			}
		}
		e.steal[i] = v[7] / hz
		busy, idle := (v[0]+v[1]+v[2]+v[5]+v[6])/hz, (v[3]+v[4])/hz
		if i == 0 {
			e.cpu0Busy, e.cpu0IdleIow = busy, idle
		} else {
			e.cpu1Busy, e.cpu1Idle = busy, idle
		}
		seen++
	}
	b, err = os.ReadFile("/proc/vmstat")
	if err != nil || seen != 2 {
		return e
	}
	const page = 4096
	for _, line := range strings.Split(string(b), "\n") {
		name, val, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(val, 64)
		if err != nil {
			continue
		}
		switch name {
		case "nr_dirty":
			e.dirty = v * page
		case "nr_writeback":
			e.writeback = v * page
		case "nr_written":
			e.written = v * page
		case "nr_free_pages":
			e.freePages = v * page
		}
	}
	e.ok = true
	return e
}
