package main

import (
	"debug/elf"
	"debug/gosym"
	"sort"
	"strings"
	"testing"
)

// heavyModules are what the metrics exporter needs and a session must not
// pay for: client_golang and its protobuf and procfs cost every start
// milliseconds of package init. They belong to ronly-exporter only. The
// eBPF library (0.5-0.9 ms of init) and the write counter built on it
// belong to ronly-writewatch.
var heavyModules = []string{
	"github.com/cilium/ebpf",
	"github.com/prometheus/",
	"google.golang.org/protobuf/",
	"github.com/munnerz/goautoneg",
	"github.com/beorn7/perks",
	"github.com/cespare/xxhash",
}

// heavyPackages are packages the session must not link, matched exactly:
// go/writewatch/remote, the helper's client, is the session's.
var heavyPackages = []string{"ronly.dev/ronly/go/writewatch"}

// The session binary links no package of client_golang's world. The built
// binary is read (its function table, which even a stripped Go binary
// keeps), so this holds for the Bazel build as for go build.
func TestNoPrometheusInSessionBinary(t *testing.T) {
	bin := buildRonly(t)
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	pcln, text := f.Section(".gopclntab"), f.Section(".text")
	if pcln == nil || text == nil {
		t.Fatalf("%s: no .gopclntab or .text section", bin)
	}
	data, err := pcln.Data()
	if err != nil {
		t.Fatal(err)
	}
	tab, err := gosym.NewTable(nil, gosym.NewLineTable(data, text.Addr))
	if err != nil {
		t.Fatal(err)
	}
	pkgs := map[string]bool{}
	for _, fn := range tab.Funcs {
		pkgs[fn.PackageName()] = true
	}
	// The table is read right: packages the session does link are there.
	for _, want := range []string{"github.com/alecthomas/kong", "ronly.dev/ronly/go/metrics", "ronly.dev/ronly/go/sandbox", "ronly.dev/ronly/go/writewatch/remote"} {
		if !pkgs[want] {
			t.Fatalf("%s: package %s not found among %d: the function table was not read right", bin, want, len(pkgs))
		}
	}
	var heavy []string
	for p := range pkgs {
		for _, m := range heavyModules {
			if strings.HasPrefix(p, m) {
				heavy = append(heavy, p)
			}
		}
	}
	for _, p := range heavyPackages {
		if pkgs[p] {
			heavy = append(heavy, p)
		}
	}
	sort.Strings(heavy)
	if len(heavy) > 0 {
		t.Errorf("the session binary links %s: they belong in ronly-exporter (go/metrics/promexport) or ronly-writewatch (go/writewatch), not in a package ronly imports", strings.Join(heavy, ", "))
	}
}
