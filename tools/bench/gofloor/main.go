// Command gofloor is the "Go floor" of ronly's startup: the least a Go
// supervisor must do to run a command in ronly's sandbox. It links the same
// C init (package cinit), sends it the records a default `ronly -- CMD`
// sends (user namespace with root's identity map and its limits, the
// seccomp notify program and its fallback, the Landlock ABI, a tmpfs /tmp,
// the docker and kubectl shims, a report pipe, argv and environment with
// the shims first on PATH), writes the id maps, takes the seccomp listener,
// and waits. It does nothing else: no flags, no policy, no cgroup, no stdio
// relay, no notifications answered (the commands benchmarked make no
// refused calls). tools/bench runs it beside ronly; the difference is what
// ronly's own Go code costs.
//
// Usage: gofloor BPF-NOTIFY BPF-ERRNO LANDLOCK-ABI CMD [ARG...]
// (the programs as tools/bench wrote them from bpf.Precompiled, so that
// this binary links no libseccomp). With GOFLOOR_RECORDS=FILE in the
// environment it writes the records to FILE instead of starting the init:
// the C floor (tools/bench/cfloor) sends them, so that both floors drive
// the same init with the same records.
package main

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	cinit "ronly.dev/ronly/init"
	"ronly.dev/ronly/shims"
)

func main() {
	if len(os.Args) < 5 {
		fmt.Fprintln(os.Stderr, "usage: gofloor BPF-NOTIFY BPF-ERRNO LANDLOCK-ABI CMD [ARG...]")
		os.Exit(2)
	}
	code, err := run(os.Args[1], os.Args[2], os.Args[3], os.Args[4:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "gofloor:", err)
		os.Exit(125)
	}
	os.Exit(code)
}

func run(notifyPath, errnoPath, abiStr string, argv []string) (int, error) {
	notify, err := os.ReadFile(notifyPath)
	if err != nil {
		return 0, err
	}
	plain, err := os.ReadFile(errnoPath)
	if err != nil {
		return 0, err
	}
	abi, err := strconv.Atoi(abiStr)
	if err != nil {
		return 0, err
	}
	var limits []cinit.UsernsLimit
	for _, s := range []struct {
		name string
		div  uint64
	}{{"max_inotify_instances", 2}, {"max_inotify_watches", 4}, {"max_fanotify_groups", 2}, {"max_fanotify_marks", 4}} {
		b, err := os.ReadFile("/proc/sys/user/" + s.name)
		if v, perr := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64); err == nil && perr == nil {
			limits = append(limits, cinit.UsernsLimit{Name: s.name, Value: max(v/s.div, 1)})
		}
	}
	for _, n := range []string{"user", "mnt", "pid", "net", "ipc", "uts", "cgroup", "time"} {
		limits = append(limits, cinit.UsernsLimit{Name: "max_" + n + "_namespaces"})
	}
	env := []string{shims.EnvReportFD + "=4"}
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "GOFLOOR_RECORDS=") {
			continue // the C floor's command gets the environment the Go floor's does
		}
		if strings.HasPrefix(kv, "PATH=") {
			kv = "PATH=" + shims.Dir + ":" + kv[len("PATH="):]
		}
		env = append(env, kv)
	}
	cfg := cinit.Config{
		Flags:       cinit.FlagUserNS | cinit.FlagSeccompNotify | cinit.FlagKeepDACRead,
		LandlockABI: uint32(abi), BPF: notify, Fallback: plain, ReportFD: 4, UsernsLimits: limits,
		Mounts: []cinit.Mount{
			{Kind: cinit.MountTmpfs, Path: "/tmp", Size: 64 << 20, Mode: 0o1777},
			{Kind: cinit.MountShim, Path: "/docker"}, {Kind: cinit.MountShim, Path: "/kubectl"},
		},
		Argv: argv, Env: env,
	}
	records, err := cfg.MarshalBinary()
	if err != nil {
		return 0, err
	}
	if f := os.Getenv("GOFLOOR_RECORDS"); f != "" {
		return 0, os.WriteFile(f, records, 0o644)
	}
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, err
	}
	parent, child := pair[0], os.NewFile(uintptr(pair[1]), "init")
	if err := unix.SetsockoptInt(parent, unix.SOL_SOCKET, unix.SO_PASSCRED, 1); err != nil {
		return 0, err
	}
	_, reportW, err := os.Pipe()
	if err != nil {
		return 0, err
	}
	cmd := exec.Command("/proc/self/exe")
	cmd.Args[0] = "gofloor"
	cmd.Env = []string{cinit.EnvFD + "=3"}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.ExtraFiles = []*os.File{child, reportW}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	child.Close()
	reportW.Close()
	if _, err := unix.Write(parent, records); err != nil {
		return 0, err
	}
	buf := make([]byte, cinit.MsgSize)
	oob := make([]byte, unix.CmsgSpace(unix.SizeofUcred))
	var listener int = -1
	for ready := false; !ready; {
		n, oobn, _, _, err := unix.Recvmsg(parent, buf, oob, 0)
		if err != nil || n != len(buf) {
			return 0, fmt.Errorf("init: %d bytes, %v", n, err)
		}
		m, err := cinit.DecodeMsg(buf)
		if err != nil {
			return 0, err
		}
		switch m.Type {
		case cinit.MsgNeedIDMap:
			pid := cmd.Process.Pid
			for _, f := range []string{"uid_map", "gid_map"} {
				if err := os.WriteFile(fmt.Sprintf("/proc/%d/%s", pid, f), []byte("0 0 4294967295\n"), 0); err != nil {
					return 0, err
				}
			}
			cinit.WriteMsg(fdWriter(parent), cinit.Msg{Type: cinit.MsgIDMapDone})
		case cinit.MsgListener:
			msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
			if err != nil || len(msgs) == 0 {
				return 0, fmt.Errorf("listener message without credentials")
			}
			cred, err := unix.ParseUnixCredentials(&msgs[0])
			if err != nil {
				return 0, err
			}
			pidfd, err := unix.PidfdOpen(int(cred.Pid), 0)
			if err != nil {
				return 0, err
			}
			listener, err = unix.PidfdGetfd(pidfd, int(m.Value), 0)
			unix.Close(pidfd)
			if err != nil {
				return 0, err
			}
			cinit.WriteMsg(fdWriter(parent), cinit.Msg{Type: cinit.MsgListenerTaken})
		case cinit.MsgReady:
			ready = true
		case cinit.MsgWarn:
		default:
			return 0, fmt.Errorf("init: %+v", m)
		}
	}
	err = cmd.Wait()
	if listener >= 0 {
		unix.Close(listener)
	}
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok {
		if ws.Signaled() {
			return 128 + int(ws.Signal()), nil
		}
		return ws.ExitStatus(), nil
	}
	return 0, err
}

type fdWriter int

func (w fdWriter) Write(b []byte) (int, error) { return unix.Write(int(w), b) }
