package sandbox

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"sync"
	"time"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"
	"golang.org/x/term"

	cinit "ronly.dev/ronly/init"
)

// The command's descriptors 0-2 are never the caller's own objects. A file
// given as stdin or stdout is on the host's writable mount: reopened
// through /proc/self/fd/N it can be written or truncated, and fchmod,
// futimens, fsetxattr need no reopen at all; a terminal can be chmod'ed
// or have its line discipline changed (TIOCSETD), which outlives the
// session. So the supervisor gives the command streams and relays them:
//
//   - the caller's stdin is a terminal: the init opens a pty of the
//     sandbox's own devpts, makes it the controlling terminal of a new
//     session and hands its master here (cinit.MsgPTY); the caller's
//     terminal goes raw and both are copied both ways, with the window
//     size, as sudo's use_pty and `docker run -t` do. Of stdout and stderr,
//     those that are terminals get the pty too, the others pipes.
//   - otherwise: three pipes (two when stdout and stderr are one file, so
//     that their order is kept), relayed with splice(2) where the kernel
//     can, read and write where it cannot (a terminal, an O_APPEND file).
//
// EOF on the caller's stdin closes the command's. When the caller's output
// goes away (`ronly -- yes | head -1`), the command's end of that pipe is
// closed, so its next write gets SIGPIPE as it would have without ronly.
// The supervisor itself uses raw system calls on the caller's descriptors:
// a broken pipe gives it EPIPE, never a fatal SIGPIPE. Like ssh and
// `docker run -i`, it reads the caller's stdin ahead of the command: what
// it read and the command did not is gone when the session ends.

// relayChunk is how much one splice or read moves at most.
const relayChunk = 1 << 20

// stdio is the command's descriptors 0-2 and the relay that connects them
// to the caller's.
type stdio struct {
	warn   func(string)
	caller [3]*os.File // the caller's streams (os.Stdin... unless Options say otherwise)
	// Flags for the init (cinit.FlagPTY...).
	Flags uint32
	// Child are the command's descriptors 0-2, for exec.Cmd: the far ends
	// of the pipes, or nil (/dev/null) where the init puts the pty.
	Child [3]*os.File

	inW        *os.File // the command's stdin pipe, our end
	outR, errR *os.File // its stdout and stderr pipes, our ends (errR nil when shared)
	errToOut   bool     // stderr shares stdout's pipe

	master   *os.File    // the pty's master, from the init
	ttyOut   *os.File    // where the pty's output goes: a caller's terminal
	raw      *term.State // the caller's terminal before it went raw
	winch    chan os.Signal
	stopIn   int // eventfd: the stdin relay stops
	stopOut  int // eventfd: the output relays stop once nothing is left to read
	outputs  sync.WaitGroup
	started  bool
	finished bool
}

// newStdio prepares the command's descriptors for the caller's streams
// (nil: this process's own).
func newStdio(caller [3]*os.File, warn func(string)) (x *stdio, err error) {
	x = &stdio{warn: warn, caller: caller, stopIn: -1, stopOut: -1}
	for i, f := range []*os.File{os.Stdin, os.Stdout, os.Stderr} {
		if x.caller[i] == nil {
			x.caller[i] = f
		}
	}
	defer func() {
		if err != nil {
			x.close()
		}
	}()
	if x.stopIn, err = unix.Eventfd(0, unix.EFD_CLOEXEC); err != nil {
		return x, fmt.Errorf("eventfd: %w", err)
	}
	if x.stopOut, err = unix.Eventfd(0, unix.EFD_CLOEXEC); err != nil {
		return x, fmt.Errorf("eventfd: %w", err)
	}
	isTTY := func(i int) bool { return term.IsTerminal(int(x.caller[i].Fd())) }
	pipe := func() (r, w *os.File, err error) {
		var p [2]int
		// Blocking and close-on-exec: exec.Cmd dups the child's ends
		// onto 0-2; the relays wait in poll(2), not in Go's poller.
		if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
			return nil, nil, fmt.Errorf("stdio pipe: %w", err)
		}
		// Bigger than the default 64 KiB: fewer wake-ups per megabyte
		// relayed. Best effort (fs.pipe-max-size bounds it).
		unix.FcntlInt(uintptr(p[0]), unix.F_SETPIPE_SZ, relayChunk)
		return os.NewFile(uintptr(p[0]), "pipe"), os.NewFile(uintptr(p[1]), "pipe"), nil
	}
	ptyIn := isTTY(0)
	if ptyIn {
		x.Flags |= cinit.FlagPTY
	} else if x.Child[0], x.inW, err = pipe(); err != nil {
		return x, err
	}
	switch {
	case ptyIn && isTTY(1):
		x.Flags |= cinit.FlagPTYOut
	default:
		if x.outR, x.Child[1], err = pipe(); err != nil {
			return x, err
		}
	}
	switch {
	case ptyIn && isTTY(2):
		x.Flags |= cinit.FlagPTYErr
	case x.outR != nil && sameFile(x.caller[1], x.caller[2]):
		// `> log 2>&1`: one pipe keeps the order the command wrote in.
		x.errToOut, x.Child[2] = true, x.Child[1]
	default:
		if x.errR, x.Child[2], err = pipe(); err != nil {
			return x, err
		}
	}
	if ptyIn {
		// The pty's output goes to the caller's terminal: stdout, else
		// stderr, else stdin's (a terminal is usually open read-write).
		x.ttyOut = x.caller[0]
		for _, i := range []int{2, 1} {
			if isTTY(i) {
				x.ttyOut = x.caller[i]
			}
		}
	}
	return x, nil
}

// sameFile says whether a and b are the same open file (inode).
func sameFile(a, b *os.File) bool {
	var sa, sb unix.Stat_t
	if unix.Fstat(int(a.Fd()), &sa) != nil || unix.Fstat(int(b.Fd()), &sb) != nil {
		return false
	}
	return sa.Dev == sb.Dev && sa.Ino == sb.Ino
}

// childStarted closes the command's ends in this process: from now on only
// the session holds them, and their EOF is the session's.
func (x *stdio) childStarted() {
	for i, f := range x.Child {
		if f != nil && (i != 2 || !x.errToOut) {
			f.Close()
		}
		x.Child[i] = nil
	}
}

// setPTY takes the pty's master from the init.
func (x *stdio) setPTY(fd int) error {
	if x.Flags&cinit.FlagPTY == 0 || x.master != nil {
		unix.Close(fd)
		return errors.New("the init sent a pty that was not asked for")
	}
	x.master = os.NewFile(uintptr(fd), "ptmx")
	// The caller's window size now, before the command runs, so that it
	// never sees 0x0.
	if sz, err := pty.GetsizeFull(x.caller[0]); err == nil {
		pty.Setsize(x.master, sz)
	}
	return nil
}

// start starts the relays, once the sandbox is built: never earlier, so
// that a session that fails to start (and is retried) has read nothing of
// the caller's stdin.
func (x *stdio) start() error {
	if x.Flags&cinit.FlagPTY != 0 {
		if x.master == nil {
			return errors.New("the init sent no pty")
		}
		in := x.caller[0]
		state, err := term.MakeRaw(int(in.Fd()))
		if err != nil {
			return fmt.Errorf("caller's terminal: %w", err)
		}
		x.raw = state
		x.winch = make(chan os.Signal, 1)
		signal.Notify(x.winch, unix.SIGWINCH)
		go func() {
			for range x.winch {
				if sz, err := pty.GetsizeFull(in); err == nil {
					pty.Setsize(x.master, sz)
				}
			}
		}()
		go x.relay(int(x.master.Fd()), int(in.Fd()), x.stopIn, false, nil)
		x.outputs.Add(1)
		go func() {
			defer x.outputs.Done()
			x.relay(int(x.ttyOut.Fd()), int(x.master.Fd()), x.stopOut, true, nil)
		}()
	} else {
		go func() {
			x.relay(int(x.inW.Fd()), int(x.caller[0].Fd()), x.stopIn, false, nil)
			// EOF (or the command closed its stdin): the command's
			// stdin ends here too.
			x.inW.Close()
		}()
	}
	for _, o := range []struct {
		src *os.File
		dst *os.File
	}{{x.outR, x.caller[1]}, {x.errR, x.caller[2]}} {
		if o.src == nil {
			continue
		}
		x.outputs.Add(1)
		go func() {
			defer x.outputs.Done()
			x.relay(int(o.dst.Fd()), int(o.src.Fd()), x.stopOut, true, func(err error) {
				if !errors.Is(err, unix.EPIPE) {
					x.warn(fmt.Sprintf("the command's output could not be written: %v", err))
				}
			})
			// The caller's side is gone (or the command's): closing our
			// end gives the command SIGPIPE or EPIPE on its next write.
			o.src.Close()
		}()
	}
	x.started = true
	return nil
}

// finish drains the command's output, stops the relays and restores the
// caller's terminal, once the session's processes are gone. It waits for a
// slow reader of the caller's output as the command itself would have, but
// not for a process that escaped the reaping and still holds an output:
// what was written before the session ended is drained, no more.
func (x *stdio) finish() {
	if x.started {
		signalFD(x.stopIn)
		signalFD(x.stopOut)
		x.outputs.Wait()
	}
	x.close()
}

// close restores the caller's terminal and closes what is left; a relay
// still running is left to end with the process.
func (x *stdio) close() {
	if x.finished {
		return
	}
	x.finished = true
	if x.winch != nil {
		signal.Stop(x.winch)
		close(x.winch)
	}
	if x.raw != nil {
		term.Restore(int(x.caller[0].Fd()), x.raw)
	}
	signalFD(x.stopIn)
	signalFD(x.stopOut)
	if !x.started {
		for _, f := range []*os.File{x.inW, x.outR, x.errR, x.master} {
			if f != nil {
				f.Close()
			}
		}
	}
	for i, f := range x.Child {
		if f != nil && (i != 2 || !x.errToOut) {
			f.Close()
		}
	}
	// The eventfds stay open: a relay that is still running polls them.
}

func signalFD(fd int) {
	if fd >= 0 {
		var one = [8]byte{1}
		unix.Write(fd, one[:])
	}
}

// drainIdle is how long a draining relay waits for more output: a pty's
// last output can take a moment to reach its master.
const drainIdle = 200 * time.Millisecond

// relay copies src to dst until src ends (EOF, or EIO from a pty whose
// other side is gone), a write fails (onWriteErr gets the error), or stop
// is signalled. Then it returns at once unless drain is set: it moves what
// src holds at that moment (and what comes within drainIdle), no more. It
// uses splice(2) while the kernel accepts it for this pair, read(2) and
// write(2) after.
func (x *stdio) relay(dst, src, stop int, drain bool, onWriteErr func(error)) {
	splice := true
	var buf []byte
	left := -1 // once stopped: how much more to move
	timeout := -1
	fds := []unix.PollFd{{Fd: int32(src), Events: unix.POLLIN}, {Fd: int32(stop), Events: unix.POLLIN}}
	for left != 0 {
		for i := range fds {
			fds[i].Revents = 0
		}
		n, err := unix.Poll(fds, timeout)
		switch {
		case err == unix.EINTR:
			continue
		case err != nil || n == 0:
			return // drained: nothing more came
		case fds[0].Revents&unix.POLLNVAL != 0:
			return
		case len(fds) > 1 && fds[1].Revents != 0:
			if !drain {
				return
			}
			queued, err := unix.IoctlGetInt(src, unix.TIOCINQ) // FIONREAD, for pipes and ptys alike
			if err != nil {
				queued = 0
			}
			left, timeout, fds = queued+relayChunk, int(drainIdle/time.Millisecond), fds[:1]
			continue
		}
		max := relayChunk
		if left >= 0 && left < max {
			max = left
		}
		if splice {
			n, err := unix.Splice(src, nil, dst, nil, max, unix.SPLICE_F_MOVE)
			switch {
			case err == nil && n == 0:
				return
			case err == nil:
				if left >= 0 {
					left -= int(n)
				}
				continue
			case err == unix.EINTR:
				continue
			case err == unix.EAGAIN:
				waitWritable(dst)
				continue
			case err == unix.EINVAL:
				// Not for this pair (a terminal, an O_APPEND file):
				// nothing moved; copy instead.
				splice = false
			case err == unix.EIO && x.isMaster(src):
				return
			default:
				// splice does not say which side failed; src is our
				// pipe or the caller's input, which end but not fail.
				if onWriteErr != nil {
					onWriteErr(err)
				}
				return
			}
		}
		if buf == nil {
			buf = make([]byte, 128<<10)
		}
		n, err = unix.Read(src, buf[:min(max, len(buf))])
		switch {
		case err == unix.EINTR || err == unix.EAGAIN:
			continue
		case err != nil || n == 0:
			return // EOF; EIO: the pty's other side is gone
		}
		if left >= 0 {
			left -= n
		}
		data := buf[:n]
		if x.isMaster(dst) {
			data = x.suspendOnCtrlZ(dst, data)
		}
		if err := writeFull(dst, data); err != nil {
			if onWriteErr != nil {
				onWriteErr(err)
			}
			return
		}
	}
}

// suspendOnCtrlZ stops the session and ronly itself, as a shell stops a
// job, for each suspend character in b that the pty would otherwise lose,
// and returns what is left of b to write after the last one. The pty turns
// Ctrl-Z into SIGTSTP (ISIG) for its foreground group; when that group is
// the session leader's own, the kernel counts it as orphaned (its parent,
// the supervisor, is in another session) and drops the stop, so ronly
// stops it instead: SIGSTOP to the group, the caller's terminal restored,
// ronly stopped with SIGTSTP (the caller's shell says "Stopped"), and on
// fg the terminal raw again and SIGCONT to the group. A shell inside puts
// its jobs in groups of their own, which stop as usual: left alone.
func (x *stdio) suspendOnCtrlZ(master int, b []byte) []byte {
	for {
		t, err := unix.IoctlGetTermios(master, unix.TCGETS)
		if err != nil || t.Lflag&unix.ISIG == 0 || t.Cc[unix.VSUSP] == 0 {
			return b
		}
		i := bytes.IndexByte(b, t.Cc[unix.VSUSP])
		if i < 0 {
			return b
		}
		fg, err1 := unix.IoctlGetInt(master, unix.TIOCGPGRP)
		sid, err2 := unix.IoctlGetInt(master, unix.TIOCGSID)
		if err1 != nil || err2 != nil || fg != sid || fg <= 1 {
			return b // a job of a shell inside: the pty stops it
		}
		if writeFull(master, b[:i]) != nil {
			return nil
		}
		b = b[i+1:]
		in := int(x.caller[0].Fd())
		unix.Kill(-fg, unix.SIGSTOP)
		term.Restore(in, x.raw)
		// SIGTSTP's default action stops ronly (nothing here asks for
		// it); the call returns once the caller's shell sends SIGCONT.
		unix.Kill(os.Getpid(), unix.SIGTSTP)
		if st, err := term.MakeRaw(in); err == nil {
			x.raw = st
		}
		if sz, err := pty.GetsizeFull(x.caller[0]); err == nil {
			pty.Setsize(x.master, sz)
		}
		unix.Kill(-fg, unix.SIGCONT)
	}
}

// writeFull writes all of b to fd, waiting when fd is non-blocking (the
// caller's descriptor: its flags are the caller's to set, not ours).
func writeFull(fd int, b []byte) error {
	for len(b) > 0 {
		n, err := unix.Write(fd, b)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			waitWritable(fd)
			continue
		case err != nil:
			return err
		}
		b = b[n:]
	}
	return nil
}

func waitWritable(fd int) {
	unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}, 100)
}

func (x *stdio) isMaster(fd int) bool { return x.master != nil && int(x.master.Fd()) == fd }

// wire gives cmd the command's descriptors; nil leaves /dev/null, where
// the init puts the pty.
func (x *stdio) wire(cmd *exec.Cmd) {
	cmd.Stdin, cmd.Stdout, cmd.Stderr = nil, nil, nil
	if f := x.Child[0]; f != nil {
		cmd.Stdin = f
	}
	if f := x.Child[1]; f != nil {
		cmd.Stdout = f
	}
	if f := x.Child[2]; f != nil {
		cmd.Stderr = f
	}
}
