package sandbox

import (
	"encoding/binary"
	"net/netip"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// sockaddrOf is the bytes a caller passes to connect for addr, laid out
// by the kernel's own structs (sockaddr_in, sockaddr_in6).
func sockaddrOf(t *testing.T, addr string) []byte {
	t.Helper()
	ap := netip.MustParseAddrPort(addr)
	if ap.Addr().Is4() {
		var sa unix.RawSockaddrInet4
		sa.Family = unix.AF_INET
		binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:], ap.Port())
		sa.Addr = ap.Addr().As4()
		return append([]byte(nil), (*[unix.SizeofSockaddrInet4]byte)(unsafe.Pointer(&sa))[:]...)
	}
	var sa unix.RawSockaddrInet6
	sa.Family = unix.AF_INET6
	binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:], ap.Port())
	sa.Addr = ap.Addr().As16()
	return append([]byte(nil), (*[unix.SizeofSockaddrInet6]byte)(unsafe.Pointer(&sa))[:]...)
}

func TestMetadataAddr(t *testing.T) {
	cases := []struct {
		addr string
		want string // "" when not a metadata address
	}{
		{"169.254.169.254:80", "169.254.169.254:80"},
		{"169.254.169.254:53", "169.254.169.254:53"}, // any port
		{"[fd00:ec2::254]:80", "[fd00:ec2::254]:80"},
		{"[::ffff:169.254.169.254]:80", "[::ffff:169.254.169.254]:80"}, // a dual-stack socket's way to the IPv4 one
		{"169.254.170.2:80", "169.254.170.2:80"},
		{"169.254.170.23:80", "169.254.170.23:80"},
		{"[fd00:ec2::23]:80", "[fd00:ec2::23]:80"},
		{"169.254.169.252:988", "169.254.169.252:988"},
		{"100.100.100.200:80", "100.100.100.200:80"},
		{"169.254.0.23:80", "169.254.0.23:80"},
		{"169.254.169.253:53", ""}, // AWS's DNS resolver
		{"169.254.20.10:53", ""},   // NodeLocal DNSCache
		{"168.63.129.16:53", ""},   // Azure's DNS
		{"127.0.0.1:80", ""},
		{"[::1]:80", ""},
		{"[fd00:ec2::253]:53", ""},
		{"[::169.254.169.254]:80", ""}, // IPv4-compatible: an IPv6 address, not routed over IPv4
	}
	for _, c := range cases {
		got, ok := metadataAddr(sockaddrOf(t, c.addr))
		if ok != (c.want != "") || got != c.want {
			t.Errorf("metadataAddr(%s) = %q, %v; want %q", c.addr, got, ok, c.want)
		}
	}
}

// TestMetadataAddrShort: addresses too short to hold an IP address, or of
// other families, are left to the kernel, which rejects short ones itself.
func TestMetadataAddrShort(t *testing.T) {
	full4 := sockaddrOf(t, "169.254.169.254:80")
	full6 := sockaddrOf(t, "[fd00:ec2::254]:80")
	for _, sa := range [][]byte{nil, full4[:1], full4[:7], full6[:23], unixAddr("/169.254.169.254")} {
		if got, ok := metadataAddr(sa); ok {
			t.Errorf("metadataAddr(%x) = %q, true", sa, got)
		}
	}
	// The kernel takes a sockaddr_in6 of 24 bytes (without the scope id):
	// so must the check.
	if _, ok := metadataAddr(full6[:24]); !ok {
		t.Errorf("a 24-byte sockaddr_in6 of fd00:ec2::254 is not refused")
	}
	// Eight bytes hold the whole IPv4 address; the kernel wants 16 and
	// says EINVAL, but the sandbox refuses first.
	if _, ok := metadataAddr(full4[:8]); !ok {
		t.Errorf("an 8-byte sockaddr_in of 169.254.169.254 is not refused")
	}
}

// TestJudgeMetadata: the judge every mediated connect and send goes
// through refuses the metadata addresses unless allowed, and passes other
// IP addresses on unchanged.
func TestJudgeMetadata(t *testing.T) {
	k := self(t)
	deny := &sockets{abstract: map[string]uint64{}}
	allow := &sockets{allowMetadata: true, abstract: map[string]uint64{}}
	md := sockaddrOf(t, "169.254.169.254:80")
	tg := deny.judge(k, md)
	if tg.refused != "169.254.169.254:80" || tg.reason != metadataReason {
		t.Errorf("judge(169.254.169.254:80) = refused %q, reason %q", tg.refused, tg.reason)
	}
	if r := tg.refusal(); r.Errno != unix.EACCES || r.Path != "169.254.169.254:80" {
		t.Errorf("refusal = %+v, want EACCES naming the address", r)
	}
	if tg := allow.judge(k, md); tg.refused != "" || tg.errno != 0 || string(tg.addr) != string(md) {
		t.Errorf("with --allow-metadata: judge = %+v", tg)
	}
	lo := sockaddrOf(t, "127.0.0.1:80")
	if tg := deny.judge(k, lo); tg.refused != "" || tg.errno != 0 || string(tg.addr) != string(lo) {
		t.Errorf("judge(127.0.0.1:80) = %+v", tg)
	}
}

// BenchmarkMetadataAddr is what the check adds to every mediated connect
// and addressed send (the round trip through the supervisor is about a
// thousand times more).
func BenchmarkMetadataAddr(b *testing.B) {
	var sa unix.RawSockaddrInet6
	sa.Family = unix.AF_INET6
	sa.Addr = netip.MustParseAddr("2001:db8::1").As16()
	buf := (*[unix.SizeofSockaddrInet6]byte)(unsafe.Pointer(&sa))[:]
	for i := 0; i < b.N; i++ {
		if _, ok := metadataAddr(buf); ok {
			b.Fatal("2001:db8::1 is a metadata address")
		}
	}
}
