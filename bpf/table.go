package bpf

import (
	"fmt"
	"sync"
	"syscall"
)

// Entry is what a supervisor needs to answer a notified syscall.
type Entry struct {
	Name  string        // syscall name, for metrics labels and logs
	Errno syscall.Errno // the answer: every rule of a syscall shares it
	Quiet bool          // never notified (answered by the kernel)
	// Mediate: the supervisor decides each call; Errno is then the answer
	// where no supervisor can (0: allowed), see Rule.
	Mediate bool
	Rules   []Rule // the policy lines for this syscall, in file order
}

// Match returns the first rule of the entry that matches the arguments of a
// call (from struct seccomp_notif), for logging which line refused it.
func (e Entry) Match(args [6]uint64) (Rule, bool) {
	for _, r := range e.Rules {
		if r.Match(args) {
			return r, true
		}
	}
	return Rule{}, false
}

// Table maps x86_64 syscall numbers to their policy entry. A supervisor looks
// up the number of each notification and answers with Entry.Errno; a number
// missing from the table cannot come from the filter and should be answered
// with EPERM (fail closed).
type Table map[int]Entry

// NewTable groups rules by syscall number.
func NewTable(rules []Rule) Table {
	t := Table{}
	for _, r := range rules {
		e, ok := t[r.Nr]
		if !ok {
			e = Entry{Name: r.Syscall, Errno: r.Errno, Quiet: r.Quiet, Mediate: r.Mediate}
		}
		e.Rules = append(e.Rules, r)
		t[r.Nr] = e
	}
	return t
}

var embeddedTable = sync.OnceValues(func() (Table, error) {
	// Not Rules(): parsing the policy costs a session 0.7-1.3 ms of CPU
	// at its start, most of it a libseccomp lookup per syscall name.
	return NewTable(precompiledRules), nil
})

// DefaultTable is the table of the embedded policy.
func DefaultTable() (Table, error) {
	return embeddedTable()
}

// ErrnoFor returns the errno the embedded policy answers syscall nr with, and
// false if the policy does not refuse nr at all (or cannot be parsed).
func ErrnoFor(nr int) (syscall.Errno, bool) {
	t, err := embeddedTable()
	if err != nil {
		return 0, false
	}
	e, ok := t[nr]
	return e.Errno, ok
}

// SyscallName names an x86_64 syscall number for metrics labels: the
// policy's name first (it also names calls libseccomp does not know, such as
// open_tree_attr), then libseccomp's, then "syscall_N".
func SyscallName(nr int) string {
	if t, err := embeddedTable(); err == nil {
		if e, ok := t[nr]; ok {
			return e.Name
		}
	}
	if nr >= 0 && nr < maxNr {
		if name, ok := libName(nr); ok {
			return name
		}
	}
	return fmt.Sprintf("syscall_%d", nr)
}
