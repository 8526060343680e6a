package secondary

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
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
	benchApply(b, net, net)
}

// BenchmarkApply1MiBWritesTCP is the same over loopback TCP, the daemons'
// link: the in-memory link copies each frame on both sides, which TCP
// does not.
func BenchmarkApply1MiBWritesTCP(b *testing.B) {
	ln, err := transport.ListenTCP("127.0.0.1:0", nil, 0)
	if err != nil {
		b.Fatal(err)
	}
	benchApply(b, ln, &transport.TCPDialer{Addr: ln.Addr()})
}

func benchApply(b *testing.B, ln transport.Listener, dialer transport.Dialer) {
	const (
		volSize = 256 << 20
		perSet  = 4
		chunk   = 1 << 20
	)
	noPoison(b)
	b.ReportAllocs()
	dir := b.TempDir()
	vol, err := volume.Open(filepath.Join(dir, "vol1.img"), volSize)
	if err != nil {
		b.Fatal(err)
	}
	defer vol.Close()
	sec, err := Open(Config{Session: "s", Subsystems: []string{"ss1"}, Volumes: map[string]*volume.Volume{"vol1": vol},
		JournalDir: filepath.Join(dir, "journal"), StatePath: filepath.Join(dir, "state.json"),
		Limits: recordset.Limits{MaxPayload: 64 << 20}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
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
			off := (uint64(n*perSet+i) * chunk) % volSize
			rs.Updates = append(rs.Updates, recordset.Update{Volume: "vol1", Kind: recordset.KindWrite, Offset: off, Length: chunk,
				Timestamp: ts + int64(i), Seq: seq*perSet + uint64(i), Data: data})
		}
		f, err := recordset.Encode([]byte{transport.TypeRecordSet}, rs)
		if err != nil {
			b.Fatal(err)
		}
		frames[n] = transport.Seal(f)
	}
	// Acknowledgements are read as they come, so the link never backs up.
	go func() {
		for {
			if _, err := conn.Recv(); err != nil {
				return
			}
		}
	}()
	want := uint64(b.N) * perSet * chunk
	cpu0 := cpuTime()
	b.ResetTimer()
	for _, f := range frames {
		if err := conn.Send(f); err != nil {
			b.Fatal(err)
		}
	}
	for sec.Stats().BytesApplied < want {
		time.Sleep(100 * time.Microsecond)
	}
	b.StopTimer()
	cpu := cpuTime() - cpu0
	b.ReportMetric(float64(cpu.Microseconds())/1000/(float64(want)/(1<<20)), "cpu-ms/MiB")
	b.SetBytes(perSet * chunk)
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
