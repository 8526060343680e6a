package crc32c

import "golang.org/x/sys/cpu"

// folding: 64 bytes at a time with carry-less multiplies of four 128-bit
// lanes (AVX-512 VPCLMULQDQ). Every update's data is checksummed once at
// each site; a 4 KiB update took hash/crc32's SSE4.2 loop about 180 ns on
// the machines this was measured on, folded about 115.
//
// GODEBUG=cpu.avx512=off clears x/sys/cpu's HasAVX512 and leaves
// HasAVX512F set, so both are asked for: every switch for what the folding
// uses takes it out without a rebuild. Its last two instructions are
// SSE4.2's crc32.
var folding = cpu.X86.HasAVX512 && cpu.X86.HasAVX512F && cpu.X86.HasAVX512VPCLMULQDQ && cpu.X86.HasSSE42

//go:noescape
func fold512(p []byte, crc uint32, k *foldConsts) uint32
