package crc32c

import "hash/crc32"

// foldMin is the shortest input folded: below it hash/crc32's loop costs
// less than the reduction.
const foldMin = 256

// foldConsts are the multipliers of fold512: for each 128-bit lane, its
// low and high 64 bits' (the lane's first and last eight bytes in
// memory). loop moves every lane 512 bits on; final moves lanes 0–2 onto
// lane 3 (384, 256 and 128 bits on), lane 3's pair zero.
type foldConsts struct {
	loop  [2]uint64
	final [8]uint64
}

var consts = foldConstsFor()

func foldConstsFor() *foldConsts {
	var k foldConsts
	k.loop = shiftPair(512)
	for j := 0; j < 3; j++ {
		p := shiftPair(128 * (3 - j))
		k.final[2*j], k.final[2*j+1] = p[0], p[1]
	}
	return &k
}

// shiftPair is the multipliers that move a 128-bit lane d bits on. A lane
// holds, in the reflected order, lo(x)·x^64 + hi(x); a carry-less multiply
// of two reflected 64-bit values gives x·a(x)·b(x) in a reflected 128-bit
// register. So lo's multiplier is x^(63+d) and hi's x^(d-1), modulo the
// polynomial, each a polynomial of degree under 32 laid in the reflected
// 64-bit order: the coefficient of x^i at bit 63-i.
func shiftPair(d int) [2]uint64 {
	return [2]uint64{reflect64(xPowMod(63 + d)), reflect64(xPowMod(d - 1))}
}

// xPowMod is x^n modulo the Castagnoli polynomial, in the usual bit order
// (the coefficient of x^i at bit i).
func xPowMod(n int) uint32 {
	const normal = 0x1edc6f41 // the polynomial less x^32
	r := uint32(1)
	for ; n > 0; n-- {
		carry := r&(1<<31) != 0
		r <<= 1
		if carry {
			r ^= normal
		}
	}
	return r
}

func reflect64(k uint32) uint64 {
	var r uint64
	for i := 0; i < 32; i++ {
		if k&(1<<i) != 0 {
			r |= 1 << (63 - i)
		}
	}
	return r
}

// update is crc32.Update with the Castagnoli table, the bulk of a long p
// folded where the processor allows.
func update(crc uint32, p []byte) uint32 {
	if !folding || len(p) < foldMin {
		return crc32.Update(crc, Table, p)
	}
	n := len(p) &^ 63
	// hash/crc32 takes and returns the register inverted.
	return crc32.Update(^fold512(p[:n], ^crc, consts), Table, p[n:])
}
