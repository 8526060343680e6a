// Package workload is a dependent-write workload and its checker: the tool that
// proves the method's promise that the secondary is always crash-consistent.
//
// Clients write 4 KiB blocks. Each block records who wrote it (client, counter)
// and the writes it depends on: the last write any client saw acknowledged
// before this one was issued, and the client's own previous write. Because a
// dependency was acknowledged before its dependent was issued, a consistent
// image that holds a write must hold each of its dependencies, or a newer write
// of the same client to that block. Check reads an image and counts the blocks
// that break this rule.
//
// Each client owns a disjoint set of blocks on every volume, so a block's
// counter only grows over time and "newer" is well defined.
package workload

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"sync"
	"sync/atomic"
)

// BlockSize is the unit every workload write covers.
const BlockSize = 4096

const (
	magic      = 0x44574b4c // "DWKL"
	headerSize = 4 + 4 + 8 + 4 + 4 + 2*ref + 4
	ref        = 4 + 8 + 4 + 4
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Ref names one write: who, which one, and where it went.
type Ref struct {
	Client  uint32
	Counter uint64 // 0: no write
	Volume  uint32
	Block   uint32
}

// Block is the decoded content of one workload block.
type Block struct {
	Ref
	Deps [2]Ref
}

// Encode fills a BlockSize buffer with b. The rest of the block is derived from
// (client, counter), so a torn or mixed block fails Decode.
func Encode(buf []byte, b Block) {
	be := binary.BigEndian
	be.PutUint32(buf[0:], magic)
	putRef := func(off int, r Ref) {
		be.PutUint32(buf[off:], r.Client)
		be.PutUint64(buf[off+4:], r.Counter)
		be.PutUint32(buf[off+12:], r.Volume)
		be.PutUint32(buf[off+16:], r.Block)
	}
	putRef(4, b.Ref)
	putRef(4+ref, b.Deps[0])
	putRef(4+2*ref, b.Deps[1])
	n := 4 + 3*ref
	fill(buf[n+4:BlockSize], b.Client, b.Counter)
	be.PutUint32(buf[n:], crc32.Checksum(buf[:n], castagnoli))
}

// fill writes a body derived from (client, counter). Each 8-byte word depends
// on its position, so a block torn at any sector boundary is detected.
func fill(p []byte, client uint32, counter uint64) {
	for i := 0; i+8 <= len(p); i += 8 {
		binary.LittleEndian.PutUint64(p[i:], word(client, counter, i))
	}
}

// word is the body's word at offset i: a 48-bit hash of the write above,
// i below. A sector of another write differs in the hash, one out of place
// in i, so a tear shows; and as the hash repeats along the block, it
// compresses (to about a tenth with zstd), so a compressed link has work.
func word(client uint32, counter uint64, i int) uint64 {
	x := uint64(client)<<48 ^ counter*0x9e3779b97f4a7c15
	x ^= x >> 31
	x *= 0x94d049bb133111eb
	return x&^0xffff | uint64(i)&0xffff
}

var zeroBlock [BlockSize]byte

// Decode parses a block. An all-zero block is the zero Block and ok.
func Decode(buf []byte) (Block, error) {
	be := binary.BigEndian
	if len(buf) != BlockSize {
		return Block{}, fmt.Errorf("block of %d bytes", len(buf))
	}
	if be.Uint32(buf) == 0 {
		// bytes.Equal, not a loop: checkers decode whole volumes after every
		// group, and a byte loop is what the race detector makes slow.
		if !bytes.Equal(buf, zeroBlock[:]) {
			return Block{}, errors.New("block without magic is not all zero")
		}
		return Block{}, nil
	}
	if be.Uint32(buf) != magic {
		return Block{}, errors.New("bad magic")
	}
	n := 4 + 3*ref
	if crc32.Checksum(buf[:n], castagnoli) != be.Uint32(buf[n:]) {
		return Block{}, errors.New("header CRC mismatch")
	}
	getRef := func(off int) Ref {
		return Ref{Client: be.Uint32(buf[off:]), Counter: be.Uint64(buf[off+4:]), Volume: be.Uint32(buf[off+12:]), Block: be.Uint32(buf[off+16:])}
	}
	b := Block{Ref: getRef(4), Deps: [2]Ref{getRef(4 + ref), getRef(4 + 2*ref)}}
	// One word in each 512-byte sector, and the last: enough to see a block
	// whose sectors come from different writes, at a fraction of the cost.
	body := buf[n+4:]
	for i := 0; i+8 <= len(body); i += 512 {
		if binary.LittleEndian.Uint64(body[i:]) != word(b.Client, b.Counter, i) {
			return Block{}, errors.New("block body torn")
		}
	}
	if last := (len(body)/8 - 1) * 8; binary.LittleEndian.Uint64(body[last:]) != word(b.Client, b.Counter, last) {
		return Block{}, errors.New("block body torn")
	}
	return b, nil
}

// Target is what the workload writes to: volume i of the layout.
type Target interface {
	WriteAt(ctx context.Context, volume int, p []byte, off int64) error
}

// Layout says how many volumes and blocks per volume, and how many clients
// share them.
type Layout struct {
	Volumes         int
	BlocksPerVolume int
	Clients         int
	// FirstClient numbers this run's clients FirstClient+1, FirstClient+2, ...
	// Runs against the same volumes (say, before and after a crash) use
	// distinct numbers and disjoint regions: a dependency of one run is then
	// never satisfied by a block of another, and a later run never overwrites
	// the evidence an earlier run's blocks depend on.
	FirstClient uint32
}

func (l Layout) perClient() int { return l.BlocksPerVolume / l.Clients }

// Run drives l.Clients concurrent clients, each issuing writes (each waiting
// for the previous to be acknowledged), until ctx ends or each client has made
// ops writes (ops <= 0: unlimited). It returns the number of acknowledged
// writes and the first write error.
func Run(ctx context.Context, l Layout, t Target, ops int, seed uint64) (int64, error) {
	if l.perClient() < 1 {
		return 0, fmt.Errorf("workload: %d blocks per volume cannot be shared by %d clients", l.BlocksPerVolume, l.Clients)
	}
	var global atomic.Pointer[Ref]
	global.Store(&Ref{})
	var acked atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, l.Clients)
	for c := range l.Clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, uint64(c)))
			buf := make([]byte, BlockSize)
			var own Ref
			for k := uint64(1); ops <= 0 || k <= uint64(ops); k++ {
				if ctx.Err() != nil {
					return
				}
				me := Ref{Client: l.FirstClient + uint32(c+1), Counter: k, Volume: uint32(rng.IntN(l.Volumes)),
					Block: uint32(c*l.perClient() + rng.IntN(l.perClient()))}
				Encode(buf, Block{Ref: me, Deps: [2]Ref{*global.Load(), own}})
				if err := t.WriteAt(ctx, int(me.Volume), buf, int64(me.Block)*BlockSize); err != nil {
					if ctx.Err() == nil {
						errs <- fmt.Errorf("client %d write %d: %w", me.Client, k, err)
					}
					return
				}
				acked.Add(1)
				own = me
				global.Store(&me)
			}
		}()
	}
	wg.Wait()
	close(errs)
	return acked.Load(), <-errs
}

// Reader reads volume i of an image.
type Reader func(volume int, p []byte, off int64) error

// Violation is a block that holds a write without one of its dependencies.
type Violation struct {
	Holder Ref
	Needs  Ref
	Found  Ref // what is at the dependency's place
	Err    error
}

func (v Violation) String() string {
	if v.Err != nil {
		return fmt.Sprintf("volume %d block %d: %v", v.Holder.Volume, v.Holder.Block, v.Err)
	}
	return fmt.Sprintf("write %d/%d (vol %d blk %d) present but its dependency %d/%d (vol %d blk %d) is not: found %d/%d",
		v.Holder.Client, v.Holder.Counter, v.Holder.Volume, v.Holder.Block,
		v.Needs.Client, v.Needs.Counter, v.Needs.Volume, v.Needs.Block, v.Found.Client, v.Found.Counter)
}

// Image is the decoded content of every block of every volume.
type Image [][]Block

// ReadImage reads and decodes every block. Undecodable blocks are violations.
func ReadImage(l Layout, read Reader) (Image, []Violation, error) {
	img := make(Image, l.Volumes)
	var bad []Violation
	buf := make([]byte, BlockSize*64)
	for v := range l.Volumes {
		img[v] = make([]Block, l.BlocksPerVolume)
		for b0 := 0; b0 < l.BlocksPerVolume; b0 += 64 {
			n := min(64, l.BlocksPerVolume-b0)
			if err := read(v, buf[:n*BlockSize], int64(b0)*BlockSize); err != nil {
				return nil, nil, fmt.Errorf("read volume %d: %w", v, err)
			}
			for i := range n {
				blk, err := Decode(buf[i*BlockSize : (i+1)*BlockSize])
				if err != nil {
					bad = append(bad, Violation{Holder: Ref{Volume: uint32(v), Block: uint32(b0 + i)}, Err: err})
				}
				img[v][b0+i] = blk
			}
		}
	}
	return img, bad, nil
}

// Check returns every dependent-write violation in an image.
func Check(l Layout, read Reader) ([]Violation, error) {
	img, bad, err := ReadImage(l, read)
	if err != nil {
		return nil, err
	}
	return append(bad, img.Violations(img, Scope{})...), nil
}

// Scope narrows a check to what a consistent copy must hold while part of a
// session is outside its consistency group, or when the image holds several
// runs of the workload.
type Scope struct {
	// Outside reports the volumes whose copy is not in the consistency
	// group (a suspended, pending or deleted pair): their blocks are not
	// checked, and a dependency on them is not required.
	Outside func(volume int) bool
	// Run says which run a client belongs to (see Layout.FirstClient). Runs
	// follow each other: every write of one was acknowledged or abandoned
	// before the next began, so a dependency is also met by a write of a
	// later run at its place.
	Run func(client uint32) int
}

// Violations checks the writes held by img against the dependencies found in
// deps. deps may be the same image, or one read later from a copy that only
// moves forward: a block's content only grows newer in such a copy, so a
// dependency present when img was read is still met in deps, and two reads of
// a live copy can be checked without a snapshot of it. Undecodable blocks of
// img are reported by ReadImage, not here.
func (img Image) Violations(deps Image, sc Scope) []Violation {
	outside := func(v int) bool { return sc.Outside != nil && sc.Outside(v) }
	var bad []Violation
	for v := range img {
		if outside(v) {
			continue
		}
		for b, blk := range img[v] {
			if blk.Counter == 0 {
				continue
			}
			if blk.Volume != uint32(v) || blk.Block != uint32(b) {
				bad = append(bad, Violation{Holder: blk.Ref, Err: fmt.Errorf("found at volume %d block %d", v, b)})
				continue
			}
			for _, d := range blk.Deps {
				if d.Counter == 0 {
					continue
				}
				if int(d.Volume) >= len(deps) || int(d.Block) >= len(deps[d.Volume]) {
					bad = append(bad, Violation{Holder: blk.Ref, Needs: d, Err: errors.New("dependency outside the layout")})
					continue
				}
				if outside(int(d.Volume)) {
					continue
				}
				there := deps[d.Volume][d.Block]
				if there.Client == d.Client && there.Counter >= d.Counter {
					continue
				}
				if sc.Run != nil && there.Counter > 0 && sc.Run(there.Client) > sc.Run(d.Client) {
					continue
				}
				bad = append(bad, Violation{Holder: blk.Ref, Needs: d, Found: there.Ref})
			}
		}
	}
	return bad
}

// Stats summarises an image: how many blocks hold a write and the highest
// counter per client.
func (img Image) Stats() (written int, highest map[uint32]uint64) {
	highest = map[uint32]uint64{}
	for _, vol := range img {
		for _, b := range vol {
			if b.Counter > 0 {
				written++
				highest[b.Client] = max(highest[b.Client], b.Counter)
			}
		}
	}
	return written, highest
}
