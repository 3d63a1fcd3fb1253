package main

import (
	"testing"

	cinit "ronly.dev/ronly/init"
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

// TestEarlyGuess holds the C side's guess (init/counter_early.c), made
// from the raw words before the Go runtime starts, to countsWrites: where
// it starts the helper, the Go side counts with the same programs, but for
// the lines marked wrong, whose helper the Go side ends
// (TestWriteCounterEarlyWrongGuess); where it does not, the Go side starts
// the helper itself if the line counts.
func TestEarlyGuess(t *testing.T) {
	for _, c := range []struct {
		args          []string
		guess, events bool
		wrong         bool // guessed, but the Go side does not count
	}{
		{[]string{"--", "true"}, false, false, false},
		{[]string{"--count-writes", "--", "true"}, true, false, false},
		{[]string{"--count-writes", "true"}, true, false, false},
		{[]string{"run", "--count-writes", "true"}, true, false, false},
		{[]string{"--count-writes=true", "true"}, true, false, false},
		{[]string{"--count-writes=false", "true"}, false, false, false},
		{[]string{"--count-writes", "--count-writes=false", "true"}, false, false, false},
		{[]string{"--audit-log=-", "--count-writes", "true"}, true, true, false},
		{[]string{"--count-writes", "--audit-log=/tmp/a", "--", "true"}, true, true, false},
		{[]string{"-v", "--count-writes", "true"}, true, false, false},
		// A flag's value as a separate word ends the guess.
		{[]string{"--audit-log", "/tmp/a", "--count-writes", "true"}, false, false, false},
		{[]string{"--rw", "/x", "--count-writes", "--", "true"}, false, false, false},
		// The command's arguments.
		{[]string{"true", "--count-writes"}, false, false, false},
		{[]string{"--", "sh", "--count-writes"}, false, false, false},
		// No session, or none that counts.
		{[]string{"--count-writes", "probe"}, false, false, false},
		{[]string{"--count-writes", "sweep"}, false, false, false},
		{[]string{"--count-writes", "help"}, false, false, false},
		{[]string{"--count-writes", "--help"}, false, false, false},
		{[]string{"--count-writes", "-h"}, false, false, false},
		{[]string{"--count-writes", "--version"}, false, false, false},
		{[]string{"--count-writes", "--no-write-counting", "true"}, false, false, false},
		// --count-writes as --rw's missing value, which kong refuses.
		{[]string{"--rw", "--count-writes", "--", "true"}, true, false, true},
	} {
		guess, events := cinit.GuessesCounting(c.args)
		if guess != c.guess || (guess && events != c.events) {
			t.Errorf("C guesses %q: %t, events %t; want %t, %t", c.args, guess, events, c.guess, c.events)
			continue
		}
		if !guess {
			continue
		}
		count, goEvents := countsWrites(c.args)
		if c.wrong {
			if count {
				t.Errorf("%q: the Go side counts, so the guess is not wrong", c.args)
			}
			continue
		}
		if !count || goEvents != events {
			t.Errorf("%q: C starts the helper (events %t), the Go side counts %t (events %t)", c.args, events, count, goEvents)
		}
	}
}
