package e2e

import (
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestStaticBinary: ronly is one self-contained x86-64 executable that can be
// copied into any pod image (glibc, musl, distroless) and run there.
func TestStaticBinary(t *testing.T) {
	b := setup(t)
	f, err := elf.Open(b.ronly)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.Machine != elf.EM_X86_64 {
		t.Errorf("machine %v, want x86-64", f.Machine)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Fatalf("%s has a %v program header: it is dynamically linked", b.ronly, p.Type)
		}
	}

	// An empty root holding nothing but the binary.
	root := userDir(t, 0, "ronly-e2e-emptyroot-")
	if err := copyFile(b.ronly, filepath.Join(root, "ronly")); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(root, "ronly"), 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("chroot", root, "/ronly", "--version").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "ronly ") || strings.Count(string(out), "\n") != 1 {
		t.Fatalf("ronly --version in an empty root: %v\n%s", err, out)
	}
	// Both builds stamp the git revision; an unstamped binary says 0.0.0-dev.
	if v := strings.TrimSpace(strings.TrimPrefix(string(out), "ronly ")); v == "" || v == "0.0.0-dev" {
		t.Fatalf("version %q was not stamped at build time", out)
	}
}
