package mountinfo

import "testing"

func TestUnescape(t *testing.T) {
	for in, want := range map[string]string{`/a\040b`: "/a b", `/plain`: "/plain", `/tab\011x`: "/tab\tx", `/end\`: `/end\`} {
		if got := Unescape(in); got != want {
			t.Errorf("Unescape(%q) = %q, want %q", in, got, want)
		}
	}
}

// The root and /proc are mounted wherever the tests run.
func TestRead(t *testing.T) {
	ms, err := Read()
	if err != nil {
		t.Fatal(err)
	}
	found := map[string]string{}
	for _, m := range ms {
		found[m.Point] = m.FSType
	}
	if _, ok := found["/"]; !ok {
		t.Errorf("no mount at /: %v", found)
	}
	if found["/proc"] != "proc" {
		t.Errorf("/proc is %q, want proc", found["/proc"])
	}
}
