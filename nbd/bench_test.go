package nbd

import (
	"encoding/binary"
	"fmt"
	"io"
	"syscall"
	"testing"
	"time"
)

// nullExport does nothing, so the benchmark measures the protocol path:
// parsing, dispatch, buffers and loopback TCP.
type nullExport struct{ size int64 }

func (n nullExport) Size() int64                  { return n.size }
func (nullExport) ReadOnly() bool                 { return false }
func (nullExport) ReadAt(p []byte, _ int64) error { clear(p); return nil }
func (nullExport) WriteAt([]byte, int64) error    { return nil }
func (nullExport) WriteZeroes(int64, int64) error { return nil }
func (nullExport) Trim(int64, int64) error        { return nil }
func (nullExport) Flush() error                   { return nil }

// cpuTime is the CPU time, user and system, this process has used: client and
// server together. On a loaded machine it is steadier than wall time, which
// counts the time other processes hold the CPU.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkRoundTrip measures one sequential READ or WRITE round trip over
// loopback with the package's Client (queue depth 1). Besides wall time it
// reports cpu-ns/op, the CPU time of client and server per round trip.
func BenchmarkRoundTrip(b *testing.B) {
	addr := startServer(b, &Server{Exports: exportMap{"null": nullExport{1 << 30}}})
	benchRoundTrips(b, func() (*Client, error) { return Dial(addr, "null") })
}

// BenchmarkRoundTripTLS is BenchmarkRoundTrip over NBD_OPT_STARTTLS with a
// client certificate: what encryption adds per round trip.
func BenchmarkRoundTripTLS(b *testing.B) {
	pki := newTestPKI(b, "bench CA")
	addr := startServer(b, &Server{Exports: exportMap{"null": nullExport{1 << 30}}, TLS: pki.serverTLS(b)})
	conf := pki.clientTLS(b, pki)
	benchRoundTrips(b, func() (*Client, error) { return DialTLS(addr, "null", conf) })
}

func benchRoundTrips(b *testing.B, dial func() (*Client, error)) {
	for _, size := range []int{4 << 10, 64 << 10, 1 << 20} {
		for _, op := range []string{"read", "write"} {
			b.Run(fmt.Sprintf("%s-%dk", op, size>>10), func(b *testing.B) {
				c, err := dial()
				if err != nil {
					b.Fatal(err)
				}
				defer c.Close()
				buf := make([]byte, size)
				b.SetBytes(int64(size))
				b.ReportAllocs()
				cpu0 := cpuTime(b)
				for i := 0; b.Loop(); i++ {
					off := int64(i%1024) * int64(size) % (1 << 30)
					if op == "read" {
						err = c.ReadAt(buf, off)
					} else {
						err = c.WriteAt(buf, off)
					}
					if err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(cpuTime(b)-cpu0)/float64(b.N), "cpu-ns/op")
			})
		}
	}
}

// BenchmarkParallelClients runs one client per goroutine, which is how the
// server sees a multi-queue user (nbdcopy, the kernel with several
// connections).
func BenchmarkParallelClients(b *testing.B) {
	addr := startServer(b, &Server{Exports: exportMap{"null": nullExport{1 << 30}}})
	const size = 64 << 10
	b.SetBytes(size)
	b.RunParallel(func(pb *testing.PB) {
		c, err := Dial(addr, "null")
		if err != nil {
			b.Error(err)
			return
		}
		defer c.Close()
		buf := make([]byte, size)
		for i := 0; pb.Next(); i++ {
			if i%2 == 0 {
				err = c.WriteAt(buf, 0)
			} else {
				err = c.ReadAt(buf, 0)
			}
			if err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkQueueDepth16 keeps 16 4 KiB WRITEs in flight on one connection,
// as fio at iodepth 16 does: requests from one goroutine, replies read by
// another. cpu-ns/op is client and server together.
func BenchmarkQueueDepth16(b *testing.B) {
	addr := startServer(b, &Server{Exports: exportMap{"null": nullExport{1 << 30}}})
	r := rawDial(b, addr)
	r.open("null")
	r.nc.SetDeadline(time.Time{})
	const depth = 16
	req := requestBytes(0, CmdWrite, 1, 0, 4096, make([]byte, 4096))
	slots := make(chan struct{}, depth)
	replies := make(chan error, 1)
	b.SetBytes(4096)
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cpuTime(b)
	go func() {
		var h [16]byte
		for range b.N {
			if _, err := io.ReadFull(r.br, h[:]); err != nil {
				replies <- err
				return
			}
			if e := binary.BigEndian.Uint32(h[4:]); e != 0 {
				replies <- fmt.Errorf("reply error %d", e)
				return
			}
			<-slots
		}
		replies <- nil
	}()
	for range b.N {
		slots <- struct{}{}
		if _, err := r.nc.Write(req); err != nil {
			b.Fatal(err)
		}
	}
	if err := <-replies; err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(cpuTime(b)-cpu0)/float64(b.N), "cpu-ns/op")
}
