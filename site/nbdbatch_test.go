package site

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"duplex/nbd"
)

// TestPipelinedOverlappingWritesReachTheSecondaryAsOnThePrimary: an NBD
// client sends its writes 16 at a time, each overlapping others of its
// batch, so that the primary's export serves many on the connection's read
// loop and the rest on workers, concurrently. Whichever order the writes
// of a batch take, the secondary ends with the primary's copy: each
// update's stamp orders it as it reached the volume.
func TestPipelinedOverlappingWritesReachTheSecondaryAsOnThePrimary(t *testing.T) {
	cfg := linkConfig(t)
	cfg.Primary.NBD = "127.0.0.1:0"
	s, _ := runSecondary(t, cfg)
	cfg.Primary.Secondary = s.ListenAddr()
	p, _ := startPrimary(t, cfg, healthyReadWait)
	waitFor(t, 30*time.Second, "every pair duplex", func() bool { return allPairsDuplex(p.Status()) })

	nc, err := net.Dial("tcp", p.NBDAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	// The sequential client's handshake; the requests then go straight
	// on its connection, 16 at a time.
	if _, err := nbd.NewClient(nc, "vol1"); err != nil {
		t.Fatal(err)
	}
	nc.SetDeadline(time.Now().Add(time.Minute))
	rng := rand.New(rand.NewPCG(7, 8))
	const rounds, batch = 300, 16
	var b []byte
	for round := range rounds {
		b = b[:0]
		for i := range batch {
			// 4 blocks of 8 KiB, written in pieces of 512 B to 8 KiB.
			n := 512 * (1 + rng.IntN(16))
			off := uint64(rng.IntN(4))*8192 + uint64(512*rng.IntN(16))
			off = min(off, 4*8192-uint64(n))
			b = binary.BigEndian.AppendUint32(b, 0x25609513)
			b = binary.BigEndian.AppendUint16(b, 0)
			b = binary.BigEndian.AppendUint16(b, 1) // NBD_CMD_WRITE
			b = binary.BigEndian.AppendUint64(b, uint64(round*batch+i))
			b = binary.BigEndian.AppendUint64(b, off)
			b = binary.BigEndian.AppendUint32(b, uint32(n))
			for j := 0; j < n; j += 8 {
				b = binary.BigEndian.AppendUint64(b, uint64(round*batch+i)<<16|uint64(j))
			}
		}
		if _, err := nc.Write(b); err != nil {
			t.Fatal(err)
		}
		for range batch {
			var rep [16]byte
			if _, err := io.ReadFull(nc, rep[:]); err != nil {
				t.Fatal(err)
			}
			if binary.BigEndian.Uint32(rep[:]) != 0x67446698 || binary.BigEndian.Uint32(rep[4:]) != 0 {
				t.Fatalf("round %d: reply % x", round, rep)
			}
		}
	}
	quiesceMover(t, p)
	waitFor(t, 30*time.Second, "the secondary's vol1 to be the primary's", func() bool { return sameVolume(t, p, s, "vol1") })
}

// TestSwitchoverUnderAPipelinedClientLosesNothing: a switchover while an NBD
// client sends its writes 16 at a time, most of them served on the read
// loop. The promoted secondary holds, at each place written, the last write
// acknowledged there; the writes the switchover paused are refused with
// ESHUTDOWN, never acknowledged, whether they were promised to the read
// loop before the pause or not.
func TestSwitchoverUnderAPipelinedClientLosesNothing(t *testing.T) {
	cfg := switchoverConfig(t)
	cfg.Primary.NBD = "127.0.0.1:0"
	s := startSecondaryForSwitchover(t, cfg)
	p, stopPrimary := startPrimaryForSwitchover(t, cfg)
	defer stopPrimary()
	waitDuplex(t, p)
	vol := cfg.VolumeNames()[0]
	nc, err := net.Dial("tcp", p.NBDAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if _, err := nbd.NewClient(nc, vol); err != nil {
		t.Fatal(err)
	}
	nc.SetDeadline(time.Now().Add(2 * time.Minute))
	var acked []ackedWrite
	var n atomic.Int64
	done := make(chan error, 1)
	go func() {
		for round := 0; ; round++ {
			var b []byte
			var ws []ackedWrite
			for i := range 16 {
				w := ackedWrite{vol: vol, off: int64((round*16+i)%256) * 4096, data: bytes.Repeat([]byte{byte(round)}, 4096)}
				binary.BigEndian.PutUint64(w.data, uint64(round*16+i+1))
				ws = append(ws, w)
				b = binary.BigEndian.AppendUint32(b, 0x25609513)
				b = binary.BigEndian.AppendUint16(b, 0)
				b = binary.BigEndian.AppendUint16(b, 1) // NBD_CMD_WRITE
				b = binary.BigEndian.AppendUint64(b, uint64(i))
				b = binary.BigEndian.AppendUint64(b, uint64(w.off))
				b = binary.BigEndian.AppendUint32(b, 4096)
				b = append(b, w.data...)
			}
			if _, err := nc.Write(b); err != nil {
				done <- err
				return
			}
			refused := false
			for range 16 {
				var rep [16]byte
				if _, err := io.ReadFull(nc, rep[:]); err != nil {
					done <- err
					return
				}
				switch errno := nbd.Errno(binary.BigEndian.Uint32(rep[4:])); errno {
				case 0:
					acked = append(acked, ws[binary.BigEndian.Uint64(rep[8:])%16])
					n.Add(1)
				case nbd.ESHUTDOWN:
					refused = true
				default:
					done <- fmt.Errorf("a write refused with %v, want ESHUTDOWN", errno)
					return
				}
			}
			if refused {
				done <- nil
				return
			}
		}
	}()
	waitFor(t, time.Minute, "64 writes acknowledged", func() bool { return n.Load() >= 64 })
	if _, err := p.Switchover(context.Background(), time.Minute); err != nil {
		t.Fatalf("switchover: %v", err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	t.Logf("%d writes acknowledged before the switchover", len(acked))
	var prom *Promoted
	select {
	case prom = <-s.promotedUp:
	case <-s.done:
		t.Fatalf("the secondary's Run ended with %v, and no promoted site serves", s.err)
	}
	holdsLastAcked(t, prom, acked)
}
