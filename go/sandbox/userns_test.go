package sandbox

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	cinit "ronly.dev/ronly/init"
)

// The shares come from the host's limits as this process reads them; a
// limit the kernel lacks is left out, an unreadable one is a warning, and
// every namespace limit the kernel has is 0.
func TestUsernsLimits(t *testing.T) {
	dir := t.TempDir()
	for name, v := range map[string]string{
		"max_inotify_instances": "128\n",
		"max_inotify_watches":   "3\n", // a quarter rounds to 0: at least 1
		"max_fanotify_groups":   "banana\n",
		"max_user_namespaces":   "96367\n",
		"max_mnt_namespaces":    "96367\n",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var warnings []string
	got := usernsLimits(dir, func(s string) { warnings = append(warnings, s) })
	want := []cinit.UsernsLimit{
		{Name: "max_inotify_instances", Value: 64},
		{Name: "max_inotify_watches", Value: 1},
		{Name: "max_user_namespaces", Value: 0},
		{Name: "max_mnt_namespaces", Value: 0},
	}
	if len(got) != len(want) {
		t.Fatalf("limits %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("limit %d: %v, want %v", i, got[i], want[i])
		}
	}
	if len(warnings) != 1 || !strings.Contains(warnings[0], "max_fanotify_groups") {
		t.Errorf("warnings %q, want one naming max_fanotify_groups", warnings)
	}
	// The real ones fit the init's records.
	if real := usernsLimits("/proc/sys/user", func(s string) { t.Error(s) }); len(real) > cinit.MaxUsernsLimits {
		t.Errorf("%d limits, more than the init takes", len(real))
	}
}
