// Command ronly-writewatch counts a ronly session's refused writes with
// eBPF (go/writewatch) for the session's supervisor, which starts it only
// under --count-writes and talks to it over its stdin and stdout (the
// conversation is in go/writewatch/remote).
//
// It is its own binary so that ronly, which starts once per session, links
// no eBPF library and pays none of its package init (go/cmd/ronly's
// TestNoPrometheusInSessionBinary keeps it so). Only this package prints
// or exits.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"ronly.dev/ronly/go/writewatch"
	"ronly.dev/ronly/go/writewatch/remote"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

// out writes the lines the supervisor reads, one at a time (events come
// from the Watch's reader goroutine).
type out struct {
	mu  sync.Mutex
	enc *json.Encoder
}

func (o *out) send(m remote.Msg) {
	o.mu.Lock()
	defer o.mu.Unlock()
	// A write error means the supervisor is gone; stdin's EOF ends the run.
	o.enc.Encode(m)
}

func run(args []string) int {
	// A ^C or hang-up at the session's terminal is not for this process:
	// it must stay to remove its cgroup. A closed stdout returns EPIPE
	// instead of killing it before it detaches.
	signal.Ignore(syscall.SIGINT, syscall.SIGHUP, syscall.SIGPIPE)
	o := &out{enc: json.NewEncoder(os.Stdout)}
	events := false
	for _, a := range args {
		switch a {
		case "--events":
			events = true
		default:
			fmt.Fprintf(os.Stderr, "ronly-writewatch: unknown argument %q (it is started by ronly --count-writes)\n", a)
			return 2
		}
	}
	start := writewatch.Shared
	if events {
		start = writewatch.Start
	}
	w, err := start(writewatch.FexitOrTracepoint)
	if err != nil {
		o.send(remote.Msg{Error: err.Error()})
		return 1
	}
	defer w.Close()
	if events {
		w.Events(func(e writewatch.Event) {
			o.send(remote.Msg{Event: &remote.Event{CgroupID: e.CgroupID, PID: e.PID, Comm: e.Comm,
				Syscall: e.Syscall, Path: e.Path, Time: e.Time}})
		})
	}
	o.send(remote.Msg{Ready: w.Hook()})

	in := bufio.NewScanner(os.Stdin)
	var id uint64
	added := false
	for in.Scan() {
		f := strings.Fields(in.Text())
		if len(f) != 2 || f[0] != "add" || added {
			o.send(remote.Msg{Error: fmt.Sprintf("ronly-writewatch: unexpected request %q", in.Text())})
			continue
		}
		n, err := strconv.ParseUint(f[1], 10, 64)
		if err == nil {
			err = w.Add(n)
		}
		if err != nil {
			o.send(remote.Msg{Error: err.Error()})
			continue
		}
		id, added = n, true
		o.send(remote.Msg{Added: true})
	}
	// EOF: the session is over (or its supervisor died). Remove delivers
	// the pending events before the counts.
	if !added {
		return 0
	}
	counts, err := w.Remove(id)
	w.Events(nil)
	m := remote.Msg{Counts: counts, Final: true}
	if err != nil {
		m.Error = err.Error()
	}
	o.send(m)
	return 0
}
