package ingest

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/syncguard/syncguard/schemas"
)

func TestResolveClientAddr(t *testing.T) {
	trusted, err := parsePrefixes("trusted", []string{"10.0.0.0/8", "127.0.0.2", "2001:db8:ffff::/48"})
	if err != nil {
		t.Fatal(err)
	}
	r := addrResolver{trusted: trusted}
	tests := []struct {
		name          string
		peer          string
		xff           []string
		want          string
		wantMalformed bool
	}{
		{"untrusted peer no xff", "203.0.113.5:4000", nil, "203.0.113.5", false},
		{"untrusted peer spoofed xff ignored", "127.0.0.3:4000", []string{"127.0.0.1"}, "127.0.0.3", false},
		{"untrusted peer garbage xff ignored", "127.0.0.3:4000", []string{"garbage"}, "127.0.0.3", false},
		{"trusted peer one entry", "127.0.0.2:4000", []string{"198.51.100.7"}, "198.51.100.7", false},
		{"trusted peer client forged leftmost", "127.0.0.2:4000", []string{"127.0.0.1, 203.0.113.9"}, "203.0.113.9", false},
		{"trusted peer two lines in order", "127.0.0.2:4000", []string{"127.0.0.1", "203.0.113.9"}, "203.0.113.9", false},
		{"trusted hop on the right skipped", "127.0.0.2:4000", []string{"198.51.100.7, 10.1.2.3"}, "198.51.100.7", false},
		{"untrusted then trusted", "127.0.0.2:4000", []string{"127.0.0.1, 127.0.0.3, 10.0.0.1"}, "127.0.0.3", false},
		{"all trusted takes leftmost", "127.0.0.2:4000", []string{"10.0.0.9, 10.0.0.1"}, "10.0.0.9", false},
		{"entry with port", "127.0.0.2:4000", []string{"198.51.100.7:5555"}, "198.51.100.7", false},
		{"ipv6 entry with port", "127.0.0.2:4000", []string{"[2001:db8::7]:5555"}, "2001:db8::7", false},
		{"mapped entry unmapped", "127.0.0.2:4000", []string{"::ffff:198.51.100.7"}, "198.51.100.7", false},
		{"garbage entry", "127.0.0.2:4000", []string{"198.51.100.7, nonsense"}, "127.0.0.2", true},
		{"empty entry", "127.0.0.2:4000", []string{"198.51.100.7, "}, "127.0.0.2", true},
		{"only separators", "127.0.0.2:4000", []string{",,,"}, "127.0.0.2", true},
		{"empty line", "127.0.0.2:4000", []string{""}, "127.0.0.2", true},
		{"zone rejected", "127.0.0.2:4000", []string{"fe80::1%eth0"}, "127.0.0.2", true},
		{"mapped peer is trusted", "[::ffff:127.0.0.2]:4000", []string{"198.51.100.7"}, "198.51.100.7", false},
		{"ipv6 trusted peer", "[2001:db8:ffff::1]:4000", []string{"2001:db8:1:2::99"}, "2001:db8:1:2::99", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, malformed, ok := r.resolve(tt.peer, tt.xff)
			if !ok {
				t.Fatalf("resolve(%q) did not parse the peer", tt.peer)
			}
			if got != netip.MustParseAddr(tt.want) {
				t.Errorf("address = %s, want %s", got, tt.want)
			}
			if malformed != tt.wantMalformed {
				t.Errorf("malformed = %v, want %v", malformed, tt.wantMalformed)
			}
		})
	}
}

func TestResolveTooManyHops(t *testing.T) {
	trusted, _ := parsePrefixes("trusted", []string{"10.0.0.0/8"})
	r := addrResolver{trusted: trusted}
	line := "198.51.100.7"
	for range maxForwardedHops {
		line += ", 10.0.0.1"
	}
	got, malformed, _ := r.resolve("10.0.0.2:1", []string{line})
	if !malformed || got != netip.MustParseAddr("10.0.0.2") {
		t.Errorf("resolve = %s, malformed %v; want the peer and malformed", got, malformed)
	}
}

func TestResolveNoTrustedProxies(t *testing.T) {
	var r addrResolver
	got, malformed, ok := r.resolve("127.0.0.1:80", []string{"198.51.100.7"})
	if !ok || malformed || got != netip.MustParseAddr("127.0.0.1") {
		t.Errorf("resolve = %s, %v, %v; want 127.0.0.1 from the peer", got, malformed, ok)
	}
	if _, _, ok := r.resolve("not-an-address", nil); ok {
		t.Error("an unparsable peer resolved")
	}
}

func TestSourceKey(t *testing.T) {
	f := func(in, want string) {
		t.Helper()
		if got := sourceKey(netip.MustParseAddr(in)); got != netip.MustParseAddr(want) {
			t.Errorf("sourceKey(%s) = %s, want %s", in, got, want)
		}
	}
	f("198.51.100.7", "198.51.100.7")
	f("2001:db8:1:2::1", "2001:db8:1:2::")
	f("2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::")
	f("2001:db8:1:3::1", "2001:db8:1:3::")
}

func TestUnverifiedTokenID(t *testing.T) {
	f := func(auth, want string) {
		t.Helper()
		if got := unverifiedTokenID(auth); got != want {
			t.Errorf("unverifiedTokenID(%q) = %q, want %q", auth, got, want)
		}
	}
	f("Bearer "+rawToken(map[string]string{"alg": "EdDSA"}, map[string]string{"jti": "tok-1"}, []byte("x")), "tok-1")
	f("DPoP "+rawToken(map[string]string{"alg": "EdDSA"}, map[string]string{"jti": "tok-2"}, []byte("x")), "tok-2")
	f("Bearer "+rawToken(map[string]string{"alg": "EdDSA"}, map[string]string{"sub": "a"}, []byte("x")), "")
	f("Bearer not-a-jwt", "")
	f("Bearer a.!!!.c", "")
	f("", "")
}

// clientFrom returns an HTTP client whose connections leave from the
// loopback address src, such as 127.0.0.3. Linux routes all of 127/8 to
// the loopback interface, so any of them can be bound.
func clientFrom(t *testing.T, src string) *http.Client {
	t.Helper()
	dialer := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	tr := &http.Transport{DialContext: dialer.DialContext, DisableKeepAlives: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// webhookFrom is a signed webhook POST to base with extra headers. Each
// value of a header becomes its own header line.
func webhookFrom(t *testing.T, base string, headers map[string][]string) *http.Request {
	t.Helper()
	body := waBody("forwarded")
	req, err := http.NewRequest(http.MethodPost, base+"/webhooks/whatsapp", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Hub-Signature-256", sign(testAppSecret, body))
	for k, vs := range headers {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	return req
}

func statusOf(t *testing.T, c *http.Client, req *http.Request) (int, http.Header) {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s from the client: %v", req.URL, err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, resp.Header
}

// TestForwardedForSpoofing sends signed webhooks over TCP from three
// loopback addresses: 127.0.0.1 is the allowlisted client, 127.0.0.2 the
// trusted proxy and 127.0.0.3 an outsider.
func TestForwardedForSpoofing(t *testing.T) {
	h := newHarness(t, func(c *Config) {
		c.TrustedProxies = []string{"127.0.0.2"}
		c.Allowlist.Webhook = []string{"127.0.0.1"}
	})
	base, _ := serving(t, h)
	direct, proxy, outsider := clientFrom(t, "127.0.0.1"), clientFrom(t, "127.0.0.2"), clientFrom(t, "127.0.0.3")
	xff := func(lines ...string) map[string][]string { return map[string][]string{"X-Forwarded-For": lines} }

	tests := []struct {
		name    string
		client  *http.Client
		headers map[string][]string
		want    int
	}{
		{"direct allowlisted control", direct, nil, http.StatusOK},
		{"direct not allowlisted", outsider, nil, http.StatusForbidden},
		{"direct not allowlisted spoofed xff", outsider, xff("127.0.0.1"), http.StatusForbidden},
		{"direct not allowlisted x-real-ip", outsider, map[string][]string{"X-Real-IP": {"127.0.0.1"}}, http.StatusForbidden},
		{"direct not allowlisted forwarded", outsider, map[string][]string{"Forwarded": {"for=127.0.0.1"}}, http.StatusForbidden},
		{"direct not allowlisted true-client-ip", outsider, map[string][]string{"True-Client-IP": {"127.0.0.1"}}, http.StatusForbidden},
		{"direct not allowlisted cf-connecting-ip", outsider, map[string][]string{"CF-Connecting-IP": {"127.0.0.1"}}, http.StatusForbidden},
		{"direct allowlisted xff names other", direct, xff("198.51.100.7"), http.StatusOK},
		{"via proxy legit", proxy, xff("127.0.0.1"), http.StatusOK},
		{"via proxy client forged leftmost", proxy, xff("127.0.0.1, 203.0.113.9"), http.StatusForbidden},
		{"via proxy two xff lines", proxy, xff("127.0.0.1", "203.0.113.9"), http.StatusForbidden},
		{"via proxy trusted hop skipped", proxy, xff("127.0.0.1, 127.0.0.2"), http.StatusOK},
		{"via proxy untrusted then trusted", proxy, xff("127.0.0.1, 203.0.113.9, 127.0.0.2"), http.StatusForbidden},
		{"via proxy garbage entry", proxy, xff("127.0.0.1, garbage"), http.StatusForbidden},
		{"via proxy empty xff", proxy, xff(""), http.StatusForbidden},
		{"via proxy no xff", proxy, nil, http.StatusForbidden},
		{"via proxy only separators", proxy, xff(", ,"), http.StatusForbidden},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, _ := statusOf(t, tt.client, webhookFrom(t, base, tt.headers))
			if status != tt.want {
				t.Errorf("status = %d, want %d", status, tt.want)
			}
		})
	}
	if got := testutilCounter(t, h.registry, "syncguard_ingest_forwarded_for_malformed_total"); got != 3 {
		t.Errorf("malformed X-Forwarded-For counted %g times, want 3 (garbage, empty, separators)", got)
	}

	// The audit events record the resolved client address as the source.
	evs := h.auditEvents(len(tests))
	sources := map[string]int{}
	for _, ev := range evs {
		sources[ev.Source+" "+ev.Reason]++
	}
	if sources["127.0.0.1 ok"] != 4 {
		t.Errorf("audit sources %v: want 4 accepted from 127.0.0.1", sources)
	}
	if sources["203.0.113.9 "+schemas.ReasonForbiddenSource] != 3 {
		t.Errorf("audit sources %v: want 3 rejected as 203.0.113.9", sources)
	}
}

// TestRateLimitKeysOnResolvedAddress checks that the source limiter keys on the resolved
// address: an outsider claiming the victim's address spends its own
// bucket, rotating X-Forwarded-For from an untrusted peer does not help,
// and rotating inside one IPv6 /64 through the proxy shares one bucket.
func TestRateLimitKeysOnResolvedAddress(t *testing.T) {
	h := newHarness(t, func(c *Config) {
		c.TrustedProxies = []string{"127.0.0.2"}
		c.RateLimits.Source = RateLimit{Rate: 0.001, Burst: 10}
	})
	base, _ := serving(t, h)
	direct, proxy, outsider := clientFrom(t, "127.0.0.1"), clientFrom(t, "127.0.0.2"), clientFrom(t, "127.0.0.3")

	count := func(c *http.Client, n int, headers func(i int) map[string][]string) (ok, limited int) {
		t.Helper()
		for i := range n {
			status, hdr := statusOf(t, c, webhookFrom(t, base, headers(i)))
			switch status {
			case http.StatusOK:
				ok++
			case http.StatusTooManyRequests:
				limited++
				if ra, err := strconv.Atoi(hdr.Get("Retry-After")); err != nil || ra < 1 {
					t.Errorf("Retry-After = %q, want an integer >= 1", hdr.Get("Retry-After"))
				}
			default:
				t.Fatalf("request %d: status %d", i, status)
			}
		}
		return ok, limited
	}

	ok, limited := count(outsider, 30, func(int) map[string][]string {
		return map[string][]string{"X-Forwarded-For": {"127.0.0.1"}}
	})
	if ok != 10 || limited != 20 {
		t.Errorf("lockout attempt: %d ok, %d limited; want 10 and 20", ok, limited)
	}
	if status, _ := statusOf(t, direct, webhookFrom(t, base, nil)); status != http.StatusOK {
		t.Errorf("victim after the lockout attempt: status %d, want 200", status)
	}

	ok, limited = count(direct, 40, func(i int) map[string][]string {
		return map[string][]string{"X-Forwarded-For": {"198.51.100." + strconv.Itoa(i)}}
	})
	if ok != 9 || limited != 31 {
		t.Errorf("rotating xff from a direct peer: %d ok, %d limited; want 9 (one token spent above) and 31", ok, limited)
	}

	ok, limited = count(proxy, 40, func(i int) map[string][]string {
		return map[string][]string{"X-Forwarded-For": {"2001:db8:1:2::" + strconv.FormatInt(int64(i+1), 16)}}
	})
	if ok != 10 || limited != 30 {
		t.Errorf("rotation inside one /64: %d ok, %d limited; want 10 and 30", ok, limited)
	}
}
