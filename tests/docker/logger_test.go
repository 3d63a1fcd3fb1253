package docker_e2e

// loggerSource is the image's only program (/logger), built static by the
// test:
//
//	/logger once             prints three fixed lines and exits
//	/logger loop             prints "line N" every 100ms, forever
//	/logger rate B S         writes B bytes/s of 1000-byte lines for S
//	                         seconds, then "done", then sleeps forever
const loggerSource = `package main

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		os.Exit(2)
	}
	switch os.Args[1] {
	case "once":
		for i := 1; i <= 3; i++ {
			fmt.Printf("hello from ronly %d\n", i)
		}
	case "loop":
		for i := 0; ; i++ {
			fmt.Printf("line %d\n", i)
			time.Sleep(100 * time.Millisecond)
		}
	case "rate":
		rate, _ := strconv.Atoi(os.Args[2])
		secs, _ := strconv.Atoi(os.Args[3])
		w := bufio.NewWriterSize(os.Stdout, 1<<16)
		pad := strings.Repeat("x", 1000-len("seq 00000000 ")-1)
		start := time.Now()
		total := rate * secs
		for n, i := 0, 0; n < total; i++ {
			k, _ := fmt.Fprintf(w, "seq %08d %s\n", i, pad)
			n += k
			if i%100 == 99 {
				w.Flush()
				// Pace: n bytes are due at start + n/rate.
				if d := time.Until(start.Add(time.Duration(float64(n) / float64(rate) * float64(time.Second)))); d > 0 {
					time.Sleep(d)
				}
			}
		}
		fmt.Fprintln(w, "done")
		w.Flush()
		select {}
	}
}
`
