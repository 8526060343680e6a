package mover

import (
	"context"
	"math/rand/v2"
	"syscall"
	"testing"
	"time"

	"duplex/recordset"
	"duplex/transport"
)

// BenchmarkSend4KiBWrites is one interval of randwrite 4k QD16 through the
// primary (800 writes of 4 KiB, each in a buffer of its own) as the mover
// sends it over loopback TCP (EncodeSplit, then the vectored write of
// sendFrame) to a reader that discards it, and reports the process's CPU
// time per write (user + system, getrusage, the reader's included). Each
// write's bytes are put in its buffer first, as the NBD server reads them
// from the application, then, where the capture checksums them
// (checksummed), checksummed while they are in the cache; the mover then
// finds them an interval later, after the other work of the interval
// (fio, the server, the secondary on a shared machine) has pushed them out
// of the cache: 64 MiB are read between the capture and the send, outside
// the CPU time counted.
func BenchmarkSend4KiBWrites(b *testing.B) {
	for _, checksummed := range []bool{false, true} {
		name := "copied"
		if checksummed {
			name = "checksummed"
		}
		b.Run(name, func(b *testing.B) { benchSend(b, 800, 4<<10, checksummed) })
	}
}

func benchSend(b *testing.B, writes, size int, checksummed bool) {
	ln, err := transport.ListenTCP("127.0.0.1:0", nil, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	got := make(chan struct{})
	go func() {
		defer close(done)
		c, err := ln.Accept(ctx)
		if err != nil {
			return
		}
		defer c.Close()
		for {
			if _, err := c.Recv(); err != nil {
				return
			}
			got <- struct{}{}
		}
	}()
	conn, err := (&transport.TCPDialer{Addr: ln.Addr()}).Dial(ctx)
	if err != nil {
		b.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	src := make([]byte, size)
	for i := range src {
		src[i] = byte(rng.Uint32())
	}
	rs := &recordset.RecordSet{Session: "s", Subsystem: "ss1", ReadTime: 1, Horizon: 1 << 40}
	for i := range writes {
		rs.Updates = append(rs.Updates, recordset.Update{Volume: "vol1", Kind: recordset.KindWrite,
			Offset: rng.Uint64N(1<<16) * uint64(size), Length: uint64(size), Timestamp: int64(i + 1), Data: make([]byte, size)})
	}
	var frame []byte
	var ins []recordset.Insert
	var vec [][]byte
	other := make([]byte, 64<<20)
	var sink byte
	b.ReportAllocs()
	b.SetBytes(int64(writes * size))
	var cpu time.Duration
	for n := 0; b.Loop(); n++ {
		cpu0 := cpuTime()
		rs.Seq, rs.Group = uint64(n+1), uint64(n+1)
		for i := range rs.Updates {
			u := &rs.Updates[i]
			src[0] = byte(n) // a different payload each round
			copy(u.Data, src)
			u.Seq = uint64(n*writes + i + 1)
			if checksummed {
				u.Checksum()
			}
		}
		cpu += cpuTime() - cpu0
		for i := 0; i < len(other); i += 64 {
			other[i]++
			sink += other[i]
		}
		cpu0 = cpuTime()
		frame, ins, err = recordset.EncodeSplit(append(frame[:0], transport.TypeRecordSet), ins[:0], rs)
		if err != nil {
			b.Fatal(err)
		}
		frame = transport.Seal(frame)
		vec = vec[:0]
		at := 0
		for _, in := range ins {
			vec = append(vec, frame[at:in.At], in.Data)
			at = in.At
		}
		vec = append(vec, frame[at:])
		if err := transport.SendVec(conn, vec); err != nil {
			b.Fatal(err)
		}
		<-got
		cpu += cpuTime() - cpu0
	}
	b.ReportMetric(float64(cpu.Nanoseconds())/1000/float64(b.N*writes), "cpu-µs/write")
	if sink == 1 {
		b.Log("") // keeps the reads of other
	}
	conn.Close()
	<-done
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
