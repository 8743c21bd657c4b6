//go:build amd64 && !purego

#include "textflag.h"

// AES-256 CBC decryption with AES-NI, eight blocks in flight so the
// AESDEC latency is hidden (Go's own CBC decrypter runs one block at a
// time on amd64). Round keys are the decryption schedule built by
// expandDecKey in aesni_amd64.go.

// func cpuHasAES() bool
TEXT ·cpuHasAES(SB), NOSPLIT, $0-1
	MOVL $1, AX
	XORL CX, CX
	CPUID
	SHRL $25, CX // CPUID.1:ECX bit 25 = AES-NI
	ANDL $1, CX
	MOVB CX, ret+0(FP)
	RET

// func subWord(w uint32) uint32
// AESKEYGENASSIST puts SubWord of the source's second dword in the low
// dword of the result.
TEXT ·subWord(SB), NOSPLIT, $0-12
	MOVL w+0(FP), AX
	SHLQ $32, AX
	MOVQ AX, X0
	AESKEYGENASSIST $0, X0, X1
	MOVQ X1, AX
	MOVL AX, ret+8(FP)
	RET

// func invMixColumns(dst, src *[16]byte)
TEXT ·invMixColumns(SB), NOSPLIT, $0-16
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVOU (SI), X0
	AESIMC X0, X0
	MOVOU X0, (DI)
	RET

// ROUND8 applies one decryption round with the key at off(AX) to X0–X7.
#define ROUND8(off) \
	MOVOU off(AX), X10 \
	AESDEC X10, X0 \
	AESDEC X10, X1 \
	AESDEC X10, X2 \
	AESDEC X10, X3 \
	AESDEC X10, X4 \
	AESDEC X10, X5 \
	AESDEC X10, X6 \
	AESDEC X10, X7

// func decryptCBC(dk *[240]byte, iv *[16]byte, dst, src *byte, blocks int)
// dst may equal src. iv is updated to the last ciphertext block.
TEXT ·decryptCBC(SB), NOSPLIT, $0-40
	MOVQ dk+0(FP), AX
	MOVQ iv+8(FP), BX
	MOVQ dst+16(FP), DI
	MOVQ src+24(FP), SI
	MOVQ blocks+32(FP), CX
	MOVOU (BX), X9 // X9: previous ciphertext block

loop8:
	CMPQ CX, $8
	JB   loop1
	MOVOU 0(SI), X0
	MOVOU 16(SI), X1
	MOVOU 32(SI), X2
	MOVOU 48(SI), X3
	MOVOU 64(SI), X4
	MOVOU 80(SI), X5
	MOVOU 96(SI), X6
	MOVOU 112(SI), X7
	MOVOU 0(AX), X10
	PXOR X10, X0
	PXOR X10, X1
	PXOR X10, X2
	PXOR X10, X3
	PXOR X10, X4
	PXOR X10, X5
	PXOR X10, X6
	PXOR X10, X7
	ROUND8(16)
	ROUND8(32)
	ROUND8(48)
	ROUND8(64)
	ROUND8(80)
	ROUND8(96)
	ROUND8(112)
	ROUND8(128)
	ROUND8(144)
	ROUND8(160)
	ROUND8(176)
	ROUND8(192)
	ROUND8(208)
	MOVOU 224(AX), X10
	AESDECLAST X10, X0
	AESDECLAST X10, X1
	AESDECLAST X10, X2
	AESDECLAST X10, X3
	AESDECLAST X10, X4
	AESDECLAST X10, X5
	AESDECLAST X10, X6
	AESDECLAST X10, X7
	// XOR with the previous ciphertext blocks; read all of src before
	// writing dst, which may be the same memory.
	PXOR X9, X0
	MOVOU 0(SI), X8
	PXOR X8, X1
	MOVOU 16(SI), X8
	PXOR X8, X2
	MOVOU 32(SI), X8
	PXOR X8, X3
	MOVOU 48(SI), X8
	PXOR X8, X4
	MOVOU 64(SI), X8
	PXOR X8, X5
	MOVOU 80(SI), X8
	PXOR X8, X6
	MOVOU 96(SI), X8
	PXOR X8, X7
	MOVOU 112(SI), X9
	MOVOU X0, 0(DI)
	MOVOU X1, 16(DI)
	MOVOU X2, 32(DI)
	MOVOU X3, 48(DI)
	MOVOU X4, 64(DI)
	MOVOU X5, 80(DI)
	MOVOU X6, 96(DI)
	MOVOU X7, 112(DI)
	ADDQ $128, SI
	ADDQ $128, DI
	SUBQ $8, CX
	JMP  loop8

loop1:
	TESTQ CX, CX
	JZ    done
	MOVOU (SI), X0
	MOVOU X0, X8 // this ciphertext block is the next IV
	MOVOU 0(AX), X10
	PXOR X10, X0
	MOVOU 16(AX), X10
	AESDEC X10, X0
	MOVOU 32(AX), X10
	AESDEC X10, X0
	MOVOU 48(AX), X10
	AESDEC X10, X0
	MOVOU 64(AX), X10
	AESDEC X10, X0
	MOVOU 80(AX), X10
	AESDEC X10, X0
	MOVOU 96(AX), X10
	AESDEC X10, X0
	MOVOU 112(AX), X10
	AESDEC X10, X0
	MOVOU 128(AX), X10
	AESDEC X10, X0
	MOVOU 144(AX), X10
	AESDEC X10, X0
	MOVOU 160(AX), X10
	AESDEC X10, X0
	MOVOU 176(AX), X10
	AESDEC X10, X0
	MOVOU 192(AX), X10
	AESDEC X10, X0
	MOVOU 208(AX), X10
	AESDEC X10, X0
	MOVOU 224(AX), X10
	AESDECLAST X10, X0
	PXOR X9, X0
	MOVOU X8, X9
	MOVOU X0, (DI)
	ADDQ $16, SI
	ADDQ $16, DI
	DECQ CX
	JMP  loop1

done:
	MOVOU X9, (BX)
	RET
