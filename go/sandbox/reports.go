package sandbox

import (
	"bufio"
	"encoding/json"
	"io"
	"time"
)

// readReports counts what the shims inside refused, one JSON line each,
// until every writer is gone. The sandbox can write anything here, so a
// line is only ever counted, under bounded labels (the metrics fold rare
// values into "other"), and overlong lines are skipped.
func readReports(r io.Reader, record func(Refusal)) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1024), 1024)
	for {
		if !sc.Scan() {
			if sc.Err() == bufio.ErrTooLong {
				sc = bufio.NewScanner(r) // skip the rest of that line's chunk
				sc.Buffer(make([]byte, 1024), 1024)
				continue
			}
			return
		}
		var rep struct {
			Kind, Tool, Subcommand string
		}
		if json.Unmarshal(sc.Bytes(), &rep) != nil || rep.Kind != "command" || rep.Tool == "" || len(rep.Tool) > 32 || len(rep.Subcommand) > 64 {
			continue
		}
		if rep.Subcommand == "" {
			rep.Subcommand = "other"
		}
		record(Refusal{Time: time.Now(), Kind: "command", What: rep.Tool + " " + rep.Subcommand})
	}
}
