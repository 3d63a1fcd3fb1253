package metrics

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// ListenSocket listens on the exporter's unix socket at path, creating its
// directory (0755) if missing and replacing a stale socket left by an
// exporter that died, but not one another exporter still answers on. The
// socket gets mode (0666 lets sessions of every user deliver) and, if gid
// is not -1, that group (mode 0660 and a group limit delivery to it).
func ListenSocket(path string, mode os.FileMode, gid int) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	if c, err := net.DialTimeout("unix", path, 100*time.Millisecond); err == nil {
		c.Close()
		return nil, fmt.Errorf("%s: another exporter is listening there", path)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	if gid != -1 {
		if err := os.Lchown(path, -1, gid); err != nil {
			ln.Close()
			return nil, err
		}
	}
	// After the chown: a chown may clear mode bits, never the reverse.
	if err := os.Chmod(path, mode); err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}

func peerCred(c *net.UnixConn) (*unix.Ucred, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	var cred *unix.Ucred
	var credErr error
	err = raw.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	})
	if err != nil {
		return nil, err
	}
	return cred, credErr
}
