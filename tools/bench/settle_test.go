package main

import (
	"os"
	"path/filepath"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// TestSettleDropsPages holds settle to its word: a file just written (its
// pages dirty in the page cache, as a fresh build's are) has none resident
// afterwards, so the first run of a settled binary reads it back from disk.
func TestSettleDropsPages(t *testing.T) {
	dir := t.TempDir()
	var fs unix.Statfs_t
	if err := unix.Statfs(dir, &fs); err != nil {
		t.Fatal(err)
	}
	if fs.Type == unix.TMPFS_MAGIC {
		// tmpfs pages have no disk to go back to: nothing can drop them.
		t.Skipf("%s is on tmpfs, whose pages cannot be dropped", dir)
	}
	path := filepath.Join(dir, "bin")
	data := make([]byte, 1<<20)
	for i := range data {
		data[i] = byte(i)
	}
	if err := os.WriteFile(path, data, 0o755); err != nil {
		t.Fatal(err)
	}
	if n := resident(t, path); n == 0 {
		t.Fatalf("no page of a file just written is resident: the check cannot tell")
	}
	settle(path)
	if n := resident(t, path); n != 0 {
		t.Errorf("%d pages of %s resident after settle, want 0", n, path)
	}
	got, err := os.ReadFile(path)
	if err != nil || len(got) != len(data) || got[12345] != data[12345] {
		t.Errorf("the file after settle: %d bytes, %v", len(got), err)
	}
}

// resident counts the pages of path in the page cache (mincore on a
// mapping, which itself faults nothing in).
func resident(t *testing.T, path string) int {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	m, err := unix.Mmap(int(f.Fd()), 0, int(fi.Size()), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(m)
	vec := make([]byte, (len(m)+os.Getpagesize()-1)/os.Getpagesize())
	if _, _, e := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&m[0])), uintptr(len(m)), uintptr(unsafe.Pointer(&vec[0]))); e != 0 {
		t.Fatal(e)
	}
	n := 0
	for _, v := range vec {
		n += int(v & 1)
	}
	return n
}
