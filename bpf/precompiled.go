package bpf

import (
	"bytes"
	"embed"
	"encoding/hex"
	"fmt"
	"sync"
)

// The programs as compiled when the policy last changed. TestGolden keeps
// them equal to what Compile makes of syscalls.policy today, so using them
// costs a session no libseccomp work at start (about a millisecond).
//
//go:embed compiled/x86_64-errno.golden compiled/x86_64-notify.golden compiled/x86_64-notify-signals.golden
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

// Warm parses the embedded policy's table and decodes the programs a
// session loads, so that the session finds them done: ronly calls it on
// another core while kong builds its model. In a cold start on a 2-core VM
// the table takes about 1.1 ms and the programs 0.4 ms, which would
// otherwise be on the session's path.
func Warm() {
	DefaultTable()
	for _, m := range []Mode{ModeNotify, ModeErrno, ModeNotifySignals} {
		Precompiled(m)
	}
}

func decodeGolden(mode Mode) ([]byte, error) {
	src, err := compiled.ReadFile("compiled/x86_64-" + mode.String() + ".golden")
	if err != nil {
		return nil, fmt.Errorf("precompiled %s program: %w", mode, err)
	}
	_, raw, ok := bytes.Cut(src, []byte("# raw\n"))
	if !ok {
		return nil, fmt.Errorf("precompiled %s program: no raw section", mode)
	}
	prog, err := hex.DecodeString(string(bytes.ReplaceAll(bytes.TrimSpace(raw), []byte("\n"), nil)))
	if err != nil {
		return nil, fmt.Errorf("precompiled %s program: %w", mode, err)
	}
	if err := check(prog); err != nil {
		return nil, fmt.Errorf("precompiled %s program: %w", mode, err)
	}
	return prog, nil
}
