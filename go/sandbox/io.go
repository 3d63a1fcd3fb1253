package sandbox

import (
	"io"

	"golang.org/x/sys/unix"
)

func writeAll(fd int, b []byte) error {
	for len(b) > 0 {
		n, err := unix.Write(fd, b)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}

// recvFrom reads exactly len(b) bytes and returns the descriptors that
// came along (SCM_RIGHTS) and which process sent the bytes, when the
// socket has SO_PASSCRED: the pid in this process's PID namespace, 0 when
// unknown.
func recvFrom(fd int, b []byte) ([]int, int, error) {
	var fds []int
	pid := 0
	oob := make([]byte, unix.CmsgSpace(4*4)+unix.CmsgSpace(unix.SizeofUcred))
	for len(b) > 0 {
		n, oobn, _, _, err := unix.Recvmsg(fd, b, oob, unix.MSG_CMSG_CLOEXEC)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			closeAll(fds)
			return nil, 0, err
		}
		if oobn > 0 {
			msgs, _ := unix.ParseSocketControlMessage(oob[:oobn])
			for _, m := range msgs {
				if rights, err := unix.ParseUnixRights(&m); err == nil {
					fds = append(fds, rights...)
				}
				if cred, err := unix.ParseUnixCredentials(&m); err == nil {
					pid = int(cred.Pid)
				}
			}
		}
		if n == 0 {
			closeAll(fds)
			return nil, 0, io.ErrUnexpectedEOF
		}
		b = b[n:]
	}
	return fds, pid, nil
}

func closeAll(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}

type fdWriter int

func (w fdWriter) Write(b []byte) (int, error) {
	if err := writeAll(int(w), b); err != nil {
		return 0, err
	}
	return len(b), nil
}
