package bpf

import (
	"bytes"
	"embed"
	"fmt"
	"sync"
)

// The programs as compiled when the policy last changed, as the kernel
// takes them (the .golden files beside them are the same programs
// disassembled, for review). TestGolden keeps them equal to what Compile
// makes of syscalls.policy today, so using them costs a session no
// libseccomp work at start (about a millisecond), nor any decoding.
//
//go:embed compiled/x86_64-errno.bin compiled/x86_64-notify.bin compiled/x86_64-notify-signals.bin
var compiled embed.FS

// Precompiled returns the program for mode from the golden copy embedded
// at build time: the same bytes as Program(mode), decoded once per process
// (Warm does it early), a copy each time.
func Precompiled(mode Mode) ([]byte, error) {
	if p, ok := decoded.Load(mode); ok {
		return bytes.Clone(p.([]byte)), nil
	}
	prog, err := decodeGolden(mode)
	if err != nil {
		return nil, err
	}
	decoded.Store(mode, prog)
	return bytes.Clone(prog), nil
}

// decoded holds each mode's program once decoded and checked.
var decoded sync.Map

// Warm builds the embedded policy's table and takes the programs a
// session loads, so that the session finds them done: ronly calls it on
// another core while it parses its command line and plans. In a cold
// start on a 2-core VM they took about 1.5 ms when the table was parsed
// from the policy and the programs decoded from hex, which would
// otherwise have been on the session's path.
func Warm() {
	DefaultTable()
	for _, m := range []Mode{ModeNotify, ModeErrno, ModeNotifySignals} {
		Precompiled(m)
	}
}

func decodeGolden(mode Mode) ([]byte, error) {
	prog, err := compiled.ReadFile("compiled/x86_64-" + mode.String() + ".bin")
	if err != nil {
		return nil, fmt.Errorf("precompiled %s program: %w", mode, err)
	}
	if err := check(prog); err != nil {
		return nil, fmt.Errorf("precompiled %s program: %w", mode, err)
	}
	return prog, nil
}
