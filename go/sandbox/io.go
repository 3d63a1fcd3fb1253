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

func readFull(fd int, b []byte) error {
	for len(b) > 0 {
		n, err := unix.Read(fd, b)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		if n == 0 {
			return io.ErrUnexpectedEOF
		}
		b = b[n:]
	}
	return nil
}

type fdWriter int

func (w fdWriter) Write(b []byte) (int, error) {
	if err := writeAll(int(w), b); err != nil {
		return 0, err
	}
	return len(b), nil
}
