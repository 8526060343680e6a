#include "textflag.h"

// func fold512(p []byte, crc uint32, k *foldConsts) uint32
//
// p's length is a multiple of 64, at least 64. crc, the register's value
// before p (not inverted), is XORed into p's first four bytes as it is
// loaded; four 128-bit lanes are then folded 64 bytes forward at a time,
// and finally onto the last lane, whose 16 bytes leave a register started
// at zero where p leaves it: the register after p is theirs.
TEXT ·fold512(SB), NOSPLIT, $0-44
	MOVQ p_base+0(FP), SI
	MOVQ p_len+8(FP), CX
	MOVL crc+24(FP), AX
	MOVQ k+32(FP), DX

	VMOVDQU64 (SI), Z0
	VMOVQ AX, X1
	VPXORQ Z1, Z0, Z0
	ADDQ $64, SI
	SUBQ $64, CX
	VBROADCASTI32X4 (DX), Z2

loop:
	CMPQ CX, $64
	JB   reduce
	VMOVDQU64 (SI), Z3
	VPCLMULQDQ $0x00, Z2, Z0, Z4
	VPCLMULQDQ $0x11, Z2, Z0, Z5
	VPTERNLOGQ $0x96, Z3, Z4, Z5
	VMOVDQA64 Z5, Z0
	ADDQ $64, SI
	SUBQ $64, CX
	JMP  loop

reduce:
	VMOVDQU64 16(DX), Z2
	VPCLMULQDQ $0x00, Z2, Z0, Z4
	VPCLMULQDQ $0x11, Z2, Z0, Z5
	VPXORQ Z4, Z5, Z4
	VEXTRACTI32X4 $3, Z0, X6
	VEXTRACTI32X4 $1, Z4, X7
	VEXTRACTI32X4 $2, Z4, X8
	VPXOR X7, X4, X4
	VPXOR X8, X4, X4
	VPXOR X6, X4, X4
	VMOVQ X4, BX
	VPEXTRQ $1, X4, CX
	VZEROUPPER
	XORL AX, AX
	CRC32Q BX, AX
	CRC32Q CX, AX
	MOVL AX, ret+40(FP)
	RET
