package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"os/user"
	"runtime/debug"
	"strconv"
	"syscall"
	"time"

	"github.com/alecthomas/kong"

	"ronly.dev/ronly/go/metrics"
	"ronly.dev/ronly/go/metrics/promexport"
)

// exporterCmd is the host's metrics daemon: sessions deliver their reports
// to its unix socket (or, while it is down, to the spool), and Prometheus
// scrapes the sums from its /metrics. Defaults repeat metrics.DefaultSocket
// and metrics.DefaultSpool.
type exporterCmd struct {
	Version kong.VersionFlag `help:"Print the version and exit."`

	Listen        string        `default:"127.0.0.1:9649" placeholder:"ADDR" help:"Serve /metrics for Prometheus on ADDR (port 0: any free port; default ${default})."`
	Socket        string        `default:"/run/ronly/exporter.sock" placeholder:"PATH" help:"Receive session reports on the unix socket PATH (default ${default})."`
	SocketMode    string        `name:"socket-mode" default:"0666" placeholder:"MODE" help:"Octal mode of the socket: 0666 lets sessions of every user report; 0660 with --socket-group limits it to a group (default ${default})."`
	SocketGroup   string        `name:"socket-group" placeholder:"GROUP" help:"Give the socket to GROUP."`
	Spool         string        `default:"/var/lib/ronly/spool" placeholder:"DIR" help:"Ingest and delete the reports sessions spooled in DIR while the exporter was down (default ${default})."`
	SpoolInterval time.Duration `name:"spool-interval" default:"10s" placeholder:"DURATION" help:"How often to look in the spool (default ${default})."`
}

// exporterMemoryLimit is the Go runtime's soft memory limit in the exporter.
const exporterMemoryLimit = 12 << 20

// Run serves until SIGINT or SIGTERM.
func (e *exporterCmd) Run() error {
	mode, err := strconv.ParseUint(e.SocketMode, 8, 32)
	if err != nil || mode > 0o777 {
		return fmt.Errorf("--socket-mode %q: not an octal file mode", e.SocketMode)
	}
	gid := -1
	if e.SocketGroup != "" {
		g, err := user.LookupGroup(e.SocketGroup)
		if err != nil {
			return fmt.Errorf("--socket-group: %w", err)
		}
		gid, _ = strconv.Atoi(g.Gid)
	}
	if e.SpoolInterval <= 0 {
		return fmt.Errorf("--spool-interval %s: must be positive", e.SpoolInterval)
	}
	// The live heap is a few hundred kB; a soft limit makes the GC return
	// the garbage of a burst of reports to the kernel instead of keeping
	// it, so the daemon stays small. GOMEMLIMIT, if set, wins.
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(exporterMemoryLimit)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	ex := metrics.NewExporter(e.Spool)
	metricsHandler, err := promexport.Handler(ex, log.New(os.Stderr, "ronly-exporter: /metrics: ", 0))
	if err != nil {
		return err
	}
	warn := func(err error) { fmt.Fprintf(os.Stderr, "ronly-exporter: %v\n", err) }

	httpLn, err := net.Listen("tcp", e.Listen)
	if err != nil {
		return fmt.Errorf("--listen: %w", err)
	}
	sockLn, err := metrics.ListenSocket(e.Socket, os.FileMode(mode), gid)
	if err != nil {
		httpLn.Close()
		return fmt.Errorf("--socket: %w", err)
	}
	defer sockLn.Close() // removes the socket file
	if err := ex.IngestSpool(); err != nil {
		warn(err)
	}

	mux := http.NewServeMux()
	mux.Handle("/metrics", metricsHandler)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		fmt.Fprintln(w, `<html><body><h1>ronly-exporter</h1><a href="/metrics">/metrics</a></body></html>`)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, WriteTimeout: 30 * time.Second}

	errc := make(chan error, 2)
	go func() { errc <- fmt.Errorf("http: %w", srv.Serve(httpLn)) }()
	go func() { errc <- ex.ServeSocket(sockLn, warn) }()
	fmt.Fprintf(os.Stderr, "ronly-exporter: metrics on http://%s/metrics, reports on %s, spool %s\n",
		httpLn.Addr(), e.Socket, e.Spool)

	tick := time.NewTicker(e.SpoolInterval)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
			if err := ex.IngestSpool(); err != nil {
				warn(err)
			}
		case err := <-errc:
			srv.Close()
			return err
		case <-ctx.Done():
			sockLn.Close()
			shut, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			if err := srv.Shutdown(shut); err != nil && !errors.Is(err, context.DeadlineExceeded) {
				return err
			}
			return nil
		}
	}
}
