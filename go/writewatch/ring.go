package writewatch

import (
	"fmt"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ring reads a BPF_MAP_TYPE_RINGBUF the way the kernel lays it out for
// user space: the consumer position on a writable page at offset 0, the
// producer position on a read-only page at offset pagesize, then the data
// pages, mapped twice in a row so a record that wraps around the end can be
// read in one piece. Not safe for concurrent use: Watch serializes it.
type ring struct {
	cons []byte // consumer page
	prod []byte // producer page + data twice
	data []byte
	mask uint64
}

func newRing(fd int, size int) (*ring, error) {
	page := unix.Getpagesize()
	cons, err := unix.Mmap(fd, 0, page, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("mmap ring buffer consumer page: %w", err)
	}
	prod, err := unix.Mmap(fd, int64(page), page+2*size, unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		unix.Munmap(cons)
		return nil, fmt.Errorf("mmap ring buffer data: %w", err)
	}
	return &ring{cons: cons, prod: prod, data: prod[page:], mask: uint64(size - 1)}, nil
}

func (r *ring) consumerPos() *uint64 { return (*uint64)(unsafe.Pointer(&r.cons[0])) }
func (r *ring) producerPos() *uint64 { return (*uint64)(unsafe.Pointer(&r.prod[0])) }

// read hands each committed record to fn, in order, and frees its space. It
// stops at a record still being written (BUSY): the kernel wakes the reader
// when that one is committed, since the consumer has then caught up with it.
// Discarded records are skipped (the program never discards, but the format
// allows it).
func (r *ring) read(fn func([]byte)) {
	cons := atomic.LoadUint64(r.consumerPos())
	for {
		prod := atomic.LoadUint64(r.producerPos())
		if cons >= prod {
			return
		}
		for cons < prod {
			hdr := r.data[cons&r.mask:]
			l := atomic.LoadUint32((*uint32)(unsafe.Pointer(&hdr[0])))
			if l&unix.BPF_RINGBUF_BUSY_BIT != 0 {
				return
			}
			n := l &^ (unix.BPF_RINGBUF_BUSY_BIT | unix.BPF_RINGBUF_DISCARD_BIT)
			if l&unix.BPF_RINGBUF_DISCARD_BIT == 0 {
				fn(hdr[unix.BPF_RINGBUF_HDR_SZ : unix.BPF_RINGBUF_HDR_SZ+n])
			}
			cons += (uint64(n) + unix.BPF_RINGBUF_HDR_SZ + 7) &^ 7
			atomic.StoreUint64(r.consumerPos(), cons)
		}
	}
}

func (r *ring) close() error {
	err1 := unix.Munmap(r.prod)
	err2 := unix.Munmap(r.cons)
	if err1 != nil {
		return err1
	}
	return err2
}
