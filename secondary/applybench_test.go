package secondary

import (
	"context"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"duplex/recordset"
	"duplex/transport"
	"duplex/volume"
)

// BenchmarkApply1MiBWrites feeds the secondary record sets of four 1 MiB
// sequential writes over an in-memory link, as fast as it acknowledges
// them, and reports the process's CPU time (user + system, getrusage) per
// applied MiB: what receiving, journaling and applying cost, whatever the
// disk's speed. The frames are encoded before the clock starts.
func BenchmarkApply1MiBWrites(b *testing.B) {
	net := transport.NewMemNetwork(1, transport.Faults{})
	benchApply(b, net, net, nil, seq1MiB)
}

// BenchmarkApply1MiBWritesHeld is BenchmarkApply1MiBWrites at a coupled
// secondary whose Gate holds until every record set is acknowledged: the
// groups are journaled ahead and then applied read back from the journal.
// catchup-cpu-ms/MiB is the CPU from the release until all are applied.
func BenchmarkApply1MiBWritesHeld(b *testing.B) {
	net := transport.NewMemNetwork(1, transport.Faults{})
	benchApply(b, net, net, newTestGate(0), seq1MiB)
}

// BenchmarkApply1MiBWritesTCP is the same over loopback TCP, the daemons'
// link: the in-memory link copies each frame on both sides, which TCP
// does not.
func BenchmarkApply1MiBWritesTCP(b *testing.B) {
	ln, err := transport.ListenTCP("127.0.0.1:0", nil, 0)
	if err != nil {
		b.Fatal(err)
	}
	benchApply(b, ln, &transport.TCPDialer{Addr: ln.Addr()}, nil, seq1MiB)
}

// BenchmarkApply4KiBRandomWritesTCP is the same with record sets of 512
// writes of 4 KiB at random places (about one 20 ms interval of fio's
// randwrite 4k QD16 through the primary), and reports the CPU time per
// write (cpu-µs/write): the secondary's share of issue 9's whole-system
// job, without the primary and fio on the same CPUs.
func BenchmarkApply4KiBRandomWritesTCP(b *testing.B) {
	ln, err := transport.ListenTCP("127.0.0.1:0", nil, 0)
	if err != nil {
		b.Fatal(err)
	}
	benchApply(b, ln, &transport.TCPDialer{Addr: ln.Addr()}, nil, applyShape{perSet: 512, chunk: 4 << 10, random: true})
}

// applyShape is what the benchmark's record sets hold: perSet writes of
// chunk bytes, one after the other or at random places.
type applyShape struct {
	perSet, chunk int
	random        bool
}

var seq1MiB = applyShape{perSet: 4, chunk: 1 << 20}

// benchApply runs the benchmark with record sets of shape; a gate set
// holds applying until every record set is acknowledged.
func benchApply(b *testing.B, ln transport.Listener, dialer transport.Dialer, gate *testGate, shape applyShape) {
	const volSize = 256 << 20
	perSet, chunk := shape.perSet, shape.chunk
	rng := rand.New(rand.NewPCG(1, 2))
	noPoison(b)
	b.ReportAllocs()
	dir := b.TempDir()
	vol, err := volume.Open(filepath.Join(dir, "vol1.img"), volSize)
	if err != nil {
		b.Fatal(err)
	}
	defer vol.Close()
	cfg := Config{Session: "s", Subsystems: []string{"ss1"}, Volumes: map[string]*volume.Volume{"vol1": vol},
		JournalDir: filepath.Join(dir, "journal"), StatePath: filepath.Join(dir, "state.json"),
		Limits: recordset.Limits{MaxPayload: 64 << 20}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if gate != nil {
		cfg.Gate = gate
	}
	sec, err := Open(cfg)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); sec.Run(ctx, ln) }()
	defer func() { cancel(); <-done; sec.Close() }()
	conn, err := dialer.Dial(ctx)
	if err != nil {
		b.Fatal(err)
	}
	if err := conn.Send(transport.EncodeHello(transport.Hello{Session: "s", Subsystems: []string{"ss1"}, Instance: 7,
		Volumes: []transport.VolumeInfo{{Name: "vol1", Size: volSize}}})); err != nil {
		b.Fatal(err)
	}
	if _, err := conn.Recv(); err != nil { // the welcome
		b.Fatal(err)
	}
	data := make([]byte, chunk)
	for i := range data {
		data[i] = byte(i * 7)
	}
	frames := make([][]byte, b.N)
	for n := range frames {
		seq := uint64(n + 1)
		ts := int64(seq) * 1000
		rs := &recordset.RecordSet{Session: "s", Subsystem: "ss1", Seq: seq, Group: seq, ReadTime: ts, Horizon: ts + 999}
		for i := range perSet {
			off := (uint64(n*perSet+i) * uint64(chunk)) % volSize
			if shape.random {
				off = rng.Uint64N(volSize/uint64(chunk)) * uint64(chunk)
			}
			rs.Updates = append(rs.Updates, recordset.Update{Volume: "vol1", Kind: recordset.KindWrite, Offset: off, Length: uint64(chunk),
				Timestamp: ts + int64(i), Seq: seq*uint64(perSet) + uint64(i), Data: data})
		}
		f, err := recordset.Encode([]byte{transport.TypeRecordSet}, rs)
		if err != nil {
			b.Fatal(err)
		}
		frames[n] = transport.Seal(f)
	}
	// Acknowledgements are read as they come, so the link never backs up.
	var acked atomic.Uint64
	go func() {
		for {
			f, err := conn.Recv()
			if err != nil {
				return
			}
			if typ, body, err := transport.Open(f); err == nil && typ == transport.TypeAck {
				if p, err := transport.DecodePosition(body); err == nil {
					acked.Store(p.Group)
				}
			}
		}
	}()
	want := uint64(b.N) * uint64(perSet) * uint64(chunk)
	cpu0 := cpuTime()
	b.ResetTimer()
	for _, f := range frames {
		if err := conn.Send(f); err != nil {
			b.Fatal(err)
		}
	}
	var release time.Duration
	if gate != nil {
		// Every update journaled (the coupled time passes the last) and
		// acknowledged.
		for st := sec.Stats(); st.CoupledTime < int64(b.N)*1000+int64(perSet) || acked.Load() < st.JournaledGroup; st = sec.Stats() {
			time.Sleep(100 * time.Microsecond)
		}
		release = cpuTime()
		gate.set(math.MaxInt64)
	}
	for sec.Stats().BytesApplied < want {
		time.Sleep(100 * time.Microsecond)
	}
	b.StopTimer()
	cpu := cpuTime() - cpu0
	if shape.random {
		b.ReportMetric(float64(cpu.Microseconds())/float64(b.N*perSet), "cpu-µs/write")
	} else {
		b.ReportMetric(float64(cpu.Microseconds())/1000/(float64(want)/(1<<20)), "cpu-ms/MiB")
	}
	if gate != nil {
		b.ReportMetric(float64((cpuTime()-release).Microseconds())/1000/(float64(want)/(1<<20)), "catchup-cpu-ms/MiB")
	}
	b.SetBytes(int64(perSet * chunk))
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
