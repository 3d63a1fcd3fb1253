package bpf

import (
	"encoding/binary"
	"fmt"
	"strings"
	"syscall"
)

// A small classic BPF interpreter and disassembler for the subset seccomp
// accepts, so tests can run the compiled program on any input and golden
// files stay readable.

const (
	auditArchX8664 = 0xc000003e
	auditArchI386  = 0x40000003
	x32Bit         = 0x40000000

	retKillProcess = 0x80000000
	retKillThread  = 0x00000000
	retTrap        = 0x00030000
	retErrno       = 0x00050000
	retUserNotif   = 0x7fc00000
	retTrace       = 0x7ff00000
	retLog         = 0x7ffc0000
	retAllow       = 0x7fff0000
	retActionFull  = 0xffff0000
	retData        = 0x0000ffff
)

type insn struct {
	code   uint16
	jt, jf uint8
	k      uint32
}

func decode(prog []byte) []insn {
	out := make([]insn, 0, len(prog)/insnSize)
	for i := 0; i+insnSize <= len(prog); i += insnSize {
		out = append(out, insn{
			code: binary.NativeEndian.Uint16(prog[i:]),
			jt:   prog[i+2],
			jf:   prog[i+3],
			k:    binary.NativeEndian.Uint32(prog[i+4:]),
		})
	}
	return out
}

// seccompData is struct seccomp_data.
type seccompData struct {
	nr   int32
	arch uint32
	ip   uint64
	args [6]uint64
}

func (d seccompData) word(off uint32) (uint32, error) {
	var b [64]byte
	binary.NativeEndian.PutUint32(b[0:], uint32(d.nr))
	binary.NativeEndian.PutUint32(b[4:], d.arch)
	binary.NativeEndian.PutUint64(b[8:], d.ip)
	for i, a := range d.args {
		binary.NativeEndian.PutUint64(b[16+8*i:], a)
	}
	if off%4 != 0 || off+4 > uint32(len(b)) {
		return 0, fmt.Errorf("load out of seccomp_data at %d", off)
	}
	return binary.NativeEndian.Uint32(b[off:]), nil
}

// run executes prog on d the way the kernel's seccomp does and returns the
// action. Only forward jumps exist in classic BPF, so it always terminates.
func run(prog []insn, d seccompData) (uint32, error) {
	var a, x uint32
	var mem [16]uint32
	for pc := 0; pc < len(prog); pc++ {
		in := prog[pc]
		src := in.k
		if in.code&0x08 != 0 { // BPF_X
			src = x
		}
		switch in.code & 0x07 {
		case 0x00: // BPF_LD
			switch in.code {
			case 0x20: // ld [k]
				w, err := d.word(in.k)
				if err != nil {
					return 0, err
				}
				a = w
			case 0x00: // ld #k
				a = in.k
			case 0x60: // ld M[k]
				a = mem[in.k%16]
			case 0x80: // ld #len
				a = 64
			default:
				return 0, fmt.Errorf("pc %d: unsupported load %#x", pc, in.code)
			}
		case 0x01: // BPF_LDX
			switch in.code {
			case 0x01:
				x = in.k
			case 0x61:
				x = mem[in.k%16]
			case 0x81:
				x = 64
			default:
				return 0, fmt.Errorf("pc %d: unsupported ldx %#x", pc, in.code)
			}
		case 0x02: // BPF_ST
			mem[in.k%16] = a
		case 0x03: // BPF_STX
			mem[in.k%16] = x
		case 0x04: // BPF_ALU
			switch in.code & 0xf0 {
			case 0x00:
				a += src
			case 0x10:
				a -= src
			case 0x20:
				a *= src
			case 0x30:
				if src == 0 {
					return 0, nil
				}
				a /= src
			case 0x40:
				a |= src
			case 0x50:
				a &= src
			case 0x60:
				a <<= src
			case 0x70:
				a >>= src
			case 0x80:
				a = -a
			case 0x90:
				if src == 0 {
					return 0, nil
				}
				a %= src
			case 0xa0:
				a ^= src
			default:
				return 0, fmt.Errorf("pc %d: unsupported alu %#x", pc, in.code)
			}
		case 0x05: // BPF_JMP
			var cond bool
			switch in.code & 0xf0 {
			case 0x00: // ja
				pc += int(in.k)
				continue
			case 0x10:
				cond = a == src
			case 0x20:
				cond = a > src
			case 0x30:
				cond = a >= src
			case 0x40:
				cond = a&src != 0
			default:
				return 0, fmt.Errorf("pc %d: unsupported jump %#x", pc, in.code)
			}
			if cond {
				pc += int(in.jt)
			} else {
				pc += int(in.jf)
			}
		case 0x06: // BPF_RET
			if in.code&0x18 == 0x10 { // ret a
				return a, nil
			}
			return in.k, nil
		case 0x07: // BPF_MISC
			if in.code&0xf8 == 0x00 {
				x = a
			} else {
				a = x
			}
		}
	}
	return 0, fmt.Errorf("fell off the end of the program")
}

func retString(k uint32) string {
	switch k & retActionFull {
	case retKillProcess:
		return "KILL_PROCESS"
	case retKillThread:
		return "KILL_THREAD"
	case retTrap:
		return fmt.Sprintf("TRAP(%d)", k&retData)
	case retErrno:
		e := syscall.Errno(k & retData)
		if n := errnoName(e); n != "" {
			return "ERRNO(" + n + ")"
		}
		return fmt.Sprintf("ERRNO(%d)", e)
	case retUserNotif:
		return "USER_NOTIF"
	case retTrace:
		return fmt.Sprintf("TRACE(%d)", k&retData)
	case retLog:
		return "LOG"
	case retAllow:
		return "ALLOW"
	}
	return fmt.Sprintf("%#08x", k)
}

func fieldName(off uint32) string {
	switch {
	case off == 0:
		return "nr"
	case off == 4:
		return "arch"
	case off == 8:
		return "ip.lo"
	case off == 12:
		return "ip.hi"
	case off >= 16 && off < 64:
		half := "lo"
		if (off-16)%8 == 4 {
			half = "hi"
		}
		return fmt.Sprintf("arg%d.%s", (off-16)/8, half)
	}
	return "?"
}

// accumulators works out, for each instruction, which seccomp_data word the
// accumulator holds when it runs: its offset, or -1 when not a plain load
// (nothing loaded yet, modified by ALU, or different on different paths).
// Classic BPF only jumps forward, so one pass in order sees every
// predecessor before its successor.
func accumulators(prog []insn) []int {
	const unseen = -2
	acc := make([]int, len(prog))
	for i := range acc {
		acc[i] = unseen
	}
	flow := func(to, v int) {
		switch {
		case to >= len(prog):
		case acc[to] == unseen:
			acc[to] = v
		case acc[to] != v:
			acc[to] = -1
		}
	}
	acc[0] = -1
	for pc, in := range prog {
		v := acc[pc]
		if v == unseen {
			continue // unreachable
		}
		switch {
		case in.code == 0x20:
			flow(pc+1, int(in.k))
		case in.code&0x07 == 0x04 || in.code&0x07 == 0x07 || in.code&0x07 == 0x00:
			flow(pc+1, -1)
		case in.code == 0x05:
			flow(pc+1+int(in.k), v)
		case in.code&0x07 == 0x05:
			flow(pc+1+int(in.jt), v)
			flow(pc+1+int(in.jf), v)
		case in.code&0x07 == 0x06:
		default:
			flow(pc+1, v)
		}
	}
	return acc
}

// comment explains the constant of a comparison, given what A holds.
func comment(op string, k uint32, acc int) string {
	switch {
	case acc == 4 && k == auditArchX8664:
		return " ; AUDIT_ARCH_X86_64"
	case acc == 4 && k == auditArchI386:
		return " ; AUDIT_ARCH_I386"
	case acc == 0 && k == x32Bit:
		return " ; x32 syscall bit"
	case acc == 0 && k == 0xffffffff:
		return " ; nr -1"
	case acc == 0 && op == "jeq" && k < maxNr:
		return " ; " + SyscallName(int(k))
	}
	return ""
}

// disassemble renders a program one instruction a line, with absolute jump
// targets, seccomp_data field names and syscall names for comparisons of nr.
func disassemble(prog []insn) string {
	var b strings.Builder
	acc := accumulators(prog)
	for pc, in := range prog {
		fmt.Fprintf(&b, "%04d: ", pc)
		jt, jf := pc+1+int(in.jt), pc+1+int(in.jf)
		op := ""
		switch in.code & 0xf0 {
		case 0x10:
			op = "jeq"
		case 0x20:
			op = "jgt"
		case 0x30:
			op = "jge"
		case 0x40:
			op = "jset"
		}
		switch {
		case in.code == 0x20:
			fmt.Fprintf(&b, "ld   [%d] ; %s", in.k, fieldName(in.k))
		case in.code == 0x54:
			fmt.Fprintf(&b, "and  #%#x", in.k)
		case in.code == 0x05:
			fmt.Fprintf(&b, "ja   %04d", pc+1+int(in.k))
		case in.code&0x07 == 0x05 && op != "" && in.code&0x08 == 0:
			fmt.Fprintf(&b, "%-4s #%#x  jt %04d  jf %04d%s", op, in.k, jt, jf, comment(op, in.k, acc[pc]))
		case in.code == 0x06:
			fmt.Fprintf(&b, "ret  %s", retString(in.k))
		default:
			fmt.Fprintf(&b, "raw  code=%#04x jt=%d jf=%d k=%#x", in.code, in.jt, in.jf, in.k)
		}
		b.WriteByte('\n')
	}
	return b.String()
}
