package bpf

import (
	"bytes"
	"embed"
	"encoding/hex"
	"fmt"
)

// The programs as compiled when the policy last changed. TestGolden keeps
// them equal to what Compile makes of syscalls.policy today, so using them
// costs a session no libseccomp work at start (about a millisecond).
//
//go:embed compiled/x86_64-errno.golden compiled/x86_64-notify.golden compiled/x86_64-notify-signals.golden
var compiled embed.FS

// Precompiled returns the program for mode from the golden copy embedded
// at build time: the same bytes as Program(mode).
func Precompiled(mode Mode) ([]byte, error) {
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
