package loadgen

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync/atomic"
	"time"
)

// CheckTarget parses a base URL such as "http://127.0.0.1:8080" and returns
// an error wrapping ErrNotLoopback unless its host is a loopback IP address
// or "localhost". Host names other than "localhost" are rejected without a
// DNS lookup.
func CheckTarget(base string) (*url.URL, error) {
	u, err := url.Parse(base)
	if err != nil {
		return nil, fmt.Errorf("parse target %q: %w", base, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("target %q: scheme must be http or https", base)
	}
	if u.User != nil {
		return nil, fmt.Errorf("target %q: user information in the URL is not supported", base)
	}
	host := u.Hostname()
	if host == "" {
		return nil, fmt.Errorf("target %q: host is missing", base)
	}
	if err := checkLoopbackHost(host); err != nil {
		return nil, fmt.Errorf("target %q: %w", base, err)
	}
	return u, nil
}

// checkLoopbackHost accepts "localhost" and loopback IP literals, including
// IPv4-mapped IPv6 forms of 127.0.0.0/8 and a zone on ::1.
func checkLoopbackHost(host string) error {
	if strings.EqualFold(host, "localhost") {
		return nil
	}
	addr, err := netip.ParseAddr(host)
	if err != nil {
		return fmt.Errorf("%w: %q is not localhost or an IP literal; load is only sent to 127.0.0.0/8, ::1 or localhost", ErrNotLoopback, host)
	}
	if !addr.Unmap().IsLoopback() {
		return fmt.Errorf("%w: %s; load is only sent to 127.0.0.0/8, ::1 or localhost", ErrNotLoopback, host)
	}
	return nil
}

// ParseSourceAddr parses the local IP address that a client binds to, such
// as "127.0.0.2". An empty string returns the zero Addr, meaning the kernel
// picks the address. Any address outside 127.0.0.0/8 and ::1 is rejected.
func ParseSourceAddr(s string) (netip.Addr, error) {
	if s == "" {
		return netip.Addr{}, nil
	}
	addr, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("parse source address %q: %w", s, err)
	}
	addr = addr.Unmap()
	if !addr.IsLoopback() {
		return netip.Addr{}, fmt.Errorf("source address %s: %w", s, ErrNotLoopback)
	}
	return addr.WithZone(""), nil
}

// ClientConfig sets up the HTTP client that NewClient returns.
type ClientConfig struct {
	// Connections is the number of keep-alive connections kept per host,
	// which is also the maximum number of concurrent connections (default 8).
	Connections int
	// SourceAddr is the local loopback address to bind, such as
	// "127.0.0.2". Empty lets the kernel choose (127.0.0.1 or ::1).
	SourceAddr string
	// Timeout bounds each request including reading the response
	// (default 10s).
	Timeout time.Duration
	// Dials, when set, counts the connections the client dials.
	Dials *atomic.Int64
}

// NewClient returns an HTTP client that connects only to loopback peers.
// Its transport ignores HTTP_PROXY and friends, keeps Connections idle
// connections alive, and checks the peer address of every new connection,
// so even a "localhost" that resolves elsewhere is rejected. The client
// never follows redirects.
func NewClient(cfg ClientConfig) (*http.Client, error) {
	if cfg.Connections <= 0 {
		cfg.Connections = defaultConcurrency
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = defaultTimeout
	}
	src, err := ParseSourceAddr(cfg.SourceAddr)
	if err != nil {
		return nil, err
	}

	dialer := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	if src.IsValid() {
		dialer.LocalAddr = &net.TCPAddr{IP: src.AsSlice()}
	}
	transport := &http.Transport{
		Proxy: nil,
		DialContext: func(ctx context.Context, network, address string) (net.Conn, error) {
			if cfg.Dials != nil {
				cfg.Dials.Add(1)
			}
			return dialLoopback(ctx, dialer, network, address)
		},
		MaxIdleConns:          cfg.Connections,
		MaxIdleConnsPerHost:   cfg.Connections,
		MaxConnsPerHost:       cfg.Connections,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: cfg.Timeout,
		DisableCompression:    true,
		ForceAttemptHTTP2:     false,
	}
	return &http.Client{
		Transport: transport,
		Timeout:   cfg.Timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}, nil
}

// dialLoopback checks the host before dialing and the peer after, because
// the name "localhost" is resolved by the system and could point anywhere.
func dialLoopback(ctx context.Context, dialer *net.Dialer, network, address string) (net.Conn, error) {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", address, err)
	}
	if err := checkLoopbackHost(host); err != nil {
		return nil, fmt.Errorf("dial %s: %w", address, err)
	}
	conn, err := dialer.DialContext(ctx, network, address)
	if err != nil {
		return nil, err
	}
	peer, ok := conn.RemoteAddr().(*net.TCPAddr)
	if !ok || !peer.IP.IsLoopback() {
		_ = conn.Close()
		return nil, fmt.Errorf("dial %s: peer %s: %w", address, conn.RemoteAddr(), ErrNotLoopback)
	}
	return conn, nil
}
