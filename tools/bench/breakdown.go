package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// breakdown says where `ronly -- /bin/true` spends its time, as the median
// of runs sessions: the Go runtime's start and package init from
// GODEBUG=inittrace=1 (its "@" is the time since the runtime started), the
// session's own steps from the timeline `ronly -v` prints (ms since main's
// package init), and what is left of the wall time the bench measured:
// fork and exec of ronly, the runtime's bootstrap before its first init,
// and ronly's exit and reaping.
func breakdown(ronly string, runs int) {
	initRe := regexp.MustCompile(`^init (\S+) @([0-9.]+) ms, ([0-9.]+) ms clock`)
	var (
		wall, mainAt, pkgInit, firstPkg []float64
		steps                           = map[string][]float64{}
		order                           []string
		clocks                          = map[string][]float64{}
	)
	for r := 0; r < runs; r++ {
		cmd := exec.Command(ronly, "-v", "--", "/bin/true")
		cmd.Env = append(os.Environ(), "GODEBUG=inittrace=1")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		t0 := time.Now()
		if err := cmd.Run(); err != nil {
			fatal(fmt.Errorf("%v: %v\n%s", cmd.Args, err, stderr.String()))
		}
		wall = append(wall, ms(time.Since(t0)))
		var main, first, sum float64
		var cleaned float64
		afterRuntime := false
		for _, line := range strings.Split(stderr.String(), "\n") {
			if m := initRe.FindStringSubmatch(line); m != nil {
				at, _ := strconv.ParseFloat(m[2], 64)
				clock, _ := strconv.ParseFloat(m[3], 64)
				if m[1] == "main" {
					main = at
				}
				// The runtime's own init comes after a few of its
				// dependencies'; the program's packages follow it.
				if afterRuntime {
					if first == 0 {
						first = at
					}
					sum += clock
					clocks[m[1]] = append(clocks[m[1]], clock)
				}
				afterRuntime = afterRuntime || m[1] == "runtime"
				continue
			}
			_, tl, ok := strings.Cut(line, "ms since start: ")
			if !ok {
				continue
			}
			prev := 0.0
			for _, s := range strings.Split(tl, ", ") {
				i := strings.LastIndexByte(s, ' ')
				if i < 0 {
					continue
				}
				at, err := strconv.ParseFloat(s[i+1:], 64)
				if err != nil {
					continue
				}
				name := s[:i]
				if _, seen := steps[name]; !seen {
					order = append(order, name)
				}
				steps[name] = append(steps[name], at-prev)
				prev, cleaned = at, at
			}
		}
		if main == 0 || cleaned == 0 {
			fatal(fmt.Errorf("ronly -v with GODEBUG=inittrace=1 printed no inittrace or timeline:\n%s", stderr.String()))
		}
		mainAt = append(mainAt, main)
		firstPkg = append(firstPkg, first)
		pkgInit = append(pkgInit, sum)
		steps[" rest"] = append(steps[" rest"], wall[len(wall)-1]-main-cleaned)
	}
	fmt.Printf("where `ronly -- /bin/true` spends its time: medians of %d runs (ms)\n", runs)
	fmt.Printf("  %-58s %6.2f\n", "wall time, as the bench measures it", median(wall))
	fmt.Printf("  %-58s %6.2f\n", "fork, exec, runtime bootstrap; exit and reaping (the rest)", median(steps[" rest"]))
	fmt.Printf("  %-58s %6.2f\n", "runtime start to the program's first package init", median(firstPkg))
	fmt.Printf("  %-58s %6.2f\n", "package init, first to main's (inittrace @)", median(sub(mainAt, firstPkg)))
	fmt.Printf("  %-58s %6.2f\n", "  of which the init functions' own clock", median(pkgInit))
	for _, name := range order {
		if len(steps[name]) == runs {
			fmt.Printf("  %-58s %6.2f\n", "to "+name, median(steps[name]))
		}
	}
	type pkg struct {
		name string
		ms   float64
	}
	var pkgs []pkg
	for name, c := range clocks {
		pkgs = append(pkgs, pkg{name, median(c)})
	}
	slices.SortFunc(pkgs, func(a, b pkg) int { return -cmpFloat(a.ms, b.ms) })
	fmt.Printf("  costliest package inits:")
	for _, p := range pkgs[:min(5, len(pkgs))] {
		fmt.Printf(" %s %.2f;", p.name, p.ms)
	}
	fmt.Println()
	fmt.Println()
}

func sub(a, b []float64) []float64 {
	d := make([]float64, len(a))
	for i := range a {
		d[i] = a[i] - b[i]
	}
	return d
}

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
