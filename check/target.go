package check

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"syscall"
	"time"
)

// metadataHosts are cloud metadata services by name.
var metadataHosts = map[string]bool{"metadata.google.internal": true, "metadata.goog": true, "metadata": true}

// metadataAddrs are cloud metadata services by address (AWS, GCP, Azure,
// OpenStack: 169.254.169.254; AWS over IPv6: fd00:ec2::254; Alibaba:
// 100.100.100.200).
var metadataAddrs = []netip.Addr{
	netip.MustParseAddr("169.254.169.254"),
	netip.MustParseAddr("fd00:ec2::254"),
	netip.MustParseAddr("100.100.100.200"),
}

// LocalTarget says why an http check may not reach ip without
// Runner.AllowLocalTargets ("" when it may): loopback, link-local,
// unspecified and cloud metadata addresses are the node's and the cloud's,
// not the application's.
func LocalTarget(ip netip.Addr) string {
	ip = ip.Unmap()
	for _, m := range metadataAddrs {
		if ip == m {
			return "a cloud metadata address"
		}
	}
	switch {
	case ip.IsLoopback():
		return "a loopback address"
	case ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast():
		return "a link-local address"
	case ip.IsUnspecified():
		return "an unspecified address"
	}
	return ""
}

// refusedTarget is an http check's target refused by the guard.
type refusedTarget struct{ addr, why string }

func (e *refusedTarget) Error() string {
	return fmt.Sprintf("target %s is %s (refused unless local targets are allowed)", e.addr, e.why)
}

// guardControl refuses, as a connection is dialled, every address that
// LocalTarget refuses: it sees each resolved IP, so a name that resolves
// (or rebinds) to such an address is caught too.
func guardControl(network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return &refusedTarget{addr: address, why: "not an IP address and port"}
	}
	if why := LocalTarget(ap.Addr()); why != "" {
		return &refusedTarget{addr: ap.Addr().String(), why: why}
	}
	return nil
}

// refusedHost refuses a URL host by name or literal address before any
// request.
func refusedHost(host string) error {
	h := strings.TrimSuffix(strings.ToLower(host), ".")
	if metadataHosts[h] || h == "localhost" || strings.HasSuffix(h, ".localhost") {
		return &refusedTarget{addr: host, why: "a local or metadata host name"}
	}
	if ip, err := netip.ParseAddr(strings.Trim(h, "[]")); err == nil {
		if why := LocalTarget(ip); why != "" {
			return &refusedTarget{addr: host, why: why}
		}
	}
	return nil
}

// guardedClient is c (nil: a default client) with a transport whose
// dialer refuses local targets and that uses no proxy (a proxy would
// resolve and dial the target where the guard cannot see it).
func guardedClient(c *http.Client) (*http.Client, error) {
	if c == nil {
		c = &http.Client{}
	}
	var t *http.Transport
	switch rt := c.Transport.(type) {
	case nil:
		t = http.DefaultTransport.(*http.Transport).Clone()
	case *http.Transport:
		t = rt.Clone()
	default:
		return nil, fmt.Errorf("the http check client's transport %T cannot be guarded against local targets", rt)
	}
	d := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second, Control: guardControl}
	t.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		return d.DialContext(ctx, network, addr)
	}
	t.Proxy = nil
	g := *c
	g.Transport = t
	return &g, nil
}
