package main

import (
	"testing"
)

// valueFlags must name exactly the flags kong's model says take a value:
// else the pre-scan reads a flag's value as a flag, or the reverse.
func TestValueFlagsMatchKong(t *testing.T) {
	parser, _ := newTestParser(t)
	got := valueFlags()
	seen := map[string]bool{}
	for _, f := range parser.Model.Flags {
		if f.Name == "help" {
			continue
		}
		seen[f.Name] = true
		if want := !f.IsBool(); got[f.Name] != want {
			t.Errorf("--%s: valueFlags says takes a value %t, kong %t", f.Name, got[f.Name], want)
		}
	}
	if len(seen) < 10 {
		t.Fatalf("kong's model has %d flags", len(seen))
	}
	for name := range got {
		if !seen[name] {
			t.Errorf("valueFlags names --%s, which kong's model has not", name)
		}
	}
}

func TestCountsWrites(t *testing.T) {
	for _, c := range []struct {
		args          []string
		count, events bool
	}{
		{[]string{"--", "true"}, false, false},
		{[]string{"--count-writes", "--", "true"}, true, false},
		{[]string{"--count-writes", "true"}, true, false},
		{[]string{"run", "--count-writes", "true"}, true, false},
		{[]string{"--count-writes=true", "true"}, true, false},
		{[]string{"--count-writes=false", "true"}, false, false},
		{[]string{"--count-writes", "--audit-log", "/tmp/a", "true"}, true, true},
		{[]string{"--audit-log=-", "--count-writes", "true"}, true, true},
		{[]string{"-v", "--count-writes", "true"}, true, false},
		// A flag's value, not a flag.
		{[]string{"--rw", "--count-writes", "true"}, false, false},
		{[]string{"--audit-log", "--count-writes", "true"}, false, true},
		// The command's arguments.
		{[]string{"true", "--count-writes"}, false, false},
		{[]string{"--", "sh", "--count-writes"}, false, false},
		// No session, or none that counts.
		{[]string{"--count-writes", "probe"}, false, false},
		{[]string{"--count-writes", "--help"}, false, false},
		{[]string{"--count-writes", "-h"}, false, false},
		{[]string{"--count-writes", "--version"}, false, false},
		{[]string{"--count-writes", "--no-write-counting", "true"}, false, false},
	} {
		count, events := countsWrites(c.args)
		if count != c.count || (count && events != c.events) {
			t.Errorf("countsWrites(%q) = %t, %t; want %t, %t", c.args, count, events, c.count, c.events)
		}
	}
}
