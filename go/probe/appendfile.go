package probe

import "os"

// AppendFile appends each Write to the file it names, opened for that
// write only: each event is in the file as soon as it is written, whatever
// kills this process next, and no descriptor stays open for the battery's
// look at its own (an operation checks that none is).
type AppendFile string

func (f AppendFile) Write(b []byte) (int, error) {
	fd, err := os.OpenFile(string(f), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return 0, err
	}
	n, err := fd.Write(b)
	if cerr := fd.Close(); err == nil {
		err = cerr
	}
	return n, err
}
