package kernelver

import (
	"strings"
	"testing"
)

func TestAtLeast(t *testing.T) {
	for rel, want := range map[string]bool{"6.1.0-27-amd64": true, "5.12.0": true, "5.11.22": false, "4.19.0-x": false,
		"6.12.95+deb12-cloud-amd64": true, "10.0": true, "": false, "x": false, "5": false} {
		if got := AtLeast(rel, 5, 12); got != want {
			t.Errorf("AtLeast(%q, 5, 12) = %v", rel, got)
		}
	}
}

// TestRelease: the running kernel's release parses, and is at least the
// 5.12 ronly needs (the tests run where ronly does).
func TestRelease(t *testing.T) {
	rel := Release()
	if rel == "" || !strings.Contains(rel, ".") {
		t.Fatalf("Release() = %q", rel)
	}
	if !AtLeast(rel, 5, 12) {
		t.Errorf("AtLeast(%q, 5, 12) is false on the kernel the tests run on", rel)
	}
}
