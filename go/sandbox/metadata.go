package sandbox

import (
	"encoding/binary"
	"net/netip"

	"golang.org/x/sys/unix"
)

// Cloud instance metadata. Whoever reaches a cloud's instance metadata
// service from the instance gets the instance role's credentials, and with
// them write access to the cloud's APIs: no read-only mount stops that. So
// connects and sends to these addresses are refused, by default, in every
// mode and profile (--allow-metadata lets them through). The supervisor
// decides on the address it copied out of the caller and makes the call
// itself with that copy (mediate_sock.go): a caller that rewrites the
// address afterwards changes nothing.
//
// The list is the addresses that hand out credentials, not the whole
// link-local range 169.254.0.0/16: that range also holds services a
// sandboxed command needs and that give no credentials (AWS's DNS resolver
// 169.254.169.253 and NTP 169.254.169.123, Kubernetes' NodeLocal DNSCache
// 169.254.20.10, link-local peers), and refusing DNS would break name
// resolution inside. Azure's 168.63.129.16 is its DNS server too, and is
// left alone for the same reason. A name (metadata.google.internal) is no
// way around: what is judged is the address connect gets.
var metadataAddrs = []netip.Addr{
	// AWS EC2, GCP, Azure, Oracle, OpenStack, DigitalOcean, Hetzner and
	// most others: the instance metadata service (IMDS).
	netip.MustParseAddr("169.254.169.254"),
	// AWS IMDS on IPv6 (Nitro instances).
	netip.MustParseAddr("fd00:ec2::254"),
	// AWS ECS: the task metadata and container credentials endpoint
	// (AWS_CONTAINER_CREDENTIALS_RELATIVE_URI).
	netip.MustParseAddr("169.254.170.2"),
	// AWS EKS Pod Identity agent, which serves a pod's role credentials.
	netip.MustParseAddr("169.254.170.23"),
	netip.MustParseAddr("fd00:ec2::23"),
	// GKE's metadata server on a node (Workload Identity), where
	// 169.254.169.254 is redirected to.
	netip.MustParseAddr("169.254.169.252"),
	// Alibaba Cloud's metadata service (RAM role credentials); not
	// link-local but the shared address space, used for nothing else.
	netip.MustParseAddr("100.100.100.200"),
	// Tencent Cloud's metadata service (metadata.tencentyun.com).
	netip.MustParseAddr("169.254.0.23"),
}

// metadataReason is the audit log's reason for a refused metadata address.
const metadataReason = "cloud instance metadata service, which hands out the instance's credentials (--allow-metadata lets it through)"

// metadataAddr says whether the socket address sa (as the caller passed it:
// family first) is a metadata address, and returns it with its port for
// the audit log. An IPv4-mapped IPv6 address (::ffff:169.254.169.254) is
// the IPv4 one: a dual-stack IPv6 socket sends to it over IPv4.
func metadataAddr(sa []byte) (string, bool) {
	if len(sa) < 2 {
		return "", false
	}
	var ip netip.Addr
	switch binary.NativeEndian.Uint16(sa) {
	case unix.AF_INET: // family, port, 4 bytes of address
		if len(sa) < 8 {
			return "", false
		}
		ip = netip.AddrFrom4([4]byte(sa[4:8]))
	case unix.AF_INET6: // family, port, flowinfo, 16 bytes of address
		if len(sa) < 24 {
			return "", false
		}
		ip = netip.AddrFrom16([16]byte(sa[8:24]))
	default:
		return "", false
	}
	port := binary.BigEndian.Uint16(sa[2:4])
	for _, m := range metadataAddrs {
		if ip.Unmap() == m {
			return netip.AddrPortFrom(ip, port).String(), true
		}
	}
	return "", false
}

// refuseMetadata marks t refused when its address is a metadata address
// and the session may not reach those.
func (s *sockets) refuseMetadata(t *target) bool {
	if s.allowMetadata {
		return false
	}
	addr, ok := metadataAddr(t.addr)
	if ok {
		t.refused, t.reason = addr, metadataReason
	}
	return ok
}

// metadataWarning says, when no seccomp listener mediates connects (a
// nested sandbox), that the metadata addresses are reachable: nothing else
// refuses them. With --no-network the session's own network namespace has
// no route to them.
func (s *session) metadataWarning(listener bool) {
	p := s.p
	if listener || p.SkipSeccomp || p.NoNetwork || p.AllowMetadata {
		return
	}
	s.warn("the cloud instance metadata service (169.254.169.254, fd00:ec2::254) is NOT refused (no seccomp listener could be had: a nested sandbox): on a cloud host the instance's credentials are reachable from inside; --no-network closes it")
}
