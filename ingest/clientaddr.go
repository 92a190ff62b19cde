package ingest

import (
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/segmentio/encoding/json"

	"github.com/syncguard/syncguard/schemas"
)

// maxForwardedHops caps the X-Forwarded-For entries examined per request.
// A chain longer than this from a trusted proxy counts as malformed.
const maxForwardedHops = 32

// prefixSet is a set of CIDR prefixes. Lookups mask the address once per
// prefix length present, so the cost grows with the number of distinct
// lengths (at most 33 for IPv4 and 129 for IPv6), not with the set size.
type prefixSet struct {
	byLen   map[netip.Prefix]struct{}
	lengths []int // distinct prefix lengths, IPv4 and IPv6 mixed
}

// parsePrefixes parses CIDR prefixes and bare addresses (a single host).
// key names the configuration key in errors.
func parsePrefixes(key string, values []string) (prefixSet, error) {
	set := prefixSet{byLen: make(map[netip.Prefix]struct{}, len(values))}
	for i, v := range values {
		p, err := parsePrefix(v)
		if err != nil {
			return prefixSet{}, fmt.Errorf("%s[%d]: %w", key, i, err)
		}
		set.add(p)
	}
	return set, nil
}

// parsePrefix parses "203.0.113.0/24", "2001:db8::/32" or a bare address.
// IPv4-mapped IPv6 addresses become IPv4.
func parsePrefix(v string) (netip.Prefix, error) {
	v = strings.TrimSpace(v)
	if !strings.Contains(v, "/") {
		a, err := netip.ParseAddr(v)
		if err != nil || a.Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("%q is not an IP address or CIDR prefix", v)
		}
		a = a.Unmap()
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(v)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not an IP address or CIDR prefix: %w", v, err)
	}
	if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	return p.Masked(), nil
}

func (s *prefixSet) add(p netip.Prefix) {
	if s.byLen == nil {
		s.byLen = make(map[netip.Prefix]struct{})
	}
	s.byLen[p] = struct{}{}
	for _, l := range s.lengths {
		if l == p.Bits() {
			return
		}
	}
	s.lengths = append(s.lengths, p.Bits())
}

func (s *prefixSet) empty() bool { return len(s.byLen) == 0 }

// contains reports whether a, unmapped, lies in one of the prefixes.
func (s *prefixSet) contains(a netip.Addr) bool {
	if len(s.byLen) == 0 || !a.IsValid() {
		return false
	}
	a = a.Unmap()
	for _, l := range s.lengths {
		if l > a.BitLen() {
			continue
		}
		p, err := a.Prefix(l)
		if err != nil {
			continue
		}
		if _, ok := s.byLen[p]; ok {
			return true
		}
	}
	return false
}

// addrResolver finds the client address of a request. X-Forwarded-For is
// read only when the TCP peer is a trusted proxy. Other forwarding headers
// (X-Real-IP, Forwarded, True-Client-IP, CF-Connecting-IP) are never read.
type addrResolver struct {
	trusted prefixSet
}

// resolve returns the client address for a connection from peer (a
// RemoteAddr, "host:port") carrying the X-Forwarded-For header lines xff.
// It walks the entries from the right, skips trusted proxies and returns
// the first untrusted address. When every entry is trusted it returns the
// leftmost. malformed is true when a trusted peer sent an entry that is
// not an IP address, or more than maxForwardedHops entries. The peer
// address is returned then. ok is false when peer does not parse.
func (ar *addrResolver) resolve(peer string, xff []string) (addr netip.Addr, malformed, ok bool) {
	peerAddr, ok := parseRemoteAddr(peer)
	if !ok {
		return netip.Addr{}, false, false
	}
	if len(xff) == 0 || !ar.trusted.contains(peerAddr) {
		return peerAddr, false, true
	}

	// Several header lines form one list, in order (RFC 9110, section
	// 5.3), so the entries of the last line are the rightmost.
	hops := 0
	last := netip.Addr{}
	for i := len(xff) - 1; i >= 0; i-- {
		line := xff[i]
		for line != "" {
			entry := line
			if j := strings.LastIndexByte(line, ','); j >= 0 {
				entry, line = line[j+1:], line[:j]
			} else {
				line = ""
			}
			hops++
			a, ok := parseForwardedEntry(entry)
			if !ok || hops > maxForwardedHops {
				return peerAddr, true, true
			}
			if !ar.trusted.contains(a) {
				return a, false, true
			}
			last = a
		}
	}
	if !last.IsValid() {
		// Only empty header lines: nothing to walk.
		return peerAddr, true, true
	}
	return last, false, true
}

// parseForwardedEntry parses one X-Forwarded-For entry: an IPv4 or IPv6
// address, optionally with a port ("192.0.2.1:443", "[2001:db8::1]:443").
// Zones are rejected, because they mean nothing off the proxy's host.
func parseForwardedEntry(s string) (netip.Addr, bool) {
	s = strings.TrimSpace(s)
	if s == "" {
		return netip.Addr{}, false
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		ap, perr := netip.ParseAddrPort(s)
		if perr != nil {
			return netip.Addr{}, false
		}
		a = ap.Addr()
	}
	if a.Zone() != "" {
		return netip.Addr{}, false
	}
	return a.Unmap(), true
}

// parseRemoteAddr parses a RemoteAddr as net/http sets it ("ip:port"), or a
// bare address, and unmaps IPv4-mapped IPv6 addresses.
func parseRemoteAddr(s string) (netip.Addr, bool) {
	host := s
	if h, _, err := net.SplitHostPort(s); err == nil {
		host = h
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}, false
	}
	return a.WithZone("").Unmap(), true
}

// sourceKey is the rate limiting key of a client address: the address for
// IPv4, and its /64 for IPv6, because one subscriber usually holds a whole
// /64 and can rotate freely inside it.
func sourceKey(a netip.Addr) netip.Addr {
	if a.Is4() {
		return a
	}
	p, err := a.Prefix(64)
	if err != nil {
		return a
	}
	return p.Addr()
}

// Paths of the two audited routes, as the mux matches them.
const (
	pathWebhook = "/webhooks/whatsapp"
	pathSync    = "/v1/sync/events"
)

// guard runs the admission checks that need no body byte before next:
// client address resolution, the route's allowlist, source blocks, the
// source rate limit and, on the sync route, blocks of the claimed device
// and of the token id. /healthz and /readyz pass unchecked. next receives
// the resolved client address as RemoteAddr, so audit events record it.
func (s *Server) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" || r.URL.Path == "/readyz" {
			next.ServeHTTP(w, r)
			return
		}
		addr, malformed, ok := s.resolver.resolve(r.RemoteAddr, r.Header.Values("X-Forwarded-For"))
		if malformed {
			s.forwardedMalformed.Inc()
		}
		if ok {
			r = withRemoteAddr(r, addr)
		}
		now := time.Now()

		if !s.allow.allowed(r.URL.Path, addr) {
			s.reject(w, r, schemas.ReasonForbiddenSource, "the source address is not allowed on this route", nil)
			return
		}
		if s.blocks.sourceBlocked(addr, now) {
			s.reject(w, r, schemas.ReasonBlocked, "the source address is blocked", nil)
			return
		}
		if l := s.limits.source; l != nil {
			if allowed, wait := l.allow(sourceKey(addr), now); !allowed {
				s.reject(w, r, schemas.ReasonRateLimited, "too many requests from this source; retry later", func(x *exchange) {
					x.Header().Set("Retry-After", retryAfterSeconds(wait))
				})
				return
			}
		}
		if r.URL.Path == pathSync && !s.admitClaims(w, r) {
			return
		}
		next.ServeHTTP(w, r)
	})
}

// admitClaims rejects a sync request whose bearer token carries a revoked
// jti. It reads the claim before the token is verified. That is safe
// because it can only reject, with the same response that any invalid
// token gets, so a prober learns nothing from it.
//
// Device blocks are not checked here: a 403 before authentication would
// let anyone learn which devices are blocked. admitDevice checks them once
// the token is verified.
func (s *Server) admitClaims(w http.ResponseWriter, r *http.Request) bool {
	for _, auth := range r.Header.Values("Authorization") {
		if s.tokenRevoked(unverifiedTokenID(auth)) {
			s.reject(w, r, schemas.ReasonInvalidToken, "the access token is missing, malformed, expired or not trusted", func(x *exchange) {
				x.detail = "token revoked"
				scheme := "Bearer"
				if len(auth) > 5 && strings.EqualFold(auth[:5], "dpop ") {
					scheme = "DPoP"
				}
				x.Header().Set("WWW-Authenticate", scheme+` error="invalid_token"`)
			})
			return false
		}
	}
	return true
}

// unverifiedTokenID returns the jti claim of the JWT in an Authorization
// value ("Bearer <jwt>" or "DPoP <jwt>") without checking its signature,
// or "" when there is none.
func unverifiedTokenID(auth string) string {
	_, token, ok := strings.Cut(auth, " ")
	if !ok {
		return ""
	}
	_, rest, ok := strings.Cut(strings.TrimSpace(token), ".")
	if !ok {
		return ""
	}
	payload, _, ok := strings.Cut(rest, ".")
	if !ok {
		return ""
	}
	raw, err := base64.RawURLEncoding.DecodeString(payload)
	if err != nil {
		return ""
	}
	var claims struct {
		ID string `json:"jti"`
	}
	if _, err := json.Parse(raw, &claims, json.ZeroCopy); err != nil {
		return ""
	}
	return claims.ID
}

// reject responds to a request that admission turned away, as an audited
// exchange. edit, when set, adjusts the exchange before the response.
func (s *Server) reject(w http.ResponseWriter, r *http.Request, code, detail string, edit func(*exchange)) {
	x := s.begin(w, r, routeOf(r))
	defer s.finish(x)
	if edit != nil {
		edit(x)
	}
	s.fail(x, code, detail)
}

// routeOf returns the route label of a request, as the handlers name it.
func routeOf(r *http.Request) string {
	switch r.URL.Path {
	case pathWebhook:
		switch r.Method {
		case http.MethodGet, http.MethodHead:
			return routeHandshake
		case http.MethodPost:
			return routeWebhook
		}
		return routeWebhookOther
	case pathSync:
		if r.Method == http.MethodPost {
			return routeSync
		}
		return routeSyncOther
	}
	return routeUnknown
}

// withRemoteAddr returns a shallow copy of r whose RemoteAddr holds the
// client address a, keeping the peer's port when a is the peer.
func withRemoteAddr(r *http.Request, a netip.Addr) *http.Request {
	port := "0"
	if _, p, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		if peer, ok := parseRemoteAddr(r.RemoteAddr); ok && peer == a {
			port = p
		}
	}
	r2 := r.WithContext(r.Context())
	r2.RemoteAddr = net.JoinHostPort(a.String(), port)
	return r2
}
