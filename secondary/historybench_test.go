package secondary

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"duplex/history"
	"duplex/recordset"
	"duplex/transport"
	"duplex/volume"
)

// BenchmarkApplyHistoryAB measures what keeping history costs the applying
// secondary: rounds rotate history off, on, and on with each group kept in
// steps (A/B/C in one run, so load swings hit every arm), each feeding a
// fresh secondary the same record sets over an in-memory link into a volume
// full of data (so every write has a before image to keep). It reports, per
// MiB applied, the process CPU time and the wall time of each, and the
// history's bytes per MiB applied, as it counts them and as they take the
// disk. Two shapes: 4 sequential 1 MiB writes per record set, and 256
// random 4 KiB writes. The steps arm makes its pair duplex first (a record
// set of an empty first copy, not timed) and takes an interval of an
// eighth of a record set's updates, so that each record set is kept in up
// to 8 steps (4 for the 1 MiB shape, one per update).
func BenchmarkApplyHistoryAB(b *testing.B) {
	arms := []string{"off", "on", "steps"}
	for _, shape := range applyShapes {
		b.Run(shape.name, func(b *testing.B) {
			noPoison(b)
			const sets = 64
			var cpu, wall [3]time.Duration
			var histBytes, histDisk [3]int64
			rounds := max(b.N, 2)
			for r := range rounds {
				for i := range arms {
					k := (r + i) % len(arms)
					rd := applyRound(b, &round{hist: k > 0, steps: k == 2}, sets, shape.perSet, shape.chunk, uint64(r))
					cpu[k] += rd.cpu
					wall[k] += rd.wall
					histBytes[k], histDisk[k] = rd.histBytes, rd.histDisk
				}
			}
			mib := float64(rounds) * sets * float64(shape.perSet*shape.chunk) / (1 << 20)
			for k, arm := range arms {
				b.ReportMetric(float64(cpu[k].Microseconds())/1000/mib, arm+"-cpu-ms/MiB")
				b.ReportMetric(mib/wall[k].Seconds(), arm+"-MiB/s")
				if k > 0 {
					b.ReportMetric(float64(histBytes[k])/(mib/float64(rounds))/(1<<20), arm+"-history-MiB/MiB")
					b.ReportMetric(float64(histDisk[k])/(mib/float64(rounds))/(1<<20), arm+"-disk-MiB/MiB")
				}
			}
			la, _ := os.ReadFile("/proc/loadavg")
			b.Logf("%s: %d rounds; load average %s", shape.name, rounds, strings.TrimSpace(string(la)))
		})
	}
}

// applyShapes are the record sets the apply benchmarks feed: 4 sequential
// 1 MiB writes per record set, and 256 random 4 KiB writes.
var applyShapes = []struct {
	name          string
	perSet, chunk int
}{{"1MiB-seq", 4, 1 << 20}, {"4KiB-rand", 256, 4 << 10}}

// round is what an applyRound sets up, and what it measured.
type round struct {
	hist bool
	// steps, with hist, makes the pair duplex first and keeps each
	// record set in steps (BenchmarkApplyHistoryAB).
	steps bool
	// view is the read view open while the record sets are applied: ""
	// none, "memory" (Pin, as an NBD connection's), "spilled" (PinSpilled,
	// a drill's).
	view string
	// openAt, with hist, opens a view of group 1 (PinAt) once all are
	// applied, in memory or spilled as view says.
	openAt bool
	// applyDuring, with openAt, sends one more record set (one 4 KiB
	// write) as the view starts to open, and measures how long it takes to
	// be applied.
	applyDuring bool

	cpu, wall time.Duration // of the apply
	histBytes int64
	histDisk  int64 // the history directory's blocks on disk
	heap      int64 // heap in use after the apply, less before it
	scratch   int64 // the spilled view's scratch file
	// of the view opened at group 1: CPU, wall, heap grown, and the bytes
	// of undo it read
	openCPU, openWall time.Duration
	openHeap          int64
	openUndo          int64
	// applyWait is how long the record set sent as the view started to
	// open took to be applied (applyDuring).
	applyWait time.Duration
}

// applyRound applies sets record sets of perSet writes of chunk bytes to a
// fresh secondary, set up as r says, and fills in what r measures.
func applyRound(b *testing.B, r *round, sets, perSet, chunk int, seed uint64) *round {
	hist := r.hist
	const volSize = 64 << 20
	dir := b.TempDir()
	vol, err := volume.Open(filepath.Join(dir, "vol1.img"), volSize)
	if err != nil {
		b.Fatal(err)
	}
	defer vol.Close()
	fill := make([]byte, 1<<20)
	rng := rand.New(rand.NewPCG(seed, 1))
	for off := int64(0); off < volSize; off += int64(len(fill)) {
		for i := range fill {
			fill[i] = byte(rng.Uint32())
		}
		if err := vol.WriteAt(fill, off); err != nil {
			b.Fatal(err)
		}
	}
	if err := vol.Flush(); err != nil {
		b.Fatal(err)
	}
	cfg := Config{Session: "s", Subsystems: []string{"ss1"}, Volumes: map[string]*volume.Volume{"vol1": vol},
		JournalDir: filepath.Join(dir, "journal"), StatePath: filepath.Join(dir, "state.json"),
		Limits: recordset.Limits{MaxPayload: 64 << 20}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if hist {
		cfg.History = HistoryConfig{Dir: filepath.Join(dir, "history"), Window: time.Hour, MaxBytes: 1 << 30}
		if r.steps {
			cfg.History.Interval = time.Duration(max(perSet/8, 1))
		}
	}
	sec, err := Open(cfg)
	if err != nil {
		b.Fatal(err)
	}
	net := transport.NewMemNetwork(1, transport.Faults{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); sec.Run(ctx, net) }()
	defer func() { cancel(); <-done; sec.Close() }()
	conn, err := net.Dial(ctx)
	if err != nil {
		b.Fatal(err)
	}
	if err := conn.Send(transport.EncodeHello(transport.Hello{Session: "s", Subsystems: []string{"ss1"}, Instance: 7,
		Volumes: []transport.VolumeInfo{{Name: "vol1", Size: volSize}}})); err != nil {
		b.Fatal(err)
	}
	if _, err := conn.Recv(); err != nil {
		b.Fatal(err)
	}
	// The steps arm's record sets follow one of an empty first copy.
	first := 0
	if r.steps {
		first = 1
	}
	data := make([]byte, chunk)
	for i := range data {
		data[i] = byte(i*7 + 1)
	}
	frames := make([][]byte, sets+1)
	// Times of now: the history's window is counted back from now.
	base := time.Now().UnixNano()
	for n := range frames {
		seq := uint64(first + n + 1)
		ts := base + int64(seq)*1000
		rs := &recordset.RecordSet{Session: "s", Subsystem: "ss1", Seq: seq, Group: seq, ReadTime: ts, Horizon: ts + 999}
		writes, size := perSet, chunk
		if n == sets {
			// The one applyDuring sends: one small write, applied in a
			// moment unless something holds applying back.
			writes, size = 1, 4096
		}
		for i := range writes {
			off := (uint64(n*perSet+i) * uint64(size)) % volSize
			if size < 1<<20 {
				off = uint64(rng.IntN(volSize/size)) * uint64(size)
			}
			rs.Updates = append(rs.Updates, recordset.Update{Volume: "vol1", Kind: recordset.KindWrite, Offset: off, Length: uint64(size),
				Timestamp: ts + int64(i), Seq: seq*uint64(perSet) + uint64(i), Data: data[:size]})
		}
		f, err := recordset.Encode([]byte{transport.TypeRecordSet}, rs)
		if err != nil {
			b.Fatal(err)
		}
		frames[n] = transport.Seal(f)
	}
	go func() {
		for {
			if _, err := conn.Recv(); err != nil {
				return
			}
		}
	}()
	if r.steps {
		ts := base
		rs := &recordset.RecordSet{Session: "s", Subsystem: "ss1", Seq: 1, Group: 1, ReadTime: ts, Horizon: ts + 999, Updates: []recordset.Update{
			recordset.Marker{State: recordset.StateFirstCopy}.Update("vol1"), recordset.Marker{State: recordset.StateCopyEnd}.Update("vol1")}}
		for i := range rs.Updates {
			rs.Updates[i].Timestamp, rs.Updates[i].Seq = ts+int64(i), uint64(i+1)
		}
		f, err := recordset.Encode([]byte{transport.TypeRecordSet}, rs)
		if err != nil {
			b.Fatal(err)
		}
		if err := conn.Send(transport.Seal(f)); err != nil {
			b.Fatal(err)
		}
		for sec.Stats().Group < 1 {
			time.Sleep(100 * time.Microsecond)
		}
	}
	var sc *history.Scratch
	if r.view == "spilled" || r.openAt {
		if sc, err = history.CreateScratch(filepath.Join(dir, "scratch"), 1<<40); err != nil {
			b.Fatal(err)
		}
		defer sc.Close()
	}
	if r.view != "" {
		v, err := sec.PinSpilled(sc)
		if err != nil {
			b.Fatal(err)
		}
		defer v.Close()
	}
	heap0 := heapInUse()
	want := uint64(sets * perSet * chunk)
	cpu0, t0 := cpuTime(), time.Now()
	for _, f := range frames[:sets] {
		if err := conn.Send(f); err != nil {
			b.Fatal(err)
		}
	}
	for sec.Stats().BytesApplied < want {
		time.Sleep(100 * time.Microsecond)
	}
	r.cpu, r.wall = cpuTime()-cpu0, time.Since(t0)
	r.heap = heapInUse() - heap0
	if sc != nil {
		r.scratch = sc.Bytes()
	}
	st := sec.Stats()
	if hist && st.HistoryBytes == 0 {
		b.Fatal(fmt.Errorf("history on, but it holds nothing"))
	}
	r.histBytes = st.HistoryBytes
	if hist {
		r.histDisk = diskBytes(b, cfg.History.Dir)
	}
	if r.steps && len(sec.hist.Points()) <= int(sec.Stats().Group) {
		b.Fatalf("history in steps, but it holds %d points for %d groups", len(sec.hist.Points()), sec.Stats().Group)
	}
	if r.openAt {
		var open *history.Scratch
		if r.view == "spilled" {
			open = sc
		}
		before := int64(0)
		if open != nil {
			before = open.Bytes()
		}
		heap0, cpu0, t0 := heapInUse(), cpuTime(), time.Now()
		applied := make(chan time.Duration, 1)
		if r.applyDuring {
			// Sent as the open starts: it is journaled before it can be
			// applied, by which time the open is reading the undo.
			if err := conn.Send(frames[sets]); err != nil {
				b.Fatal(err)
			}
			go func() {
				for sec.Stats().BytesApplied < want+4096 {
					time.Sleep(100 * time.Microsecond)
				}
				applied <- time.Since(t0)
			}()
		}
		v, err := sec.PinAtSpilled(base+1999, open)
		if err != nil {
			b.Fatal(err)
		}
		r.openCPU, r.openWall = cpuTime()-cpu0, time.Since(t0)
		if r.applyDuring {
			r.applyWait = <-applied
		}
		r.openHeap = heapInUse() - heap0
		if v.Group >= uint64(sets) {
			b.Fatalf("the view of the first record set's time is of group %d, the newest", v.Group)
		}
		for _, o := range v.over {
			r.openUndo += o.Bytes() + o.Spilled()
		}
		if open != nil {
			r.openUndo = open.Bytes() - before
		}
		v.Close()
	}
	return r
}

// heapInUse is the heap in use after a collection.
func heapInUse() int64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapInuse)
}

// diskBytes is what the files under dir take on disk (their blocks).
func diskBytes(b *testing.B, dir string) int64 {
	var n int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			n += st.Blocks * 512
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	return n
}
