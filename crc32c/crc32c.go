// Package crc32c is the CRC-32C (Castagnoli) checksum that the record-set
// encoding (package recordset) and the journal (package journal) carry, with
// Combine, which gives the checksum of two byte strings joined from the
// checksums of each. It lets the secondary, which verifies every update's
// data once on arrival, checksum a journal record made of those updates
// without reading their bytes again: journaling and applying a consistency
// group then cost one pass over its data for checksums, not three.
//
// The checksum is hash/crc32's with the crc32.Castagnoli table (reflected,
// initial value and final XOR 0xffffffff).
package crc32c

import (
	"hash/crc32"
	"sync"
)

// Table is the CRC-32C table.
var Table = crc32.MakeTable(crc32.Castagnoli)

// Checksum is the CRC-32C of p.
func Checksum(p []byte) uint32 { return update(0, p) }

// Update extends crc, the CRC-32C of some bytes, to those bytes followed by p.
func Update(crc uint32, p []byte) uint32 { return update(crc, p) }

// poly is the Castagnoli polynomial, reflected.
const poly = 0x82f63b78

// x2n[k] is x^(2^k) modulo the polynomial. xPow8n needs k up to 3+63 for
// any int64 length; the powers do not cycle with a short period (x^(2^32)
// is not x for this polynomial), so the table must not wrap.
var x2n = func() (t [3 + 64]uint32) {
	p := uint32(1) << 30 // x^1
	t[0] = p
	for k := 1; k < len(t); k++ {
		p = multModP(p, p)
		t[k] = p
	}
	return t
}()

// multModP is a(x) b(x) modulo the polynomial, in the reflected bit order.
func multModP(a, b uint32) uint32 {
	var p uint32
	for m := uint32(1) << 31; m != 0; m >>= 1 {
		if a&m != 0 {
			p ^= b
			if a&(m-1) == 0 {
				break
			}
		}
		if b&1 != 0 {
			b = b>>1 ^ poly
		} else {
			b >>= 1
		}
	}
	return p
}

// mulTables[k] multiplies by x2n[k] with four table look-ups, one per byte
// of the multiplicand (the product is linear in it): built on first use, as
// most lengths combined have few bits set (a 4 KiB write's one).
var mulTables [len(x2n)]struct {
	once sync.Once
	t    *[4][256]uint32
}

func mulTable(k int) *[4][256]uint32 {
	e := &mulTables[k]
	e.once.Do(func() {
		t := new([4][256]uint32)
		for i := range t {
			for bit := range 8 {
				t[i][1<<bit] = multModP(x2n[k], uint32(1)<<(8*i+bit))
			}
			for v := 3; v < 256; v++ {
				if low := v & -v; low != v {
					t[i][v] = t[i][low] ^ t[i][v^low]
				}
			}
		}
		e.t = t
	})
	return e.t
}

// shift8n is crc followed by n zero bytes' worth of shifting: crc times
// x^(8n) modulo the polynomial, what appending n bytes does to a checksum.
func shift8n(crc uint32, n int64) uint32 {
	for u, k := uint64(n), 3; u != 0; u, k = u>>1, k+1 {
		if u&1 != 0 {
			t := mulTable(k)
			crc = t[0][crc&0xff] ^ t[1][crc>>8&0xff] ^ t[2][crc>>16&0xff] ^ t[3][crc>>24]
		}
	}
	return crc
}

// Combine is the CRC-32C of a followed by b, given crcA of a, crcB of b and
// the length of b. It costs four table look-ups per bit set in lenB: the
// secondary combines one for every update it journals.
func Combine(crcA, crcB uint32, lenB int64) uint32 {
	return shift8n(crcA, lenB) ^ crcB
}
