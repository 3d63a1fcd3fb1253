package probe

import (
	"fmt"
	"net"
	"net/netip"

	"golang.org/x/sys/unix"
)

// Cloud instance metadata (go/sandbox/metadata.go): whoever reaches it gets
// the instance's credentials. The supervisor refuses these addresses with
// EACCES, an errno the kernel does not give for them: without a route it
// says ENETUNREACH, and a connect that goes out is under way (EINPROGRESS)
// or done, so the table shows which layer refused. If one gets through,
// it only opens a TCP connection and closes it unused, or sends one byte to
// the discard port (9).

// MetadataTCPPort and MetadataUDPPort are the ports the operations use, for
// a test that listens there.
const (
	MetadataTCPPort = 80
	MetadataUDPPort = 9
)

func metadataHostile() []Op {
	h := func(name string, run func(t Targets) error) Op {
		return Op{Name: name, Kind: Hostile, Want: []unix.Errno{unix.EACCES}, Run: func(t Targets) error {
			if err := onThisMachine(); err != nil {
				return err
			}
			return run(t)
		}}
	}
	v4 := netip.MustParseAddr("169.254.169.254")
	mapped := netip.AddrFrom16(v4.As16())
	v6 := netip.MustParseAddr("fd00:ec2::254")
	return []Op{
		h("connect 169.254.169.254:80 (cloud metadata)", func(Targets) error {
			return connectTCP(netip.AddrPortFrom(v4, MetadataTCPPort))
		}),
		h("connect [::ffff:169.254.169.254]:80 (cloud metadata, IPv4-mapped)", func(Targets) error {
			return connectTCP(netip.AddrPortFrom(mapped, MetadataTCPPort))
		}),
		h("connect [fd00:ec2::254]:80 (cloud metadata, IPv6)", func(Targets) error {
			return connectTCP(netip.AddrPortFrom(v6, MetadataTCPPort))
		}),
		h("sendto UDP 169.254.169.254:9 (cloud metadata)", func(Targets) error {
			return sendUDP(netip.AddrPortFrom(v4, MetadataUDPPort), false)
		}),
		h("sendmsg UDP 169.254.169.254:9 (cloud metadata)", func(Targets) error {
			return sendUDP(netip.AddrPortFrom(v4, MetadataUDPPort), true)
		}),
	}
}

// ipSocket opens a socket of the address's family (an IPv6 one for an
// IPv4-mapped address, as a dual-stack client has).
func ipSocket(ap netip.AddrPort, typ int) (int, unix.Sockaddr, error) {
	if ap.Addr().Is4() {
		fd, err := unix.Socket(unix.AF_INET, typ|unix.SOCK_CLOEXEC, 0)
		return fd, &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}, err
	}
	fd, err := unix.Socket(unix.AF_INET6, typ|unix.SOCK_CLOEXEC, 0)
	if err == unix.EAFNOSUPPORT {
		return -1, nil, skip("no IPv6 here")
	}
	return fd, &unix.SockaddrInet6{Port: int(ap.Port()), Addr: ap.Addr().As16()}, err
}

// connectTCP connects without waiting: a connect the kernel accepted is
// under way (or done, on a local address) and counts as through.
func connectTCP(ap netip.AddrPort) error {
	fd, sa, err := ipSocket(ap, unix.SOCK_STREAM|unix.SOCK_NONBLOCK)
	if err != nil {
		return setupErr(err)
	}
	defer unix.Close(fd)
	switch err := unix.Connect(fd, sa); err {
	case nil:
		return breach("connected to %s", ap)
	case unix.EINPROGRESS:
		return breach("connect to %s under way", ap)
	default:
		return err
	}
}

// sendUDP sends one byte to ap with sendto, or with sendmsg's msg_name.
func sendUDP(ap netip.AddrPort, msg bool) error {
	fd, sa, err := ipSocket(ap, unix.SOCK_DGRAM)
	if err != nil {
		return setupErr(err)
	}
	defer unix.Close(fd)
	if msg {
		err = unix.Sendmsg(fd, []byte{0}, nil, sa, unix.MSG_DONTWAIT)
	} else {
		err = unix.Sendto(fd, []byte{0}, unix.MSG_DONTWAIT, sa)
	}
	if err != nil {
		return err
	}
	return breach("sent a datagram to %s", ap)
}

// onThisMachine skips the operations unless the metadata address is one of
// this network namespace's own (a test that put it on lo): in the probe's
// weaker configurations the connect really goes out, and a probe must send
// nothing beyond the machine it checks. tests/e2e/metadata_test.go runs
// them in a namespace of its own where the address is local.
func onThisMachine() error {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return skip("cannot list this machine's addresses: %v", err)
	}
	for _, a := range addrs {
		if p, ok := a.(*net.IPNet); ok && p.IP.Equal(net.IPv4(169, 254, 169, 254)) {
			return nil
		}
	}
	return skip("169.254.169.254 is not an address of this machine, and the probe sends nothing off it")
}

func setupErr(err error) error {
	if _, ok := err.(SkipError); ok {
		return err
	}
	return fmt.Errorf("setup: %w", err)
}
