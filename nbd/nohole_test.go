package nbd

import (
	"bytes"
	"slices"
	"sync"
	"testing"
)

// zeroings records how an export was asked to zero.
type zeroings struct {
	zmu               sync.Mutex
	allocated, anyway [][2]int64 // WriteZeroesAllocated's ranges, WriteZeroes's
	writtenZero       int        // WriteAt calls of zeroes only
}

func (z *zeroings) add(to *[][2]int64, off, n int64) {
	z.zmu.Lock()
	*to = append(*to, [2]int64{off, n})
	z.zmu.Unlock()
}

// seen returns what was recorded: the server's workers record it, and the
// replies the test reads, through a socket, order nothing for the race
// detector.
func (z *zeroings) seen() (allocated, anyway [][2]int64, writtenZero int) {
	z.zmu.Lock()
	defer z.zmu.Unlock()
	return slices.Clone(z.allocated), slices.Clone(z.anyway), z.writtenZero
}

// provisioningExport is a Provisioner.
type provisioningExport struct {
	*memExport
	zeroings
}

func (p *provisioningExport) WriteZeroes(off, n int64) error {
	p.add(&p.anyway, off, n)
	return p.memExport.WriteZeroes(off, n)
}

func (p *provisioningExport) WriteZeroesAllocated(off, n int64) error {
	p.add(&p.allocated, off, n)
	return p.memExport.WriteZeroes(off, n)
}

// plainExport is not.
type plainExport struct {
	*memExport
	zeroings
}

func (p *plainExport) WriteZeroes(off, n int64) error {
	p.add(&p.anyway, off, n)
	return p.memExport.WriteZeroes(off, n)
}

func (p *plainExport) WriteAt(b []byte, off int64) error {
	if bytes.Count(b, []byte{0}) == len(b) {
		p.zmu.Lock()
		p.writtenZero++
		p.zmu.Unlock()
	}
	return p.memExport.WriteAt(b, off)
}

// TestNoHoleZeroesKeepTheRangeAllocated: a WRITE_ZEROES with
// NBD_CMD_FLAG_NO_HOLE, after which the protocol says the range MUST be
// fully provisioned, goes to a Provisioner's WriteZeroesAllocated, and to an
// export that is none as zeroes written through WriteAt, in pieces for a
// range larger than a buffer; one without the flag goes to WriteZeroes. Each
// reads back as zeroes.
func TestNoHoleZeroesKeepTheRangeAllocated(t *testing.T) {
	const size = 4 << 20
	prov := &provisioningExport{memExport: newMemExport(size)}
	plain := &plainExport{memExport: newMemExport(size)}
	if _, ok := Export(plain).(Provisioner); ok {
		t.Fatal("plainExport is a Provisioner")
	}
	addr := startServer(t, &Server{Exports: exportMap{"prov": prov, "plain": plain}})
	for _, name := range []string{"prov", "plain"} {
		c, err := Dial(addr, name)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.WriteAt(bytes.Repeat([]byte{0xAB}, size), 0); err != nil {
			t.Fatal(err)
		}
		c.Close()
		r := rawDial(t, addr)
		r.open(name)
		r.request(CmdFlagNoHole, CmdWriteZeroes, 1, 4096+1, 3<<20, nil)
		r.expectReply(1, 0)
		r.request(CmdFlagNoHole|CmdFlagFUA, CmdWriteZeroes, 2, 0, 100, nil)
		r.expectReply(2, 0)
		r.request(0, CmdWriteZeroes, 3, size-8192, 4096, nil)
		r.expectReply(3, 0)
		r.request(0, CmdRead, 4, 0, size, nil)
		r.expectReply(4, 0)
		got := r.read(size)
		want := bytes.Repeat([]byte{0xAB}, size)
		clear(want[4096+1 : 4096+1+3<<20])
		clear(want[:100])
		clear(want[size-8192 : size-4096])
		if !bytes.Equal(got, want) {
			t.Errorf("%s: the data read back differs from what was written and zeroed", name)
		}
	}
	allocated, anyway, _ := prov.seen()
	if want := [][2]int64{{4096 + 1, 3 << 20}, {0, 100}}; !slices.Equal(allocated, want) || !slices.Equal(anyway, [][2]int64{{size - 8192, 4096}}) {
		t.Errorf("a Provisioner was asked to zero %v keeping them allocated and %v as it likes; want %v and [[%d 4096]]",
			allocated, anyway, want, size-8192)
	}
	// The zeroes of 3 MiB in 1 MiB pieces and of 100 bytes.
	allocated, anyway, writtenZero := plain.seen()
	if len(allocated) != 0 || !slices.Equal(anyway, [][2]int64{{size - 8192, 4096}}) || writtenZero != 4 {
		t.Errorf("an export that is no Provisioner: %d writes of zeroes, WriteZeroes %v; want the NO_HOLE zeroes written "+
			"in 4 writes of zeroes, WriteZeroes [[%d 4096]] alone", writtenZero, anyway, size-8192)
	}
}
