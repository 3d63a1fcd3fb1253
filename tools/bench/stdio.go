package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// stdioCopy measures what the supervisor's relay of stdio costs (the
// command's fds 0-2 are pipes it splices to the caller's): `cat` of 1 GB
// from a file to a file, inside ronly and directly (where cat copies file
// to file in the kernel, copy_file_range). The floor is the same bytes
// through one pipe outside, cat < in | cat > out: any relay through pipes
// has the command copy each byte out of one pipe and into another.
// The output of the run before is removed, untimed, before each run.
func stdioCopy(ronly, work string, runs int) {
	in := filepath.Join(work, "stdio-in")
	out := filepath.Join(work, "stdio-out")
	f, err := os.Create(in)
	if err != nil {
		fatal(err)
	}
	chunk := make([]byte, 1<<20)
	for i := range chunk {
		chunk[i] = byte(i * 7)
	}
	for i := 0; i < 1024; i++ {
		if _, err := f.Write(chunk); err != nil {
			fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		fatal(err)
	}
	defer os.Remove(in)
	defer os.Remove(out)
	sh := func(script string) []string { return []string{"/bin/sh", "-c", script, "sh", ronly, in, out} }
	vs := []variant{
		{"direct", sh(`cat < "$2" > "$3"`)},
		{"inside ronly", sh(`"$1" --no-metrics -- cat < "$2" > "$3"`)},
		{"inside, --count-writes", sh(`"$1" --no-metrics --count-writes -- cat < "$2" > "$3"`)},
		{"floor: one pipe outside", sh(`cat < "$2" | cat > "$3"`)},
		{"ronly -- true", sh(`"$1" --no-metrics -- true < "$2" > "$3"`)},
	}
	t := make([][]time.Duration, len(vs))
	for r := 0; r < runs; r++ {
		for i, v := range vs {
			os.Remove(out)
			cmd := exec.Command(v.argv[0], v.argv[1:]...)
			cmd.Stderr = os.Stderr
			t0 := time.Now()
			if err := cmd.Run(); err != nil {
				fatal(fmt.Errorf("%s: %v", v.name, err))
			}
			t[i] = append(t[i], time.Since(t0))
		}
	}
	fmt.Println("stdio relay (cat of 1 GB, file to file)")
	fmt.Printf("  direct cat               %8.1f ms\n", ms(median(t[0])))
	fmt.Printf("  inside ronly             %8.1f ms   %5.2fx direct\n", ms(median(t[1])), ratio(t[1], t[0]))
	fmt.Printf("  inside, --count-writes   %8.1f ms   %5.2fx direct\n", ms(median(t[2])), ratio(t[2], t[0]))
	fmt.Printf("  floor: cat | cat         %8.1f ms   %5.2fx direct (the bytes through one pipe, no ronly)\n", ms(median(t[3])), ratio(t[3], t[0]))
	fmt.Printf("  ronly -- true            %8.1f ms   (startup, no bytes relayed)\n\n", ms(median(t[4])))
}
