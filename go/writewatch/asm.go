package writewatch

import (
	"encoding/binary"
	"fmt"
)

// A tiny eBPF assembler: just the instructions the program needs, with
// labels for jumps so the program reads top to bottom and can be edited
// without recounting offsets.

// Instruction classes, sizes, modes and operations from linux/bpf.h.
const (
	clsLD    = 0x00
	clsLDX   = 0x01
	clsST    = 0x02
	clsSTX   = 0x03
	clsALU64 = 0x07
	clsJMP   = 0x05

	sizeW  = 0x00 // 4 bytes
	sizeDW = 0x18 // 8 bytes

	modeIMM    = 0x00
	modeMEM    = 0x60
	modeATOMIC = 0xc0

	srcK = 0x00
	srcX = 0x08

	aluADD = 0x00
	aluAND = 0x50
	aluRSH = 0x70
	aluMOV = 0xb0

	jmpJA   = 0x00
	jmpJEQ  = 0x10
	jmpJNE  = 0x50
	jmpJLT  = 0xa0 // unsigned <
	jmpJLE  = 0xb0 // unsigned <=
	jmpJSLE = 0xd0 // signed <=
	jmpCALL = 0x80
	jmpEXIT = 0x90

	pseudoMapFD = 1 // BPF_PSEUDO_MAP_FD in the src field of a 64-bit load
)

// Registers.
const (
	r0 = iota
	r1
	r2
	r3
	r4
	r5
	r6
	r7
	r8
	r9
	r10 // frame pointer, read-only
)

type insn struct {
	code     uint8
	dst, src uint8
	off      int16
	imm      int32
	target   string   // jump label, resolved by assemble
	labels   []string // this instruction's labels
	mapIndex int      // for ldMap: which map's fd goes in imm (index+1; 0 = none)
}

type asm struct {
	insns   []insn
	pending []string // labels for the next instruction
}

func (a *asm) emit(i insn) {
	i.labels, a.pending = a.pending, nil
	a.insns = append(a.insns, i)
}

// Label names the next instruction.
func (a *asm) Label(name string) { a.pending = append(a.pending, name) }

func (a *asm) MovImm(dst uint8, imm int32) {
	a.emit(insn{code: clsALU64 | aluMOV | srcK, dst: dst, imm: imm})
}
func (a *asm) MovReg(dst, src uint8) {
	a.emit(insn{code: clsALU64 | aluMOV | srcX, dst: dst, src: src})
}
func (a *asm) AddImm(dst uint8, imm int32) {
	a.emit(insn{code: clsALU64 | aluADD | srcK, dst: dst, imm: imm})
}
func (a *asm) AddReg(dst, src uint8) {
	a.emit(insn{code: clsALU64 | aluADD | srcX, dst: dst, src: src})
}
func (a *asm) AndImm(dst uint8, imm int32) {
	a.emit(insn{code: clsALU64 | aluAND | srcK, dst: dst, imm: imm})
}
func (a *asm) RshImm(dst uint8, imm int32) {
	a.emit(insn{code: clsALU64 | aluRSH | srcK, dst: dst, imm: imm})
}

// Load64/Load32: dst = *(size *)(src + off).
func (a *asm) Load64(dst, src uint8, off int16) {
	a.emit(insn{code: clsLDX | modeMEM | sizeDW, dst: dst, src: src, off: off})
}
func (a *asm) Load32(dst, src uint8, off int16) {
	a.emit(insn{code: clsLDX | modeMEM | sizeW, dst: dst, src: src, off: off})
}

// Store64/Store32: *(size *)(dst + off) = src.
func (a *asm) Store64(dst uint8, off int16, src uint8) {
	a.emit(insn{code: clsSTX | modeMEM | sizeDW, dst: dst, src: src, off: off})
}
func (a *asm) Store32(dst uint8, off int16, src uint8) {
	a.emit(insn{code: clsSTX | modeMEM | sizeW, dst: dst, src: src, off: off})
}

// StoreImm64/StoreImm32: *(size *)(dst + off) = imm.
func (a *asm) StoreImm64(dst uint8, off int16, imm int32) {
	a.emit(insn{code: clsST | modeMEM | sizeDW, dst: dst, off: off, imm: imm})
}
func (a *asm) StoreImm32(dst uint8, off int16, imm int32) {
	a.emit(insn{code: clsST | modeMEM | sizeW, dst: dst, off: off, imm: imm})
}

// AtomicAdd64: lock *(u64 *)(dst + off) += src.
func (a *asm) AtomicAdd64(dst uint8, off int16, src uint8) {
	a.emit(insn{code: clsSTX | modeATOMIC | sizeDW, dst: dst, src: src, off: off, imm: aluADD})
}

// LoadMap puts the fd of map index m (resolved at load time) in dst.
func (a *asm) LoadMap(dst uint8, m int) {
	a.emit(insn{code: clsLD | modeIMM | sizeDW, dst: dst, src: pseudoMapFD, mapIndex: m + 1})
	a.emit(insn{}) // second half of the 16-byte instruction
}

// JumpImm: if dst op imm goto label (64-bit compare, imm sign-extended).
func (a *asm) JumpImm(op uint8, dst uint8, imm int32, label string) {
	a.emit(insn{code: clsJMP | op | srcK, dst: dst, imm: imm, target: label})
}
func (a *asm) Jump(label string) { a.emit(insn{code: clsJMP | jmpJA, target: label}) }
func (a *asm) Call(helper int32) { a.emit(insn{code: clsJMP | jmpCALL, imm: helper}) }
func (a *asm) Exit()             { a.emit(insn{code: clsJMP | jmpEXIT}) }

// assemble resolves labels and map fds and encodes struct bpf_insn.
func (a *asm) assemble(mapFDs []int) ([]byte, error) {
	if len(a.pending) > 0 {
		return nil, fmt.Errorf("labels %q at the end of the program", a.pending)
	}
	at := map[string]int{}
	for pc, i := range a.insns {
		for _, l := range i.labels {
			if _, dup := at[l]; dup {
				return nil, fmt.Errorf("label %q defined twice", l)
			}
			at[l] = pc
		}
	}
	out := make([]byte, 0, 8*len(a.insns))
	for pc, i := range a.insns {
		if i.target != "" {
			t, ok := at[i.target]
			if !ok {
				return nil, fmt.Errorf("jump to undefined label %q", i.target)
			}
			i.off = int16(t - pc - 1)
		}
		if i.mapIndex > 0 {
			i.imm = int32(mapFDs[i.mapIndex-1])
		}
		out = append(out, i.code, i.dst&0xf|i.src<<4)
		out = binary.LittleEndian.AppendUint16(out, uint16(i.off))
		out = binary.LittleEndian.AppendUint32(out, uint32(i.imm))
	}
	return out, nil
}
